from __future__ import annotations

from pathlib import Path

import pytest

#: Real MNIST / FashionMNIST in torchvision layout, shared next to the repository (``<repo>/../shared/datasets``).
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    """Root holding ``MNIST/raw`` and ``FashionMNIST/raw``; skips the test when it is absent."""
    if not (SHARED_DATASETS / "MNIST" / "raw").is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS
