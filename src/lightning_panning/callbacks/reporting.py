"""The pruning summary and its delivery to the Trainer's loggers (CSV, TensorBoard, Weights & Biases, others).

Only Lightning's own logger API is used (``log_hyperparams``, ``log_metrics``, TensorBoard's ``add_image``,
``WandbLogger.log_image``) and everything runs on rank zero. Loggers with a ``log_dir`` also get
``pruning_summary.json`` and the per-layer density figure as ``pruning_layer_density.png``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn
from torch import nn

from lightning_panning.core.masks import EffectiveSparsity, Masks, effective_sparsity, output_spread
from lightning_panning.core.results import PruningResult
from lightning_panning.plotting import agg_figure, figure_to_array

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_FILE",
    "SUMMARY_FILE",
    "build_summary",
    "density_figure",
    "log_summary",
    "measure_effective_sparsity",
    "measure_output_spread",
    "send_to_loggers",
    "summary_line",
]

SUMMARY_FILE = "pruning_summary.json"
FIGURE_FILE = "pruning_layer_density.png"


def build_summary(
    result: PruningResult, masks: Masks, effective: EffectiveSparsity | None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Plain-value summary of a pruning run (JSON-serialisable, safe for checkpoints and loggers).

    Args:
        result: the run's result (its history gives the per-round sparsity and metric weights).
        masks: the masks actually applied (after ``shuffle_masks``, if used).
        effective: effective sparsity of ``masks``, or ``None`` when it could not be computed.
        extra: more entries to merge in.

    Returns:
        A dict with ``target``, ``method``, ``rounds``, ``total_weights``, ``kept_weights``, ``nominal_sparsity``,
        ``effective_sparsity`` (or ``None``), ``layer_density``, ``layer_effective_density``, ``dead_units``
        (``{layer: [dead, units]}``), ``pruning_seconds``, ``round_sparsity`` and ``round_weights`` (one entry per
        round), and how the scoring work was shared: ``world_size``, ``scoring_set_size``, ``micro_batch``,
        ``shard_sizes`` (samples each rank scored) and ``rank_pruning_seconds`` (each rank's seconds).
    """
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    summary: dict[str, Any] = {
        "target": float(result.target),
        "method": result.method,
        "rounds": len(result.history),
        "total_weights": total,
        "kept_weights": kept,
        "nominal_sparsity": 1.0 - kept / max(total, 1),
        "effective_sparsity": None if effective is None else float(effective.effective),
        "layer_density": {n: float(m.float().mean()) for n, m in masks.items()},
        "layer_effective_density": {} if effective is None else dict(effective.layer_effective_density),
        "dead_units": {} if effective is None else {k: list(v) for k, v in effective.dead_units.items()},
        "pruning_seconds": float(result.seconds),
        "round_sparsity": [float(r.sparsity) for r in result.history],
        "round_weights": [dict(r.weights) for r in result.history],
        "world_size": int(result.scoring.get("world_size", 1)),
        "scoring_set_size": result.scoring.get("scoring_set_size"),
        "micro_batch": result.scoring.get("micro_batch"),
        "shard_sizes": result.scoring.get("shard_sizes"),
        "rank_pruning_seconds": result.scoring.get("rank_seconds"),
    }
    if extra:
        summary.update(extra)
    return summary


def measure_effective_sparsity(
    model: nn.Module, masks: Masks, example_input: Any, who: str
) -> EffectiveSparsity | None:
    """Effective sparsity of ``masks`` on ``model`` for the summary, or ``None`` with a warning saying why not.

    Args:
        model: the network.
        masks: ``{name: bool tensor W_n}``.
        example_input: the call of ``forward`` to copy (a ModelInput, a tensor ``(B, ...)`` or a batch); token ids
            work (:mod:`~lightning_panning.core.probe`).
        who: the name that starts the warning (the callback's class).
    """
    if example_input is None:
        rank_zero_warn(
            f"{who}: effective sparsity needs an example input (from the data or the module's "
            "`example_input_array`); it is not reported."
        )
        return None
    try:
        return effective_sparsity(model, masks, example_input)
    except (RuntimeError, TypeError, ValueError) as err:
        rank_zero_warn(f"{who}: effective sparsity could not be computed ({err}); not reported.")
        return None


