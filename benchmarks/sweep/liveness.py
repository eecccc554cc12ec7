"""Does the network's output still depend on its input? Measured after pruning and after training, in every cell.

A mask can keep input-output *paths* (effective sparsity below 100%) and still give a network whose output is the
same for every image: when every ReLU unit of some layer is zero for every input, nothing upstream of it receives a
gradient, and training can only fit the last layer's bias (the class prior: test loss ln 10 on a balanced test set).
:class:`Liveness` measures that on a fixed probe batch (the first images of the test set, read by index, so no random
number is drawn and the run's results are unchanged):

* ``logit_spread``: the standard deviation over the probe images of each logit, averaged over classes (0: a constant
  output);
* ``dead_units``: the share of ReLU units (a channel of a convolution, a neuron of a linear layer) that are zero for
  every probe image, over all ReLU layers, and per layer in ``dead_units_by_layer``.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> with torch.no_grad():
    ...     _ = net[0].bias.copy_(torch.tensor([-1e3, 0.0, 0.0]))   # unit 0 is dead for any input
    >>> stats = measure(net, torch.randn(64, 4, generator=torch.Generator().manual_seed(0)))
    >>> round(stats["dead_units"], 3), {name: round(share, 3) for name, share in stats["dead_units_by_layer"].items()}
    (0.333, {'1': 0.333})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn

__all__ = ["LIVENESS_FIELDS", "Liveness", "at_chance", "failure_reading", "has_paths", "measure", "weights_on_paths"]


#: the record fields :class:`Liveness` writes (absent from records made before it existed)
LIVENESS_FIELDS = (
    "logit_spread_start",
    "dead_units_start",
    "logit_spread_end",
    "dead_units_end",
    "dead_units_by_layer_end",
)


def measure(model: nn.Module, images: Tensor) -> dict[str, Any]:
    """Logit spread and dead ReLU units of ``model`` on ``images``; the model is left in the mode it was in.

    Args:
        model: a classifier whose forward takes ``images`` and returns logits of shape ``(N, classes)``.
        images: a probe batch of shape ``(N, ...)`` with ``N >= 2``, on the model's device.

    Returns:
        ``logit_spread`` (float), ``dead_units`` (float in [0, 1], ``None`` without ReLU modules) and
        ``dead_units_by_layer`` (ReLU module name → share of its units that are dead).
    """
    alive: dict[str, Tensor] = {}

    def hook(name: str) -> Any:
        def record(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            # a unit is the channel axis (dim 1): alive if it is positive for any image at any position
            flat = output.detach().transpose(0, 1).reshape(output.shape[1], -1) if output.dim() > 1 else output
            seen = (flat > 0).any(dim=1)
            alive[name] = seen if name not in alive else alive[name] | seen

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            logits = model(images)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    spread = float(logits.float().std(dim=0).mean()) if logits.shape[0] > 1 else 0.0
    by_layer = {name: 1.0 - float(seen.float().mean()) for name, seen in alive.items()}
    units = sum(seen.numel() for seen in alive.values())
    dead = sum(int((~seen).sum()) for seen in alive.values())
    return {
        "logit_spread": spread,
        "dead_units": dead / units if units else None,
        "dead_units_by_layer": by_layer,
    }


class Liveness(Callback):
    """Measures :func:`measure` on the first ``probe_size`` test images at the start and at the end of training.

    Results are in :attr:`results`: ``logit_spread_start``, ``dead_units_start``, ``logit_spread_end``,
    ``dead_units_end`` and ``dead_units_by_layer_end``. The start is measured in ``on_train_start``, after the
    pruning callbacks' ``on_fit_start`` has applied the mask. Nothing is measured when the DataModule has no
    ``test_dataset`` after ``setup``.
    """

    def __init__(self, probe_size: int = 256) -> None:
        if probe_size < 2:
            raise ValueError(f"`probe_size` must be at least 2 (a spread needs two images), got {probe_size}.")
        self.probe_size = probe_size
        self.results: dict[str, Any] = {}

    def _probe(self, trainer: Trainer, pl_module: LightningModule) -> Tensor | None:
        dataset = getattr(getattr(trainer, "datamodule", None), "test_dataset", None)
        if dataset is None:
            return None
        count = min(self.probe_size, len(dataset))
        images = torch.stack([torch.as_tensor(dataset[i][0]) for i in range(count)])
        return images.to(pl_module.device)

    def _measure(self, trainer: Trainer, pl_module: LightningModule, when: str) -> None:
        images = self._probe(trainer, pl_module)
        if images is None or images.shape[0] < 2:
            return
        stats = measure(pl_module, images)
        self.results[f"logit_spread_{when}"] = stats["logit_spread"]
        self.results[f"dead_units_{when}"] = stats["dead_units"]
        if when == "end":
            self.results["dead_units_by_layer_end"] = stats["dead_units_by_layer"]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._measure(trainer, pl_module, "start")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._measure(trainer, pl_module, "end")


def at_chance(record: Mapping[str, Any], classes: int) -> bool:
    """Whether a finished cell ends at chance: accuracy < 100/classes + 2.5 points and loss > 0.99 ln(classes).

    That is a (nearly) constant output: its test loss is the entropy of the test labels (ln 10 when balanced).
    """
    acc, loss = record.get("test_acc"), record.get("test_loss")
    if record.get("status") != "ok" or acc is None or loss is None:
        return False
    return float(acc) < 100.0 / classes + 2.5 and float(loss) > 0.99 * math.log(classes)


def weights_on_paths(record: Mapping[str, Any]) -> int | None:
    """How many kept weights of the cell's mask lie on an input-output path (``None`` without effective sparsity)."""
    effective = record.get("effective_sparsity")
    if effective is None:
        return None
    return round((1.0 - float(effective)) * float(record.get("total_weights") or 0))


def has_paths(record: Mapping[str, Any]) -> bool:
    """Whether the cell's mask keeps at least one weight on an input-output path (effective sparsity below 100%)."""
    return (weights_on_paths(record) or 0) >= 1


def failure_reading(record: Mapping[str, Any]) -> str:
    """What a run at chance shows, from its mask's paths and the :class:`Liveness` probe (if it was recorded).

    Example::

        >>> failure_reading({"effective_sparsity": 0.999, "total_weights": 10_000,
        ...                  "logit_spread_start": 3e-4, "logit_spread_end": 0.0})
        'output became constant during training (spread 0.0003 after pruning, 0 at the end)'
    """
    if not has_paths(record):
        return "no input-output path left (layer collapse)"
    start, end = record.get("logit_spread_start"), record.get("logit_spread_end")
    if start is None or end is None:
        return "paths left; not probed (run made before the Liveness probe)"
    spreads = f"(spread {start:.2g} after pruning, {end:.2g} at the end)"
    if start == 0.0:
        return f"paths left but no signal through them from the start {spreads}"
    if end == 0.0:
        return f"output became constant during training {spreads}"
    return f"output nearly constant {spreads}"
