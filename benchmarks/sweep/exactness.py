"""Training the compacted network is exact: the same cell trained masked and compacted, loss by loss.

:func:`compare_cell` runs one cell twice with :func:`~benchmarks.sweep.cell.run_cell` — ``compact=False`` (the
masked network) and ``compact=True`` (dead channels removed before the first step) — recording the training loss of
every optimizer step, and returns both loss curves, their largest difference and both runs' test accuracy and loss.
``tests/test_sweep_compact.py`` runs it on the offline digits for a few steps; ``benchmarks/compact_exact.py`` runs it
on MNIST for 100 steps per sparsity.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from benchmarks.sweep.cell import SweepConfig, build_model, run_cell
from benchmarks.sweep.profiles import Cell

__all__ = ["StepLosses", "compare_cell"]


class StepLosses(Callback):
    """Records the training loss (a Python float) of every optimizer step in :attr:`losses`."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def compare_cell(cell: Cell, config: SweepConfig) -> dict[str, Any]:
    """Run ``cell`` masked and compacted under ``config`` (its profile's ``compact`` is overridden both ways).

    Returns:
        ``method``, ``sparsity``, ``seed``, ``steps``, ``losses_masked`` and ``losses_compacted`` (one float per
        step), ``max_abs_loss_diff`` and ``max_rel_loss_diff`` over the steps, ``test_acc_masked`` /
        ``test_acc_compacted`` (%), ``test_loss_masked`` / ``test_loss_compacted``, ``parameters`` (of the masked
        network) and ``compacted_parameters``.
    """
    out: dict[str, Any] = {"method": cell.method, "sparsity": cell.sparsity, "seed": cell.seed}
    for name, compact in (("masked", False), ("compacted", True)):
        recorder = StepLosses()
        run = SweepConfig(**{**vars(config), "profile": config.profile.override(compact=compact)})
        result = run_cell(cell, run, extra_callbacks=[recorder])
        out[f"losses_{name}"] = recorder.losses
        out[f"test_acc_{name}"] = result["test_acc"]
        out[f"test_loss_{name}"] = result["test_loss"]
        if compact:
            out["compacted_parameters"] = result["compacted_parameters"]
        else:
            out["parameters"] = sum(p.numel() for p in build_model(config.profile).parameters())
    pairs = list(zip(out["losses_masked"], out["losses_compacted"], strict=True))
    out["steps"] = len(pairs)
    out["max_abs_loss_diff"] = max(abs(a - b) for a, b in pairs)
    out["max_rel_loss_diff"] = max(abs(a - b) / max(abs(a), 1e-12) for a, b in pairs)
    return out