def measure_output_spread(model: nn.Module, masks: Masks, example_input: Any, who: str) -> tuple[float, float] | None:
    """``(dense, pruned)`` output spread on the scoring batch (:func:`~lightning_panning.core.masks.output_spread`).

    Returns ``None`` without a word when there is no example input (the effective sparsity already warned) or it
    has one sample, and with a warning when the spread cannot be measured. Warns when the pruned network gives the
    same output for every sample while the dense one did not: training such a network can only fit a constant
    output.

    Args:
        model: the network (not modified).
        masks: ``{name: bool tensor W_n}``.
        example_input: real samples of the scoring batch (a ModelInput, a tensor ``(B, ...)`` or a batch).
        who: the name that starts the warnings (the callback's class).
    """
    if example_input is None:
        return None
    try:
        spread = output_spread(model, masks, example_input)
    except (RuntimeError, TypeError, ValueError) as err:
        rank_zero_warn(f"{who}: the output spread could not be measured ({err}); not reported.")
        return None
    if spread is None:
        return None  # a one-sample batch has no spread
    dense, pruned = spread
    if pruned == 0.0 and dense > 0.0:
        rank_zero_warn(
            f"{who}: after pruning, the network gives the same output for every sample of the scoring batch (output "
            f"spread 0; {dense:.3g} before pruning), although weights are kept: "
            "the activations on every remaining path are zero, so no gradient reaches those weights and training "
            "will fit a constant output. Lower the target sparsity or choose another method."
        )
    return dense, pruned


def summary_line(summary: Mapping[str, Any]) -> str:
    """One line for the log: what was pruned, nominal and effective sparsity, time.

    Example:
        >>> summary_line({"method": "snip", "total_weights": 100, "kept_weights": 10, "nominal_sparsity": 0.9,
        ...               "effective_sparsity": None, "pruning_seconds": 0.5})
        'snip pruned 90/100 weights (nominal sparsity 0.900000, effective n/a) in 0.50s.'
    """
    eff = summary["effective_sparsity"]
    total, kept = summary["total_weights"], summary["kept_weights"]
    return (
        f"{summary['method']} pruned {total - kept}/{total} weights (nominal sparsity "
        f"{summary['nominal_sparsity']:.6f}, effective {'n/a' if eff is None else f'{eff:.6f}'}) in "
        f"{summary['pruning_seconds']:.2f}s{_ranks_words(summary)}."
    )


def _ranks_words(summary: Mapping[str, Any]) -> str:
    """`` on 2 ranks (samples per rank [50, 50])`` under data-parallel scoring, else nothing."""
    world = summary.get("world_size") or 1
    if world == 1:
        return ""
    shards = summary.get("shard_sizes")
    return f" on {world} ranks" + ("" if not shards else f" (samples per rank {list(shards)})")


