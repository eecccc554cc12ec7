"""What every mask-parity section shares: comparing two masks and fixed random scoring batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["compare", "labelled_noise", "lenet5_of", "scores_agree"]


def compare(ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> dict[str, Any]:
    """Differing entries, kept counts and the Jaccard index of the kept sets of two ``{name: bool mask}``."""
    if set(ours) != set(theirs):
        raise RuntimeError(f"Parameter sets differ: ours {sorted(ours)}, theirs {sorted(theirs)}.")
    differ = sum(int((ours[n] != theirs[n]).sum()) for n in ours)
    both = sum(int((ours[n] & theirs[n]).sum()) for n in ours)
    either = sum(int((ours[n] | theirs[n]).sum()) for n in ours)
    return {
        "weights": sum(m.numel() for m in ours.values()),
        "kept_ours": sum(int(m.sum()) for m in ours.values()),
        "kept_theirs": sum(int(m.sum()) for m in theirs.values()),
        "differing": differ,
        "jaccard": both / either if either else 1.0,
    }


def scores_agree(ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> dict[str, Any]:
    """Whether two ``{name: score tensor}`` are equal bit for bit, and their largest relative difference."""
    if set(ours) != set(theirs):
        raise RuntimeError(f"Parameter sets differ: ours {sorted(ours)}, theirs {sorted(theirs)}.")
    equal = all(torch.equal(ours[n], theirs[n]) for n in ours)
    scale = max(float(t.abs().max()) for t in theirs.values()) or 1.0
    worst = max(float((ours[n].double() - theirs[n].double()).abs().max()) for n in ours)
    return {"scores_bitwise_equal": equal, "scores_max_rel_diff": worst / scale}


def labelled_noise(shape: tuple[int, ...], classes: int = 10, per_class: int = 10,
                   seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed ``N(0, 1)`` batch ``(classes · per_class, *shape)`` with labels ``0..classes-1``, class-major."""
    g = torch.Generator().manual_seed(seed)
    n = classes * per_class
    return torch.randn(n, *shape, generator=g), torch.arange(classes).repeat_interleave(per_class)


def lenet5_of(conv: Callable[..., nn.Module], linear: Callable[..., nn.Module],
              initialize_weights: Callable[[Any], None]) -> nn.Module:
    """LeNet5 (Caffe variant: conv 20-5, conv 50-5, 500, 10) built from an authors' masked layer classes.

    ``initialize_weights`` becomes the model's ``_initialize_weights`` method (NTK-SAP's code calls it to re-draw the
    weights) and runs once after the layers are built, as in their models.
    """

    class LeNet5(nn.Module):
        _initialize_weights = initialize_weights

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(conv(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), conv(20, 50, 5), nn.ReLU(),
                                          nn.MaxPool2d(2), nn.Flatten())
            self.classifier = nn.Sequential(linear(800, 500), nn.ReLU(), linear(500, 10))
            self._initialize_weights()

        def forward(self, x: Tensor) -> Tensor:
            return self.classifier(self.features(x))

    return LeNet5()
