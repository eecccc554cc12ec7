"""Data-parallel scoring: the processes that share one scoring set, and the checks that keep their masks identical.

Under ``torch.distributed`` every rank draws the same scoring set (the same seed), cuts it into the same chunks and
takes every ``N``-th of them (rank ``r`` scores chunks ``r, r + N, r + 2N, ...``); the per-chunk sums of every data pass
are all-reduced (summed), so every rank computes the same fused scores and the same masks with ``1/N`` of the data
work. The masks depend on the chunking, never on the ranks: ``N`` ranks whose chunks hold ``B`` samples give the masks
one process gives with ``micro_batch=B``, up to floating-point summation order. Without ``micro_batch`` each rank's
shard is one chunk (``⌈n / N⌉`` samples), which is what one process gives with ``micro_batch=⌈n / N⌉`` (it matters
with train-mode BatchNorm, which normalises each chunk by its own statistics).

Data-free passes (SynFlow, effective sparsity) are replicated: every rank computes them in full.

Before scoring, the ranks compare their prunable parameters (names, shapes, dtypes and a checksum of the values) and
their scoring sets (size and checksum); after pruning, a hash of the masks. Any difference is an error that names
the ranks, never a silent divergence.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from lightning_panning.core.batch import batch_labels, batch_size, split_batch
from lightning_panning.core.masks import pack_masks
from lightning_panning.core.scorers import ScoringSet

__all__ = ["DataParallel", "mask_digest"]


class DataParallel:
    """The processes of a ``torch.distributed`` group that share the scoring work.

    Args:
        group: the process group (``None``: the default group). ``torch.distributed`` must be initialised.

    Example:
        >>> DataParallel.resolve(None) is None  # single process
        True
    """

    def __init__(self, group: Any = None) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "Data-parallel scoring needs torch.distributed to be initialised "
                "(`torch.distributed.init_process_group(...)`); pass `process_group=None` to prune in one process."
            )
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

    @classmethod
    def resolve(cls, process_group: Any = "auto") -> DataParallel | None:
        """The data-parallel setting a ``process_group`` argument stands for, or ``None`` for one process.

        Args:
            process_group: ``"auto"`` (the default group when ``torch.distributed`` is initialised with more than
                one process, else one process), ``None`` (one process: every rank prunes on its own) or a
                ``torch.distributed.ProcessGroup``.

        Raises:
            ValueError: for any other value, or a group given while ``torch.distributed`` is not initialised.
        """
        if process_group is None:
            return None
        if isinstance(process_group, str) and process_group == "auto":
            if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
                return None
            return cls(None)
        if not dist.is_available() or not isinstance(process_group, dist.ProcessGroup):
            raise ValueError(
                f"`process_group` must be 'auto', None or a torch.distributed.ProcessGroup, got {process_group!r}."
            )
        parallel = cls(process_group)
        return None if parallel.world_size == 1 else parallel

    # -- communication --------------------------------------------------------------------------------------------
    def all_sum(self, tensors: list[Tensor]) -> list[Tensor]:
        """Each tensor summed over the ranks (one all-reduce per dtype and device; the inputs are not modified).

        Args:
            tensors: any shapes; every rank passes the same shapes and dtypes in the same order.

        Returns:
            New tensors of the same shapes, identical on every rank.
        """
        out: list[Tensor | None] = [None] * len(tensors)
        groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault((t.dtype, t.device), []).append(i)
        for indices in groups.values():
            flat = torch.cat([tensors[i].detach().reshape(-1) for i in indices])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
            for i, piece in zip(indices, flat.split([tensors[i].numel() for i in indices]), strict=True):
                out[i] = piece.view_as(tensors[i])
        return [t for t in out if t is not None]

    def gather(self, value: Any) -> list[Any]:
        """``value`` (any picklable object) of every rank, in rank order."""
        found: list[Any] = [None] * self.world_size
        dist.all_gather_object(found, value, group=self.group)
        return found

    # -- the scoring set ------------------------------------------------------------------------------------------
    def chunk_size(self, set_size: int, micro_batch: int | None) -> int:
        """Samples per chunk: ``micro_batch``, or ``⌈n / N⌉`` (one chunk per rank) without it."""
        return micro_batch if micro_batch is not None else math.ceil(set_size / self.world_size)

    def shard(self, batch: Any, micro_batch: int | None) -> ScoringSet:
        """This rank's chunks of ``batch`` (every rank passes the same batch), summed over the ranks when reduced.

        Args:
            batch: the whole scoring set, e.g. ``(x (n, ...), y (n,))``.
            micro_batch: samples per chunk, or ``None`` for one chunk per rank.

        Raises:
            ValueError: when the set has fewer chunks than there are ranks (a rank would have nothing to score).
        """
        n = batch_size(batch)
        size = self.chunk_size(n, micro_batch)
        chunks = split_batch(batch, size)
        if len(chunks) < self.world_size:
            labels = batch_labels(batch)
            classes = None if labels is None else int(torch.unique(labels).numel())
            made = f"{n} samples" + ("" if classes is None else f" ({n // classes} per class × {classes} classes)")
            raise ValueError(
                f"The scoring set has {made}; cut into chunks of at most {size} samples (`micro_batch`="
                f"{micro_batch!r}) it gives {len(chunks)} chunk(s) for {self.world_size} ranks, and every rank "
                f"needs at least one. Give a larger set (raise `per_class`) or a `micro_batch` of at most "
                f"{max(n // self.world_size, 1)}."
            )
        mine = list(range(self.rank, len(chunks), self.world_size))
        return ScoringSet([chunks[i] for i in mine], reduce=self.all_sum, size=n, indices=mine)

    def shard_sizes(self, set_size: int, micro_batch: int | None) -> list[int]:
        """Samples each rank scores, in rank order (computed, not communicated: every rank cuts the same chunks)."""
        size = self.chunk_size(set_size, micro_batch)
        sizes = [min(size, set_size - start) for start in range(0, set_size, size)]
        return [sum(sizes[r :: self.world_size]) for r in range(self.world_size)]

    # -- checks ---------------------------------------------------------------------------------------------------
    def check_same_model(self, params: Mapping[str, Tensor]) -> None:
        """Raise unless every rank holds the same prunable parameters: names, shapes, dtypes and values' checksums.

        Args:
            params: ``{name: tensor W_n}``.

        Raises:
            ValueError: naming the first difference and the ranks that differ from rank 0.
        """
        names = list(params)
        sums: list[float] = []
        if names:
            with torch.no_grad():
                sums = torch.stack([p.detach().sum(dtype=torch.float64) for p in params.values()]).tolist()
        mine = [(n, tuple(p.shape), str(p.dtype), s) for (n, p), s in zip(params.items(), sums, strict=True)]
        every = self.gather(mine)
        for rank, theirs in enumerate(every[1:], start=1):
            difference = _first_difference(every[0], theirs)
            if difference is not None:
                raise ValueError(
                    f"The ranks disagree on the model to prune: {difference} (rank 0 vs rank {rank}). Every rank must "
                    "hold the same model, with the same weights (build it with the same seed, or broadcast rank 0's "
                    "weights, as DDP does, before pruning)."
                )

    def check_same_data(self, batch: Any) -> None:
        """Raise unless every rank holds the same scoring set (its size and a checksum of its tensors).

        Raises:
            ValueError: naming the ranks whose set differs from rank 0's.
        """
        mine = (batch_size(batch), [repr(v) for v in _checksum(batch)])  # repr: NaN equals NaN
        every = self.gather(mine)
        differ = [r for r, theirs in enumerate(every) if theirs != every[0]]
        if differ:
            raise ValueError(
                f"The ranks drew different scoring sets: rank 0 has {every[0][0]} samples (checksum "
                f"{every[0][1]!r}), ranks {differ} have {[every[r] for r in differ]}. Every rank must draw the same "
                "set: give each rank the same data in the same order (not a loader with a DistributedSampler) and "
                "the same `seed`."
            )

    def check_same_masks(self, masks: Mapping[str, Tensor]) -> None:
        """Raise unless every rank holds bit-identical masks (an all-gather of a hash of the packed masks).

        Raises:
            RuntimeError: naming which ranks hold which masks.
        """
        every = self.gather(mask_digest(masks))
        if len(set(every)) > 1:
            holders: dict[str, list[int]] = {}
            for rank, digest in enumerate(every):
                holders.setdefault(digest, []).append(rank)
            groups = "; ".join(f"ranks {ranks} hold masks {digest[:12]}" for digest, ranks in holders.items())
            raise RuntimeError(
                f"The ranks ended with different masks: {groups}. Data-parallel scoring must give every rank the same "
                "masks; this is a bug or a difference between the ranks' models or software (please report it)."
            )


def mask_digest(masks: Mapping[str, Tensor]) -> str:
    """A SHA-256 hex digest of the masks' names, shapes and bits (equal digests: bit-identical masks).

    Example:
        >>> import torch
        >>> a, b = {"w": torch.tensor([True, False])}, {"w": torch.tensor([True, False])}
        >>> mask_digest(a) == mask_digest(b), mask_digest(a) == mask_digest({"w": ~a["w"]})
        (True, False)
    """
    digest = hashlib.sha256()
    for name, packed in pack_masks(masks).items():
        digest.update(f"{name}:{packed['shape']};".encode())
        digest.update(packed["bits"].numpy().tobytes())
    return digest.hexdigest()


def _first_difference(
    ours: list[tuple[str, tuple[int, ...], str, float]], theirs: list[tuple[str, tuple[int, ...], str, float]]
) -> str | None:
    """The first difference between two ranks' parameter signatures, in words, or ``None``."""
    for (n0, s0, d0, c0), (n1, s1, d1, c1) in zip(ours, theirs, strict=False):
        if n0 != n1:
            return f"prunable parameter {n0!r} on one rank is {n1!r} on the other (the names differ)"
        if s0 != s1:
            return f"{n0!r} has shape {s0} on one rank and {s1} on the other"
        if d0 != d1:
            return f"{n0!r} has dtype {d0} on one rank and {d1} on the other"
        if c0 != c1 and not (math.isnan(c0) and math.isnan(c1)):
            return f"{n0!r} has other values (sums {c0!r} and {c1!r})"
    if len(ours) != len(theirs):
        longer, extra = (ours, "one") if len(ours) > len(theirs) else (theirs, "the other")
        missing = longer[min(len(ours), len(theirs))][0]
        return f"{len(ours)} vs {len(theirs)} prunable parameters; {missing!r} exists on {extra} rank only"
    return None


def _checksum(batch: Any) -> list[float]:
    """Two float64 sums per tensor of ``batch``, in layout order: ``Σ_i s_i`` and ``Σ_i (i + 1) s_i``.

    ``s_i`` is the sum of sample ``i`` (the leading dimension), so the second sum changes when the samples are
    reordered. No float64 copy of the tensor is made.
    """
    out: list[float] = []

    def visit(value: Any) -> None:
        if isinstance(value, Tensor):
            t = value.detach()
            if t.ndim == 0:
                out.extend([float(t.double()), 0.0])
                return
            rows = t.reshape(t.shape[0], -1).sum(dim=1, dtype=torch.float64)
            position = torch.arange(1, len(rows) + 1, dtype=torch.float64, device=rows.device)
            out.extend(torch.stack([rows.sum(), (rows * position).sum()]).tolist())
        elif isinstance(value, Mapping):
            for key in sorted(value, key=str):
                visit(value[key])
        elif isinstance(value, (tuple, list)):
            for item in value:
                visit(item)

    visit(batch)
    return out
