from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

#: Real MNIST / FashionMNIST in torchvision layout, shared next to the repository (``<repo>/../shared/datasets``).
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    """Root holding ``MNIST/raw`` and ``FashionMNIST/raw``; skips the test when it is absent."""
    if not (SHARED_DATASETS / "MNIST" / "raw").is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a small shared CPU box, 2 threads spin-wait and make tiny runs 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
