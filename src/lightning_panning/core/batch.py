"""Losses and the class-balanced scoring batch ``D^b`` (METHOD §2)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "ClassificationLoss",
    "LossFn",
    "balanced_batch",
    "batch_inputs",
    "batch_labels",
    "move_to_device",
]

#: ``loss_fn(model, batch) -> scalar tensor``; the model is called inside it, so it sees the masked weights.
LossFn = Callable[[nn.Module, Any], Tensor]

_INPUT_KEYS = ("x", "input", "inputs", "image", "images", "input_ids")
_LABEL_KEYS = ("y", "label", "labels", "target", "targets")


def batch_inputs(batch: Any) -> Any:
    """The model input of a batch: ``batch[0]`` of a tuple/list, the tensor itself, or a dict's ``x``/``input``/…."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0]
    if isinstance(batch, Mapping):
        for key in _INPUT_KEYS:
            if key in batch:
                return batch[key]
    raise TypeError(
        f"Cannot find the model input in a batch of type {type(batch).__name__}; expected a tensor, an (x, y) "
        f"tuple/list, or a dict with one of the keys {list(_INPUT_KEYS)}. Pass a `loss_fn(model, batch)` for "
        "other batch layouts."
    )


def batch_labels(batch: Any) -> Tensor | None:
    """Integer class labels of a batch (``batch[1]`` or a dict's ``y``/``label``/…), or ``None`` if it has none."""
    candidate: Any = None
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        candidate = batch[1]
    elif isinstance(batch, Mapping):
        candidate = next((batch[k] for k in _LABEL_KEYS if k in batch), None)
    if isinstance(candidate, Tensor) and candidate.ndim == 1 and not candidate.is_floating_point():
        return candidate
    return None


def move_to_device(batch: Any, device: torch.device | str) -> Any:
    """Recursively move the tensors of a batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


class ClassificationLoss:
    """Cross-entropy on ``(x, y)`` batches with the logits divided by a temperature.

    The authors divide logits by 200 before the cross-entropy when scoring with SNIP/GraSP (from the GraSP code).

    Args:
        temperature: logit divisor; ``1.0`` gives the plain cross-entropy.

    Example:
        >>> import torch
        >>> loss = ClassificationLoss(temperature=1.0)
        >>> net = torch.nn.Linear(4, 3)
        >>> loss(net, (torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))).ndim
        0
    """

    needs_labels = True

    def __init__(self, temperature: float = 200.0) -> None:
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
            raise ValueError(f"`temperature` must be a positive number, got {temperature!r}.")
        self.temperature = float(temperature)

    def __call__(self, model: nn.Module, batch: Any) -> Tensor:
        """Loss of ``model`` on ``batch``: inputs ``(B, ...)``, labels ``(B,)`` int64 → scalar."""
        labels = batch_labels(batch)
        if labels is None:
            raise ValueError(
                "The classification loss needs integer class labels, but the batch has none (expected an (x, y) "
                "batch with y of shape (B,) and an integer dtype). Pass a `loss_fn(model, batch)` for unlabelled "
                "data, or use a data-free method such as 'synflow', 'magnitude' or 'random'."
            )
        output = model(batch_inputs(batch))
        if not isinstance(output, Tensor):
            raise TypeError(
                f"The classification loss expects the model to return a logits tensor (B, classes), got "
                f"{type(output).__name__}. Pass a `loss_fn(model, batch)` for this model."
            )
        return F.cross_entropy(output / self.temperature, labels)

    def __repr__(self) -> str:
        return f"ClassificationLoss(temperature={self.temperature})"


def _iter_samples(data: DataLoader | Dataset | Iterable[Any]) -> Iterable[tuple[Any, int]]:
    """Yield ``(sample_input, label)`` pairs from a DataLoader (batched) or a map-style Dataset (unbatched)."""
    if isinstance(data, DataLoader) or not hasattr(data, "__getitem__"):
        for batch in data:
            labels = batch_labels(batch)
            if labels is None:
                raise ValueError(
                    "A class-balanced batch needs labelled data, but a batch from the given data has no integer "
                    "labels (expected (x, y) batches with y of shape (B,)). Pass a `loss_fn` and data-free or "
                    "label-free scorers, or give labelled data."
                )
            inputs = batch_inputs(batch)
            for i, label in enumerate(labels.tolist()):
                yield inputs[i], int(label)
    else:
        for index in range(len(data)):  # type: ignore[arg-type]
            sample = data[index]
            if not (isinstance(sample, (tuple, list)) and len(sample) >= 2):
                raise ValueError(
                    f"A class-balanced batch needs (input, label) samples, got a {type(sample).__name__} from the "
                    "dataset."
                )
            x, y = sample[0], sample[1]
            yield (x if isinstance(x, Tensor) else torch.as_tensor(x)), int(y)


def balanced_batch(
    data: DataLoader | Dataset | Iterable[Any],
    per_class: int = 10,
    num_classes: int | None = None,
    seed: int = 0,
    max_samples: int = 1_000_000,
) -> tuple[Tensor, Tensor]:
    """Build ``D^b``: ``per_class`` samples of each class, ordered by class.

    The data is read in its own order under a forked RNG seeded with ``seed``, so a shuffling DataLoader (or random
    augmentation) gives the same batch for the same seed.

    Args:
        data: a DataLoader of ``(x, y)`` batches, a map-style Dataset of ``(x, y)`` samples, or an iterable of
            batches.
        per_class: ``k``, samples per class (authors: 10; 5 for 100/200-class sets).
        num_classes: number of classes; inferred from ``dataset.classes`` when available, else from the labels seen
            (then the whole data is read unless ``max_samples`` stops it).
        seed: RNG seed for the read.
        max_samples: stop reading after this many samples.

    Returns:
        ``(x, y)`` with ``x`` of shape ``(k * l, *input_shape)`` and ``y`` of shape ``(k * l,)`` int64.

    Raises:
        ValueError: for ``per_class < 1``, unlabelled data, or when a class has fewer than ``per_class`` samples.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"`per_class` must be a positive integer, got {per_class!r}.")
    if num_classes is None:
        dataset = data.dataset if isinstance(data, DataLoader) else data
        classes = getattr(dataset, "classes", None)
        if isinstance(classes, Sequence) and len(classes) > 0:
            num_classes = len(classes)
    buckets: dict[int, list[Tensor]] = {}
    seen = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for x, y in _iter_samples(data):
            seen += 1
            bucket = buckets.setdefault(y, [])
            if len(bucket) < per_class:
                bucket.append(x.detach().cpu())
            full = num_classes is not None and len(buckets) >= num_classes
            if (full and all(len(b) >= per_class for b in buckets.values())) or seen >= max_samples:
                break
    if not buckets:
        raise ValueError("The data given for the scoring batch is empty.")
    short = {c: len(b) for c, b in buckets.items() if len(b) < per_class}
    missing = [] if num_classes is None else [c for c in range(num_classes) if c not in buckets]
    if short or missing:
        raise ValueError(
            f"Cannot build a class-balanced batch with per_class={per_class}: classes with too few samples "
            f"{short or {}}, classes never seen {missing}. Lower `per_class` or give more data."
        )
    order = sorted(buckets)
    xs = torch.stack([x for c in order for x in buckets[c]])
    ys = torch.tensor([c for c in order for _ in buckets[c]], dtype=torch.long)
    return xs, ys
