"""Score normalisation ``N(S)`` and fusion ``S = Σ_k p_k N(S_k)`` of the metrics (METHOD §3)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

__all__ = ["NORMALIZATIONS", "NonFiniteScores", "Normalization", "fuse", "normalize"]

Normalization = Literal["rms", "authors", "sum", "none"]
NORMALIZATIONS: tuple[str, ...] = ("rms", "authors", "sum", "none")
log = logging.getLogger(__name__)
#: The ε of the authors' ``ranking_mask`` normalisation ``S / (|Σ S| + ε)`` (``normalization="sum"``).
SUM_EPS = 1e-10

class NonFiniteScores(ValueError):
    """A metric's statistics are not finite (some score is NaN or inf)."""


def normalize(
    keep: Mapping[str, Tensor], saliency: Mapping[str, Tensor] | None = None, method: Normalization = "rms"
) -> dict[str, Tensor]:
    """Put one metric on a common scale, ``N(S)``, over all prunable weights together.

    * ``"rms"`` (default): ``keep / RMS(keep)`` — order-preserving, NaN-safe (all zero where the metric is all
      zero). For signed saliencies with mean ≈ 0 this is the scale of the authors' formula, on which Table 3's
      weights were tuned.
    * ``"authors"``: the authors' Panning, ``|S - μ| / σ`` on the *signed* saliency ``S``, computed with exactly
      their float operations (concatenate, divide by the mean, then the mean and sample standard deviation of the
      quotient), so it reproduces their normalised scores bit for bit; not exactly order-preserving in ``|S|``.
      A metric with mean or standard deviation 0 gives NaN, as in their code (with a logged warning).
    * ``"sum"``: the authors' one-shot (and iterative) SNIP/GraSP ranking, ``keep / (|Σ keep| + 1e-10)``
      (order-preserving up to rounding; the exact float operations of their ``ranking_mask``).
    * ``"none"``: the keep-scores unchanged.

    Args:
        keep: keep-scores ``{name: tensor W_n}``.
        saliency: the signed saliencies (needed by ``"authors"``; defaults to ``keep``).
        method: one of :data:`NORMALIZATIONS`.

    Returns:
        ``{name: tensor W_n}``: float32 for ``"rms"``/``"authors"``/``"sum"`` (the RMS is taken in float64, the
        authors' statistics in the scores' own dtype as they do), the keep-scores' own dtype for ``"none"``.

    Example:
        >>> s = {"a": torch.tensor([1.0, -2.0]), "b": torch.tensor([4.0, 0.5])}
        >>> [round(v, 4) for v in torch.cat(list(normalize(s, s, "authors").values())).tolist()]
        [0.0508, 1.1676, 1.2692, 0.1523]
        >>> torch.cat(list(normalize({"a": torch.tensor([1.0, 3.0])}, method="sum").values())).tolist()
        [0.25, 0.75]
    """
    if method == "none":
        return dict(keep)
    if method == "rms":
        count = sum(s.numel() for s in keep.values())
        sq = sum(float(torch.linalg.vector_norm(s, dtype=torch.float64)) ** 2 for s in keep.values())
        rms = math.sqrt(sq / count)
        if not math.isfinite(rms):
            raise NonFiniteScores(f"the metric's RMS is {rms} (NaN/inf scores)")
        if rms == 0.0:
            return {n: torch.zeros_like(s, dtype=torch.float32) for n, s in keep.items()}
        return {n: (s / rms).float() for n, s in keep.items()}
    if method == "authors":
        return _authors_normalization(saliency if saliency is not None else keep)
    if method == "sum":
        flat = torch.cat([s.reshape(-1) for s in keep.values()])
        factor = torch.abs(torch.sum(flat)) + SUM_EPS
        if not math.isfinite(float(factor)):
            raise NonFiniteScores(f"the metric's sum is {float(factor)} (NaN/inf scores)")
        return {n: (s / factor).float() for n, s in keep.items()}
    raise ValueError(f"Unknown `normalization` {method!r}; allowed: {list(NORMALIZATIONS)}.")


def _authors_normalization(saliency: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``|S − μ| / σ`` with the authors' exact float operations (``pruner/panning.py``, ``normalization``).

    A metric whose mean or standard deviation is 0 (SynFlow once no input-output path is left) gives NaN scores,
    exactly as their code does; a warning says so. NaN or inf in the scores themselves raise
    :class:`NonFiniteScores`.
    """
    flat = torch.cat([s.reshape(-1) for s in saliency.values()])
    mean_div = flat.mean()
    if not math.isfinite(float(mean_div)):
        raise NonFiniteScores(f"the metric's mean is {float(mean_div)} (NaN/inf scores)")
    flat.div_(mean_div)
    std, mean = flat.std(), flat.mean()
    del flat
    if float(mean_div) == 0.0 or not float(std) > 0.0:
        log.warning(
            "normalization='authors': the metric's mean is %g and the standard deviation of score/mean is %g (a "
            "constant metric, e.g. SynFlow of a network with no input-output path left), so its normalised "
            "scores are NaN, as in the authors' code, and no weight is kept from this round on. "
            "normalization='rms' maps an all-zero metric to 0 instead.",
            float(mean_div),
            float(std),
        )
    return {n: ((s / mean_div - mean) / std).abs_().float() for n, s in saliency.items()}


def fuse(normalized: Mapping[str, Tensor], weight: float, into: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Add one metric's share ``p_k · N(S_k)`` to the fused score ``S_w = Σ_k p_k · N(S_k)``.

    Fusing one metric at a time keeps a single parameter-sized accumulator alive instead of every normalised
    metric at once. Each share is rounded before it is added (no fused multiply-add), so the sum is the same float
    as the authors' ``p_1 N_1 + p_2 N_2 + p_3 N_3``.

    Args:
        normalized: ``{name: tensor W_n}``, one normalised metric.
        weight: its ``p_k``.
        into: the running sum (updated in place and returned), or ``None`` to start one.

    Returns:
        ``{name: tensor W_n}``, the running sum.
    """
    fused: dict[str, Tensor] = {} if into is None else into
    for name, s in normalized.items():
        if name in fused:
            acc = fused[name]
            if torch.result_type(acc, s) != acc.dtype:
                acc = fused[name] = acc.to(torch.result_type(acc, s))
            acc.add_(s * weight)
        else:
            fused[name] = s * weight
    return fused
