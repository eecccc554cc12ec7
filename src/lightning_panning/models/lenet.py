"""LeNet models used in the paper's MNIST / FashionMNIST experiments."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_panning.models._init import init_weights

__all__ = ["LeNet5", "LeNet300100"]


def _lenet5_feature_size(input_size: int) -> int:
    """Spatial size after conv5 → pool2 → conv5 → pool2 (``0`` when the input is too small)."""
    size = (input_size - 4) // 2
    size = (size - 4) // 2
    return max(size, 0)


class LeNet5(nn.Module):
    """LeNet-5, Caffe variant (conv 20 → pool → conv 50 → pool → fc 500 → fc classes).

    Layout (``input_size=28``): ``Conv2d(in, 20, 5)`` → ReLU → ``MaxPool2d(2)`` → ``Conv2d(20, 50, 5)`` → ReLU →
    ``MaxPool2d(2)`` → flatten (50·4·4 = 800) → ``Linear(800, 500)`` → ReLU → ``Linear(500, num_classes)``.
    With one input channel and 10 classes it has 431,080 parameters.

    Args:
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        input_size: height = width ``S`` of the (square) input images; at least 16.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).

    Shape:
        - Input: ``(N, C, S, S)``.
        - Output: ``(N, num_classes)`` logits.

    Raises:
        ValueError: if an argument is out of range.

    Example:
        >>> model = LeNet5()
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> sum(p.numel() for p in model.parameters())
        431080
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, init: str = "authors"
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}.")
        if in_channels < 1:
            raise ValueError(f"`in_channels` must be a positive integer, got {in_channels!r}.")
        feature_size = _lenet5_feature_size(input_size)
        if feature_size < 1:
            raise ValueError(
                f"`input_size` must be at least 16 for LeNet5 (two 5x5 convs and two 2x2 pools), got {input_size!r}."
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 50, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(50 * feature_size * feature_size, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, num_classes),
        )
        init_weights(self, init)

    def forward(self, x: Tensor) -> Tensor:
        """Compute logits.

        Args:
            x: images of shape ``(N, C, S, S)``.

        Returns:
            Logits of shape ``(N, num_classes)``.
        """
        return self.classifier(torch.flatten(self.features(x), 1))


class LeNet300100(nn.Module):
    """LeNet-300-100: a fully connected network ``D → 300 → 100 → num_classes`` with ReLUs.

    With ``D = 784`` and 10 classes it has 266,610 parameters.

    Args:
        num_classes: number of output logits.
        input_size: number of input features ``D``, or the per-sample input shape (e.g. ``[1, 28, 28]``) whose
            product is ``D``.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).

    Shape:
        - Input: ``(N, *)`` with ``D`` elements per sample (images are flattened), e.g. ``(N, 1, 28, 28)``.
        - Output: ``(N, num_classes)`` logits.

    Raises:
        ValueError: if an argument is out of range.

    Example:
        >>> model = LeNet300100(input_size=[1, 28, 28])
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        input_size: int | list[int] | tuple[int, ...] = 28 * 28,
        init: str = "authors",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}.")
        in_features = input_size if isinstance(input_size, int) else math.prod(input_size)
        if in_features < 1 or (not isinstance(input_size, int) and any(d < 1 for d in input_size)):
            raise ValueError(
                f"`input_size` must be a positive integer or a shape of positive integers, got {input_size!r}."
            )
        self.num_classes = num_classes
        self.in_features = in_features
        self.classifier = nn.Sequential(
            nn.Linear(in_features, 300),
            nn.ReLU(inplace=True),
            nn.Linear(300, 100),
            nn.ReLU(inplace=True),
            nn.Linear(100, num_classes),
        )
        init_weights(self, init)

    def forward(self, x: Tensor) -> Tensor:
        """Compute logits.

        Args:
            x: inputs of shape ``(N, *)`` with ``D`` elements per sample.

        Returns:
            Logits of shape ``(N, num_classes)``.
        """
        return self.classifier(torch.flatten(x, 1))
