"""The authors' own code (github ``kangxiatao/RLPanning``) for the benchmarks that run it beside ours.

It is imported at run time from a checkout the user names (``--authors-repo``), never copied into this repository.
Used by ``authors_parity.py``, ``prune_speed.py`` and ``env_speed.py``.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

__all__ = ["load_authors", "quiet", "their_config", "their_model"]


def load_authors(repo: str | Path) -> SimpleNamespace:
    """Import the pieces of the authors' code the benchmarks call, from the checkout ``repo``.

    Raises:
        SystemExit: if ``repo`` is not a checkout of their repository.
    """
    repo = Path(repo).resolve()
    if not (repo / "pruner" / "panning.py").is_file():
        raise SystemExit(f"--authors-repo {repo} is not a checkout of kangxiatao/RLPanning (no pruner/panning.py).")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from easydict import EasyDict
    from models.base.init_utils import weights_init
    from models.base.lenet import lenet
    from models.base.vgg import VGG
    from pruner.panning import Panning, PruningEnv
    from pruner.pruning import Single_ranking_pruning, SynFlow

    return SimpleNamespace(
        EasyDict=EasyDict, weights_init=weights_init, lenet=lenet, VGG=VGG, Panning=Panning, PruningEnv=PruningEnv,
        Single_ranking_pruning=Single_ranking_pruning, SynFlow=SynFlow,
    )


def their_model(authors: SimpleNamespace, name: str, seed: int) -> nn.Module:
    """Their LeNet5 (``"lenet5"``) or VGG19-BN (``"vgg19"``) as their ``main.py`` builds it.

    The constructor runs under ``torch.manual_seed(seed)``, then ``model.apply(weights_init)``.
    """
    torch.manual_seed(seed)
    model = authors.lenet("mnist") if name == "lenet5" else authors.VGG(depth=19, dataset="cifar10", batchnorm=True)
    model.apply(authors.weights_init)
    return model


def their_config(authors: SimpleNamespace, target: float, rounds: int, **extra: Any) -> Any:
    """Their ``configs.py`` defaults for a 10-class set (``score_mode=2`` for SNIP and GraSP) plus ``extra``."""
    return authors.EasyDict({
        "classe": 10, "samples_per_class": 10, "data_mode": 0, "num_group": 1, "train_mode": 1, "dynamic": 0,
        "score_mode": 2, "target_ratio": target, "num_iters_prune": rounds, "debug": "0", **extra,
    })


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence their prints and progress bars."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
