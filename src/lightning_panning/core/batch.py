"""Losses and the class-balanced scoring batch ``D^b`` (METHOD §2)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "ClassificationLoss",
    "Data",
    "LossFn",
    "SamplePool",
    "balanced_batch",
    "batch_inputs",
    "batch_labels",
    "label_problem",
    "move_to_device",
    "scoring_batch",
]

#: ``loss_fn(model, batch) -> scalar tensor``; the model is called inside it, so it sees the masked weights.
LossFn = Callable[[nn.Module, Any], Tensor]

#: Keys of a dict batch that hold the model input, in order of preference.
INPUT_KEYS = ("x", "input", "inputs", "image", "images", "input_ids")
#: Keys of a dict batch that hold the labels.
LABEL_KEYS = ("y", "label", "labels", "target", "targets")


def batch_inputs(batch: Any) -> Any:
    """The model input of a batch: ``batch[0]`` of a tuple/list, the tensor itself, or a dict's ``x``/``input``/…."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0]
    if isinstance(batch, Mapping):
        for key in INPUT_KEYS:
            if key in batch:
                return batch[key]
    raise TypeError(
        f"Cannot find the model input in a batch of type {type(batch).__name__}; expected a tensor, an (x, y) "
        f"tuple/list, or a dict with one of the keys {list(INPUT_KEYS)}. Pass a `loss_fn(model, batch)` for "
        "other batch layouts."
    )


def batch_labels(batch: Any) -> Tensor | None:
    """Integer class labels of a batch (``batch[1]`` or a dict's ``y``/``label``/…), or ``None`` if it has none."""
    candidate: Any = None
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        candidate = batch[1]
    elif isinstance(batch, Mapping):
        candidate = next((batch[k] for k in LABEL_KEYS if k in batch), None)
    if isinstance(candidate, Tensor) and candidate.ndim == 1 and not candidate.is_floating_point():
        return candidate
    return None


def _label_candidate(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[1]
    if isinstance(batch, Mapping):
        return next((batch[k] for k in LABEL_KEYS if k in batch), None)
    return None


def label_problem(batch: Any, num_outputs: int | None = None) -> str | None:
    """Why ``batch``'s labels cannot be class indices for ``num_outputs`` logits, in words, or ``None``.

    Looks at what would be the labels (``batch[1]``, or a dict's ``y``/``label``/…): floating-point values of shape
    ``(B,)`` (class indices must be integers), or integers outside ``[0, num_outputs)``.

    Example:
        >>> print(label_problem((torch.zeros(3, 2), torch.tensor([0.0, 1.0, 2.0]))))
        its labels y are torch.float32 values; class labels must be integers (torch.long): convert them, e.g. `y.long()`
        >>> label_problem((torch.zeros(3, 2), torch.tensor([0, 1, 4])), num_outputs=3)
        'its labels range over [0, 4] but the model gives 3 outputs per sample: class labels must lie in [0, 2]'
    """
    y = _label_candidate(batch)
    if not isinstance(y, Tensor) or y.ndim != 1 or y.numel() == 0:
        return None
    if y.is_floating_point():
        return (
            f"its labels y are {y.dtype} values; class labels must be integers (torch.long): convert them, e.g. "
            "`y.long()`"
        )
    if num_outputs is not None and y.dtype != torch.bool:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_outputs:
            return (
                f"its labels range over [{lo}, {hi}] but the model gives {num_outputs} outputs per sample: class "
                f"labels must lie in [0, {num_outputs - 1}]"
            )
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
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, numbers.Real)
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise ValueError(f"`temperature` must be a finite number > 0, got {temperature!r}.")
        self.temperature: float = float(temperature)

    def __call__(self, model: nn.Module, batch: Any) -> Tensor:
        """Loss of ``model`` on ``batch``: inputs ``(B, ...)``, labels ``(B,)`` int64 → scalar.

        The model is called with the batch's inputs as :func:`~lightning_panning.core.inputs.model_input` finds them
        (a dict's keyword arguments without the labels, for example), and an output's ``logits`` entry is used.
        """
        labels = batch_labels(batch)
        if labels is None:
            problem = label_problem(batch)
            raise ValueError(
                "The classification loss needs integer class labels, but the batch has none (expected an (x, y) "
                f"batch with y of shape (B,) and an integer dtype){'' if problem is None else ': ' + problem}. Pass "
                "a `loss_fn(model, batch)` for unlabelled data, or use a data-free method such as 'synflow', "
                "'magnitude' or 'random'."
            )
        from lightning_panning.core.inputs import model_input, output_logits  # inputs imports this module

        output = output_logits(model_input(model, batch)(model))
        if not isinstance(output, Tensor):
            raise TypeError(
                f"The classification loss expects the model to return a logits tensor (B, classes), got "
                f"{type(output).__name__}. Pass a `loss_fn(model, batch)` for this model."
            )
        if output.ndim == 2 and output.shape[0] == labels.shape[0]:  # one check, before cross-entropy's own
            num_outputs = output.shape[1]
            if bool(((labels < 0) | (labels >= num_outputs)).any()):
                raise ValueError(
                    f"The classification loss cannot score this batch: {label_problem(batch, num_outputs)}. Check "
                    "the dataset's labels and the model's number of classes, or pass a `loss_fn(model, batch)`."
                )
        return F.cross_entropy(output / self.temperature, labels)

    def __repr__(self) -> str:
        return f"ClassificationLoss(temperature={self.temperature})"


