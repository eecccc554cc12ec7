"""``Linear`` layers with a compressed-sparse-row weight, and the timing that decides where they pay off."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_panning.compaction.timing import seconds_per_call

__all__ = ["SparseLinear", "sparse_is_faster"]

_warned = False


@contextmanager
def _quiet_beta_warning() -> Iterator[None]:
    """Silence PyTorch's one-time "sparse CSR support is in beta" warning (it is emitted once per process)."""
    global _warned
    if _warned:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield
    _warned = True


class SparseLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` in compressed sparse row (CSR) form, for inference.

    The CSR components are plain buffers (``crow_indices``, ``col_indices``, ``values``), so the module can be
    copied, saved, moved and cast like any other; the CSR tensor is assembled (no copy) at each call and multiplied
    with :func:`torch.addmm` (MKL sparse BLAS on CPU, cuSPARSE on CUDA). It holds no trainable parameters.

    Args:
        weight: dense weight ``(out_features, in_features)``; its zeros are dropped.
        bias: ``(out_features,)`` or ``None``.

    Shape:
        - Input: ``(*, in_features)``.
        - Output: ``(*, out_features)``.

    Example:
        >>> import torch
        >>> dense = torch.nn.Linear(4, 3)
        >>> with torch.no_grad():
        ...     dense.weight[:, :2] = 0
        >>> layer = SparseLinear.from_linear(dense)
        >>> x = torch.randn(5, 4)
        >>> torch.allclose(layer(x), dense(x), atol=1e-6), layer.nnz
        (True, 6)
    """

    crow_indices: Tensor
    col_indices: Tensor
    values: Tensor
    bias: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        if weight.ndim != 2:
            raise ValueError(
                f"`weight` must be a 2-D tensor (out_features, in_features), got shape {tuple(weight.shape)}."
            )
        self.out_features, self.in_features = (int(s) for s in weight.shape)
        with _quiet_beta_warning():
            csr = weight.detach().to_sparse_csr()
        self.register_buffer("crow_indices", csr.crow_indices().clone())
        self.register_buffer("col_indices", csr.col_indices().clone())
        self.register_buffer("values", csr.values().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SparseLinear:
        """The sparse equivalent of a dense ``nn.Linear`` (its zero weights dropped)."""
        return cls(linear.weight, linear.bias)

    @property
    def nnz(self) -> int:
        """Number of stored (non-zero) weights."""
        return int(self.values.numel())

    def sparse_weight(self) -> Tensor:
        """The weight as a CSR tensor ``(out_features, in_features)`` sharing the buffers' memory."""
        with _quiet_beta_warning():
            return torch.sparse_csr_tensor(
                self.crow_indices,
                self.col_indices,
                self.values,
                size=(self.out_features, self.in_features),
                check_invariants=False,
            )

    def to_dense_weight(self) -> Tensor:
        """The weight as a dense tensor ``(out_features, in_features)``."""
        return self.sparse_weight().to_dense()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer.

        Args:
            x: ``(*, in_features)``.

        Returns:
            ``(*, out_features)``.
        """
        lead = x.shape[:-1]
        cols = x.reshape(-1, self.in_features).t()  # (in_features, N)
        weight = self.sparse_weight()
        if self.bias is None:
            out = torch.sparse.mm(weight, cols)
        else:
            out = torch.addmm(self.bias.unsqueeze(1), weight, cols)
        return out.t().reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        """Sizes, stored weights and whether there is a bias."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}, "
            f"bias={self.bias is not None}"
        )


@torch.no_grad()
def sparse_is_faster(linear: nn.Linear, rows: int, margin: float = 0.9) -> tuple[bool, float, float]:
    """Time ``linear`` dense and as :class:`SparseLinear` on ``rows`` random input rows; keep sparse only if faster.

    Args:
        linear: the (masked) dense layer.
        rows: number of input rows per call (the batch size times any leading dimensions).
        margin: sparse is chosen only when its time is below ``margin`` × the dense time, so that timing noise does
            not flip layers that are equally fast either way.

    Returns:
        ``(sparse is faster, dense seconds per call, sparse seconds per call)``.
    """
    weight = linear.weight
    generator = torch.Generator().manual_seed(0)  # leaves the global random state alone
    x = torch.randn(rows, linear.in_features, generator=generator).to(device=weight.device, dtype=weight.dtype)
    sparse = SparseLinear.from_linear(linear)
    dense_s = seconds_per_call(lambda: F.linear(x, weight, linear.bias), weight.device)
    sparse_s = seconds_per_call(lambda: sparse(x), weight.device)
    return sparse_s < margin * dense_s, dense_s, sparse_s
