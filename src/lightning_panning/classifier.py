"""A LightningModule that trains any image backbone with the paper's recipe (SGD + cosine, Table 1)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torch.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightning_panning._lightning_private import cli_given_hparams

__all__ = ["ImageClassifier", "infer_num_classes"]

#: Top-5 accuracy is tracked from this many classes on.
TOP5_MIN_CLASSES = 100


def infer_num_classes(backbone: nn.Module) -> int:
    """Guess the number of classes of a classifier network.

    Uses ``backbone.num_classes`` when it is an int (all :mod:`lightning_panning.models` set it), else the
    ``out_features`` of the last ``nn.Linear`` registered in the module (the head of torchvision's classifiers).

    Args:
        backbone: a network mapping images to logits.

    Returns:
        The number of output logits.

    Raises:
        ValueError: if neither source is available.

    Example:
        >>> infer_num_classes(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 7)))
        7
    """
    num_classes = getattr(backbone, "num_classes", None)
    if isinstance(num_classes, int) and not isinstance(num_classes, bool):
        return num_classes
    linears = [m for m in backbone.modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1].out_features
    raise ValueError(
        f"Cannot infer `num_classes` from a {type(backbone).__name__} (no `num_classes` attribute and no nn.Linear "
        "head); pass `num_classes` to ImageClassifier."
    )


class ImageClassifier(LightningModule):
    """Image classification with cross-entropy, top-1 (and top-5) accuracy and SGD + cosine annealing.

    The defaults are the training recipe of the Panning paper (Table 1): SGD with momentum 0.9, learning rate 0.1
    annealed to 0 with :class:`~torch.optim.lr_scheduler.CosineAnnealingLR` stepped once per epoch with
    ``T_max = trainer.max_epochs`` (when the trainer is limited by ``max_steps`` only, it is stepped per
    optimizer step with ``T_max = trainer.estimated_stepping_batches``). Weight decay applies to all parameters,
    as in the authors' code. Any other optimizer or scheduler can be given as a callable (``optimizer``,
    ``lr_scheduler``), which is how LightningCLI passes ``class_path`` configs.

    Logged metrics: ``train/loss`` (per step), ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss``,
    ``test/acc`` (per epoch, micro-averaged top-1 accuracy) and ``train|val|test/acc_top5`` when
    ``num_classes >= 100``.

    Checkpoints: the backbone's weights are in the state dict. Under LightningCLI its config is saved too, so
    ``ImageClassifier.load_from_checkpoint(path)`` rebuilds everything; for a module built in Python pass the
    backbone again: ``ImageClassifier.load_from_checkpoint(path, backbone=VGG19())``.

    Args:
        backbone: network mapping images ``(N, C, H, W)`` to logits ``(N, num_classes)``.
        num_classes: number of classes; ``None`` infers it with :func:`infer_num_classes`.
        lr: initial learning rate of the default SGD.
        momentum: momentum of the default SGD.
        weight_decay: L2 penalty of the default SGD (the paper uses 5e-4 for VGG/ResNet, 1e-4 for LeNet5).
        nesterov: use Nesterov momentum in the default SGD.
        optimizer: optional ``params -> Optimizer`` callable replacing the default SGD.
        lr_scheduler: optional ``Optimizer -> scheduler`` callable replacing the default cosine annealing; it is
            stepped per epoch (a ``ReduceLROnPlateau`` monitors ``val/loss``).

    Raises:
        ValueError: for a non-positive ``num_classes``, a negative ``lr``/``momentum``/``weight_decay``, or
            ``nesterov`` without momentum.

    Example:
        >>> from lightning_panning.models import LeNet5
        >>> model = ImageClassifier(LeNet5(num_classes=10))
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int | None = None,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = False,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if num_classes is None:
            num_classes = infer_num_classes(backbone)
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer or None, got {num_classes!r}.")
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if value < 0:
                raise ValueError(f"`{name}` must be non-negative, got {value!r}.")
        if nesterov and momentum <= 0:
            raise ValueError(f"`nesterov=True` needs a positive `momentum`, got momentum={momentum!r}.")
        # Under LightningCLI the hyperparameters are the (plain, YAML-able) config, backbone included: keep it so
        # `load_from_checkpoint(path)` can rebuild the model. Outside it they are live objects: leave them out.
        given = cli_given_hparams()
        self.save_hyperparameters(ignore=[] if given is not None else ["backbone", "optimizer", "lr_scheduler"])
        self.backbone = backbone
        self.num_classes = num_classes
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler

        metrics: dict[str, Any] = {"acc": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
        if num_classes >= TOP5_MIN_CLASSES:
            metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        collection = MetricCollection(metrics)
        self.train_metrics = collection.clone(prefix="train/")
        self.val_metrics = collection.clone(prefix="val/")
        self.test_metrics = collection.clone(prefix="test/")

    def forward(self, x: Tensor) -> Tensor:
        """Compute logits.

        Args:
            x: images ``(N, C, H, W)``.

        Returns:
            Logits ``(N, num_classes)``.
        """
        return self.backbone(x)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str, metrics: MetricCollection) -> Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metrics.update(logits, y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=True, batch_size=x.shape[0])
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=x.shape[0])
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Cross-entropy on one batch ``(x, y)`` of shapes ``(N, C, H, W)`` and ``(N,)``.

        Args:
            batch: images and class indices.
            batch_idx: index of the batch.

        Returns:
            The scalar loss.
        """
        return self._shared_step(batch, "train", self.train_metrics)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Log ``val/loss`` and ``val/acc`` for one batch ``(x, y)``.

        Args:
            batch: images ``(N, C, H, W)`` and class indices ``(N,)``.
            batch_idx: index of the batch.
        """
        self._shared_step(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Log ``test/loss`` and ``test/acc`` for one batch ``(x, y)``.

        Args:
            batch: images ``(N, C, H, W)`` and class indices ``(N,)``.
            batch_idx: index of the batch.
        """
        self._shared_step(batch, "test", self.test_metrics)

    def predict_step(self, batch: Tensor | tuple[Tensor, ...] | list[Tensor], batch_idx: int) -> Tensor:
        """Logits for a batch of images, or for the images of an ``(x, y)`` batch.

        Args:
            batch: images ``(N, C, H, W)``, or a tuple/list whose first item they are.
            batch_idx: index of the batch.

        Returns:
            Logits ``(N, num_classes)``.
        """
        x = batch if isinstance(batch, Tensor) else batch[0]
        return self(x)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """The optimizer (SGD unless ``optimizer`` is given) and its scheduler (cosine unless ``lr_scheduler``).

        Returns:
            ``{"optimizer": ..., "lr_scheduler": {"scheduler": ..., "interval": ...}}``.
        """
        if self.optimizer_factory is not None:
            optimizer = self.optimizer_factory(self.parameters())
        else:
            optimizer = torch.optim.SGD(
                self.parameters(),
                lr=self.lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                nesterov=self.nesterov,
            )
        if self.lr_scheduler_factory is not None:
            scheduler = self.lr_scheduler_factory(optimizer)
            config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
            if isinstance(scheduler, ReduceLROnPlateau):
                config["monitor"] = "val/loss"
            return {"optimizer": optimizer, "lr_scheduler": config}  # type: ignore[typeddict-item]
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs > 0:
            cosine = CosineAnnealingLR(optimizer, T_max=max_epochs)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "epoch"}}
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        cosine = CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}