class SamplePool:
    """Labelled samples held in memory and indexed by class, for fast class-balanced draws with a seeded RNG.

    Drawing is an index lookup (no pass over the data), which is what an environment that needs a new batch every
    episode wants; :func:`scoring_batch` draws from a pool with the generator it is given.

    Args:
        data: an ``(inputs (N, ...), labels (N,))`` pair of tensors, or a map-style Dataset of ``(x, y)`` samples
            (its ``targets`` attribute is used when present, else every sample's label is read once).
        transform: applied to each drawn input batch ``(k·l, ...)`` (e.g. normalisation of uint8 images).

    Example:
        >>> import numpy as np
        >>> pool = SamplePool((torch.arange(12.0).view(6, 2), torch.tensor([0, 1, 0, 1, 2, 2])))
        >>> x, y = pool.sample(per_class=2, generator=np.random.default_rng(0))
        >>> x.shape, y.tolist()
        (torch.Size([6, 2]), [0, 0, 1, 1, 2, 2])
    """

    def __init__(
        self, data: Dataset | tuple[Tensor, Tensor], transform: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        self.transform = transform
        self.dataset: Dataset | None = None
        self.x: Tensor | None = None
        if isinstance(data, (tuple, list)):
            if len(data) != 2 or not all(isinstance(t, Tensor) for t in data):
                raise TypeError("`data` as a tuple must be (inputs (N, ...), labels (N,)) tensors.")
            self.x, labels = data[0], data[1]
        elif isinstance(data, Dataset):
            self.dataset = data
            targets = getattr(data, "targets", None)
            if targets is None:
                targets = [int(data[i][1]) for i in range(len(data))]  # type: ignore[arg-type]
            labels = torch.as_tensor(targets)
        else:
            raise TypeError(
                f"`data` must be a Dataset of (x, y) samples or an (inputs, labels) tuple of tensors, got "
                f"{type(data).__name__}."
            )
        y = labels.detach().cpu().long().reshape(-1)
        if self.x is not None and self.x.shape[0] != y.shape[0]:
            raise ValueError(f"`data` has {self.x.shape[0]} inputs but {y.shape[0]} labels.")
        y_np = y.numpy()
        self.classes = np.unique(y_np)
        self.by_class = [np.flatnonzero(y_np == c) for c in self.classes]
        self.labels = y

    def check(self, per_class: int) -> None:
        """Raise a clear error if a class has fewer than ``per_class`` samples."""
        short = {int(c): len(i) for c, i in zip(self.classes, self.by_class, strict=True) if len(i) < per_class}
        if short:
            raise ValueError(f"Classes {short} have fewer than per_class={per_class} samples; lower `per_class`.")

    def sample(self, per_class: int, generator: np.random.Generator) -> tuple[Tensor, Tensor]:
        """A class-balanced batch ``(x (k·l, ...), y (k·l,))``, ordered by class, drawn without replacement."""
        index = np.concatenate(
            [idx[generator.choice(len(idx), size=per_class, replace=False)] for idx in self.by_class]
        )
        index_t = torch.from_numpy(index)
        if self.x is not None:
            x = self.x[index_t]
        else:
            assert self.dataset is not None
            x = torch.stack([torch.as_tensor(self.dataset[int(i)][0]) for i in index])
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[index_t]


#: What a scoring batch can be built from: a DataLoader, a Dataset, a :class:`SamplePool`, a ready batch, or nothing.
Data = DataLoader | Dataset | SamplePool | tuple | list | Tensor | Mapping | None


def _unlabelled_error(batch: Any = None) -> ValueError:
    problem = label_problem(batch)
    return ValueError(
        "Scoring needs integer labels (for the classification loss and the class-balanced batch), but a batch from "
        "the given data has no integer labels "
        f"(expected (x, y) batches with y of shape (B,)){'' if problem is None else ': ' + problem}. Pass a "
        "`loss_fn` and data-free or label-free scorers, or give labelled data."
    )


def _read(
    data: DataLoader | Dataset | Iterable[Any],
    per_class: int,
    num_classes: int | None,
    balanced: bool,
    require_labels: bool,
    max_samples: int,
) -> Any:
    """One pass over ``data``: its first batch when unlabelled (or ``balanced`` is off), else ``D^b``."""
    batches: Iterable[Any] = data  # type: ignore[assignment]
    if isinstance(data, Dataset) and not isinstance(data, DataLoader) and hasattr(data, "__getitem__"):
        batches = DataLoader(data, batch_size=per_class * (num_classes or 10))
    buckets: dict[int, list[Any]] = {}
    label_key: str | None = None
    seen = 0
    for batch in batches:
        labels = batch_labels(batch)
        if seen == 0 and (labels is None or not balanced):
            if labels is None and require_labels:
                raise _unlabelled_error(batch)
            return batch
        if labels is None:
            raise _unlabelled_error(batch)
        inputs: Any = None
        if isinstance(batch, Mapping):  # keep every per-sample entry (attention_mask, token_type_ids, ...)
            label_key = next(k for k in LABEL_KEYS if k in batch)
            per_sample = [k for k, v in batch.items() if k != label_key and _per_sample(v, len(labels))]
        else:
            inputs = batch_inputs(batch)
        for i, label in enumerate(labels.tolist()):
            seen += 1
            bucket = buckets.setdefault(int(label), [])
            if len(bucket) < per_class:
                if inputs is None:
                    bucket.append({k: batch[k][i].detach().cpu() for k in per_sample})
                else:
                    bucket.append(inputs[i].detach().cpu())
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
    samples = [x for c in order for x in buckets[c]]
    ys = torch.tensor([c for c in order for _ in buckets[c]], dtype=torch.long)
    if label_key is not None:  # a dict batch stays a dict batch, its labels under their own key
        return {**{k: torch.stack([x[k] for x in samples]) for k in samples[0]}, label_key: ys}
    return torch.stack(samples), ys


def _per_sample(value: Any, size: int) -> bool:
    return isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == size


def _num_classes(data: Any, num_classes: int | None) -> int | None:
    if num_classes is not None:
        return num_classes
    dataset = data.dataset if isinstance(data, DataLoader) else data
    classes = getattr(dataset, "classes", None)
    if isinstance(classes, Sequence) and not isinstance(classes, str) and len(classes) > 0:
        return len(classes)
    return None


def scoring_batch(
    data: Data,
    per_class: int = 10,
    num_classes: int | None = None,
    seed: int = 0,
    *,
    balanced: bool = True,
    require_labels: bool = False,
    generator: np.random.Generator | None = None,
    device: torch.device | str | None = None,
    max_samples: int = 1_000_000,
) -> Any:
    """The scoring batch, by the one rule that ``prune``, the callbacks and the RL environment all use.

    * ``None`` stays ``None`` (data-free scoring).
    * A ready batch (tensor, ``(x, y)`` tuple/list, dict) is used as it is.
    * A :class:`SamplePool` gives a class-balanced batch drawn with ``generator`` (default: seeded with ``seed``).
    * A DataLoader or Dataset is read once, in its own order, under a forked RNG seeded with ``seed`` (so a
      shuffling loader or random augmentation gives the same batch for the same seed): when its batches are
      labelled ``(x, y)`` with integer labels ``y`` of shape ``(B,)`` and ``balanced`` is on, the result is
      ``D^b``, ``per_class`` samples of each class ordered by class; otherwise it is the first batch (a Dataset is
      read in batches of ``per_class × (num_classes or 10)``).

    Args:
        data: see above.
        per_class: ``k``, samples per class (authors: 10; 5 for 100/200-class sets).
        num_classes: number of classes; inferred from ``dataset.classes`` when available, else from the labels seen
            (then the whole data is read unless ``max_samples`` stops it).
        seed: RNG seed for reading a DataLoader/Dataset, or for a pool without ``generator``.
        balanced: build ``D^b`` from labelled data (off: the first batch, enough for data-free scorers' input
            shape).
        require_labels: raise when the data has no integer labels (the loss needs them).
        generator: the RNG for drawing from a :class:`SamplePool`.
        device: move the batch's tensors here (default: leave them where they are).
        max_samples: stop reading a DataLoader/Dataset after this many samples.

    Returns:
        The batch: ``(x (k·l, ...), y (k·l,))`` for ``D^b`` (from dict batches a dict with every per-sample entry,
        e.g. ``input_ids`` and ``attention_mask``, and the labels under their own key), else what the data yields.

    Raises:
        ValueError: for ``per_class < 1``, empty data, unlabelled data when ``require_labels``, or a class with
            fewer than ``per_class`` samples.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.randn(30, 4), torch.arange(30) % 3)
        >>> x, y = scoring_batch(DataLoader(data, batch_size=8, shuffle=True), per_class=2, seed=0)
        >>> x.shape, y.tolist()
        (torch.Size([6, 4]), [0, 0, 1, 1, 2, 2])
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"`per_class` must be a positive integer, got {per_class!r}.")
    if data is None:
        return None
    batch: Any
    if isinstance(data, SamplePool):
        batch = data.sample(per_class, generator if generator is not None else np.random.default_rng(seed))
    elif isinstance(data, (DataLoader, Dataset)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            batch = _read(data, per_class, _num_classes(data, num_classes), balanced, require_labels, max_samples)
    elif isinstance(data, (Tensor, tuple, list, Mapping)):
        batch = data
        if require_labels and batch_labels(batch) is None:
            raise _unlabelled_error(batch)
    else:
        raise TypeError(
            f"`data` must be a DataLoader, a Dataset, a SamplePool, a batch (tensor, (x, y) tuple or dict) or None, "
            f"got {type(data).__name__}."
        )
    return batch if device is None else move_to_device(batch, device)


def balanced_batch(
    data: DataLoader | Dataset | Iterable[Any],
    per_class: int = 10,
    num_classes: int | None = None,
    seed: int = 0,
    max_samples: int = 1_000_000,
) -> tuple[Tensor, Tensor]:
    """Build ``D^b``: ``per_class`` samples of each class, ordered by class (see :func:`scoring_batch`).

    Args:
        data: a DataLoader of ``(x, y)`` batches, a map-style Dataset of ``(x, y)`` samples, or an iterable of
            batches.
        per_class: ``k``, samples per class.
        num_classes: number of classes (inferred when possible).
        seed: RNG seed for the read.
        max_samples: stop reading after this many samples.

    Returns:
        ``(x, y)`` with ``x`` of shape ``(k * l, *input_shape)`` and ``y`` of shape ``(k * l,)`` int64.

    Raises:
        ValueError: for ``per_class < 1``, unlabelled data, or when a class has fewer than ``per_class`` samples.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"`per_class` must be a positive integer, got {per_class!r}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        batch = _read(data, per_class, _num_classes(data, num_classes), True, True, max_samples)
    assert isinstance(batch, tuple)
    return batch


def batch_size(batch: Any) -> int:
    """Samples in a batch: the leading dimension of its model input (the first tensor of a dict of inputs).

    Example:
        >>> batch_size((torch.zeros(5, 3), torch.zeros(5))), batch_size({"input_ids": torch.zeros(4, 7)})
        (5, 4)
    """
    try:
        inputs = batch_inputs(batch)
    except TypeError:  # another layout (read by a custom loss_fn): its first tensor with a batch dimension
        inputs = batch
    found = _first_tensor(inputs)
    if found is None:
        raise TypeError(f"Cannot count the samples of a batch of type {type(batch).__name__}: it holds no tensor.")
    return int(found.shape[0])


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value if value.ndim > 0 else None
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (tuple, list)) else ()
    for item in items:
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


def split_batch(batch: Any, micro_batch: int) -> list[Any]:
    """``batch`` as consecutive chunks of at most ``micro_batch`` samples.

    Every per-sample tensor (leading dimension = the batch size) is sliced; other entries are shared by the chunks.

    Example:
        >>> [c[0].shape[0] for c in split_batch((torch.zeros(5, 2), torch.arange(5)), 2)]
        [2, 2, 1]
    """
    size = batch_size(batch)
    if micro_batch >= size:
        return [batch]

    def cut(value: Any, start: int) -> Any:
        if _per_sample(value, size):
            return value[start : start + micro_batch]
        if isinstance(value, Mapping):
            return type(value)({k: cut(v, start) for k, v in value.items()})  # type: ignore[call-arg]
        if isinstance(value, (tuple, list)):
            return type(value)(cut(v, start) for v in value)
        return value

    return [cut(batch, start) for start in range(0, size, micro_batch)]