def density_figure(summary: Mapping[str, Any]) -> Figure:
    """Horizontal bar chart of per-layer density (kept fraction, and effective fraction when known), Agg canvas."""
    layers = list(summary["layer_density"])
    density = [summary["layer_density"][n] for n in layers]
    effective = summary.get("layer_effective_density") or {}
    fig = agg_figure(7.0, 1.2 + 0.28 * len(layers))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(layers))
    height = 0.4 if effective else 0.8
    ax.barh(y - (height / 2 if effective else 0.0), density, height=height, label="kept")
    if effective:
        ax.barh(y + height / 2, [effective.get(n, 0.0) for n in layers], height=height, label="effective")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(layers, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("density (fraction of weights kept)")
    eff = summary.get("effective_sparsity")
    eff_text = "n/a" if eff is None else f"{eff:.4f}"
    ax.set_title(
        f"{summary['method']}: target {summary['target']:g}, nominal {summary['nominal_sparsity']:.4f}, "
        f"effective {eff_text}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def flat_metrics(summary: Mapping[str, Any], prefix: str = "pruning") -> dict[str, float]:
    """The scalar entries of ``summary`` as ``{f"{prefix}/…": float}`` (per-layer values under ``density/``)."""
    metrics: dict[str, float] = {
        f"{prefix}/target": float(summary["target"]),
        f"{prefix}/nominal_sparsity": float(summary["nominal_sparsity"]),
        f"{prefix}/seconds": float(summary["pruning_seconds"]),
        f"{prefix}/kept_weights": float(summary["kept_weights"]),
    }
    if summary.get("effective_sparsity") is not None:
        metrics[f"{prefix}/effective_sparsity"] = float(summary["effective_sparsity"])
    for key in ("output_spread", "output_spread_dense", "world_size", "scoring_set_size", "micro_batch"):
        if summary.get(key) is not None:
            metrics[f"{prefix}/{key}"] = float(summary[key])
    for rank, seconds in enumerate(summary.get("rank_pruning_seconds") or []):
        metrics[f"{prefix}/rank_seconds/{rank}"] = float(seconds)
    for layer, value in summary["layer_density"].items():
        metrics[f"{prefix}/density/{layer}"] = float(value)
    for layer, value in (summary.get("layer_effective_density") or {}).items():
        metrics[f"{prefix}/effective_density/{layer}"] = float(value)
    for layer, (dead, _units) in (summary.get("dead_units") or {}).items():
        metrics[f"{prefix}/dead_units/{layer}"] = float(dead)
    return metrics


def _round_metrics(summary: Mapping[str, Any], prefix: str) -> list[tuple[int, dict[str, float]]]:
    rows = []
    pairs = zip(summary["round_sparsity"], summary["round_weights"], strict=True)
    for i, (sparsity, weights) in enumerate(pairs, start=1):
        row = {f"{prefix}/round/sparsity": float(sparsity)}
        row.update({f"{prefix}/round/weight_{k}": float(v) for k, v in weights.items()})
        rows.append((i, row))
    return rows


@rank_zero_only
def send_to_loggers(
    trainer: pl.Trainer,
    rows: Sequence[tuple[int, Mapping[str, float]]],
    *,
    hparams: Mapping[str, Any] | None = None,
    figure: Figure | None = None,
    image_key: str = "",
    figure_file: str = "",
    caption: str = "",
    json_files: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Deliver a report to every logger of ``trainer`` (rank zero only), through Lightning's logger API.

    Args:
        trainer: the trainer whose ``loggers`` receive it.
        rows: ``(step, {metric: value})`` pairs for ``log_metrics``.
        hparams: logged with ``log_hyperparams`` when given.
        figure: sent as the image ``image_key`` to TensorBoard (``add_image``) and W&B (``log_image``), and saved as
            ``figure_file`` in the ``log_dir`` of every logger that has one.
        image_key: the image's name.
        figure_file: the PNG file name.
        caption: the W&B caption.
        json_files: ``{file name: JSON-serialisable value}`` written to each ``log_dir``.

    Returns:
        ``{logger class name: PNG path}`` of the figures written.
    """
    image = figure_to_array(figure) if figure is not None else None
    written: dict[str, str] = {}
    for logger in trainer.loggers:
        if hparams is not None:
            logger.log_hyperparams(dict(hparams))
        for step, row in rows:
            logger.log_metrics(dict(row), step=step)
        if image is not None:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(image_key, image, global_step=0, dataformats="HWC")
            elif isinstance(logger, WandbLogger):
                logger.log_image(key=image_key, images=[image], caption=[caption])
        directory = getattr(logger, "log_dir", None)
        if isinstance(directory, str):
            try:
                os.makedirs(directory, exist_ok=True)
                for name, value in (json_files or {}).items():
                    with open(os.path.join(directory, name), "w") as f:
                        json.dump(value, f, indent=2)
                if figure is not None:
                    path = os.path.join(directory, figure_file)
                    figure.savefig(path)
                    written[type(logger).__name__] = path
            except OSError as err:
                rank_zero_warn(f"Could not write {figure_file or 'the report'} to {directory!r}: {err}")
        logger.save()
    return written


def log_summary(
    trainer: pl.Trainer,
    summary: Mapping[str, Any],
    hparams: Mapping[str, Any],
    figure: bool = True,
    prefix: str = "pruning",
) -> dict[str, str]:
    """Send the summary to every logger of ``trainer`` (rank zero only).

    Each logger receives ``hparams`` under ``prefix`` (``log_hyperparams``), the scalar summary at step 0 and one
    row per pruning round (sparsity and metric weights) at steps ``1..T`` (``log_metrics``). With ``figure=True`` the
    per-layer density chart goes to TensorBoard (``add_image``) and W&B (``log_image``) and is saved as a PNG in the
    ``log_dir`` of every logger that has one (CSV, TensorBoard), next to ``pruning_summary.json``.

    Returns:
        ``{logger class name: file path}`` of the PNG files written (for the callback's summary).
    """
    if not trainer.loggers or not trainer.is_global_zero:
        return {}
    rows = [(0, flat_metrics(summary, prefix)), *_round_metrics(summary, prefix)]
    written: dict[str, str] | None = send_to_loggers(
        trainer,
        rows,
        hparams={prefix: dict(hparams)},
        figure=density_figure(summary) if figure else None,
        image_key=f"{prefix}/layer_density",
        figure_file=FIGURE_FILE,
        caption="per-layer density",
        json_files={SUMMARY_FILE: summary},
    )
    return written or {}
