"""The sweep's classifier: :class:`~lightning_panning.classifier.ImageClassifier` without per-step training metrics.

A sweep cell reads only the test metrics, so the training step computes the loss and nothing else: no
``MulticlassAccuracy`` update and no ``self.log`` per optimizer step (Python work the Trainer repeats ~19,000 times
in an 80-epoch LeNet5 cell). The loss is the same expression on the same logits, so training is unchanged to the
bit (``tests/test_sweep_compact.py`` checks it); validation and test steps are the parent's.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = SweepClassifier(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), num_classes=3)
    >>> float(model.training_step((torch.zeros(2, 1, 2, 2), torch.tensor([0, 1])), 0)) > 0
    True
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from lightning_panning.classifier import ImageClassifier

__all__ = ["SweepClassifier"]


class SweepClassifier(ImageClassifier):
    """:class:`ImageClassifier` whose training step returns the cross-entropy only (no metrics, no logging)."""

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Cross-entropy on one batch ``(x, y)`` of shapes ``(N, C, H, W)`` and ``(N,)``.

        Args:
            batch: images and class indices.
            batch_idx: index of the batch.

        Returns:
            The scalar loss.
        """
        return F.cross_entropy(self(batch[0]), batch[1])
