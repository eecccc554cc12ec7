"""ResNets for CIFAR-size inputs: ResNet-18/34 (3x3 stem, no max-pool) and He et al.'s ResNet-20/32/56."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_panning.models._init import init_weights

__all__ = ["BasicBlock", "ResNet", "ResNet18", "ResNet20", "ResNet32", "ResNet34", "ResNet56"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut, or a 1x1 conv-BN shortcut (option B) on a shape change.

    Args:
        in_planes: input channels ``C_in``.
        planes: output channels ``C_out``.
        stride: stride of the first conv and of the shortcut.

    Shape:
        - Input: ``(N, C_in, H, W)``.
        - Output: ``(N, C_out, ceil(H / stride), ceil(W / stride))``.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: feature map ``(N, C_in, H, W)``.

        Returns:
            Feature map ``(N, C_out, ceil(H / stride), ceil(W / stride))``.
        """
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Generic CIFAR-style ResNet of :class:`BasicBlock` stages.

    Stem: 3x3 conv (stride 1, ``widths[0]`` channels) → BN → ReLU, no max-pool. Stage ``i`` has ``num_blocks[i]``
    blocks of ``widths[i]`` channels; every stage but the first halves the resolution. Then global average pooling
    and one ``Linear(widths[-1], num_classes)``. Works for any input size (global pooling), e.g. 32x32 or 64x64.

    Args:
        num_blocks: blocks per stage, e.g. ``[2, 2, 2, 2]`` for ResNet-18, ``[3, 3, 3]`` for ResNet-20.
        widths: channels per stage, same length as ``num_blocks``, e.g. ``[64, 128, 256, 512]`` or ``[16, 32, 64]``.
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, num_classes)`` logits.

    Raises:
        ValueError: if the stage lists are empty, of different lengths or hold non-positive values.

    Example:
        >>> model = ResNet(num_blocks=[1, 1], widths=[8, 16], num_classes=5)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        num_blocks: Sequence[int],
        widths: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        init: str = "authors",
    ) -> None:
        super().__init__()
        if len(num_blocks) == 0 or len(num_blocks) != len(widths):
            raise ValueError(
                "`num_blocks` and `widths` must be non-empty and of the same length, got "
                f"num_blocks={list(num_blocks)!r} and widths={list(widths)!r}."
            )
        if any(n < 1 for n in num_blocks) or any(w < 1 for w in widths):
            raise ValueError(
                f"`num_blocks` and `widths` must hold positive integers, got {list(num_blocks)!r} and {list(widths)!r}."
            )
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}.")
        if in_channels < 1:
            raise ValueError(f"`in_channels` must be a positive integer, got {in_channels!r}.")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages: list[nn.Module] = []
        in_planes = widths[0]
        for i, (blocks, planes) in enumerate(zip(num_blocks, widths, strict=True)):
            layers: list[nn.Module] = []
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self, init)

    def forward(self, x: Tensor) -> Tensor:
        """Compute logits.

        Args:
            x: images of shape ``(N, C, H, W)``.

        Returns:
            Logits of shape ``(N, num_classes)``.
        """
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return self.fc(torch.flatten(self.pool(out), 1))


class ResNet18(ResNet):
    """ResNet-18 for CIFAR-size inputs (3x3 stem, no max-pool), the paper's CIFAR-100 / Tiny-ImageNet model.

    Input ``(N, C, H, W)``, e.g. 32x32 or 64x64; output ``(N, num_classes)`` logits. About 11.2 M parameters.

    Args:
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).

    Example:
        >>> ResNet18(num_classes=100)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 100])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, init: str = "authors") -> None:
        super().__init__([2, 2, 2, 2], [64, 128, 256, 512], num_classes, in_channels, init)


class ResNet34(ResNet):
    """ResNet-34 for CIFAR-size inputs (3x3 stem, no max-pool); input ``(N, C, H, W)``, output ``(N, num_classes)``.

    Args:
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, init: str = "authors") -> None:
        super().__init__([3, 4, 6, 3], [64, 128, 256, 512], num_classes, in_channels, init)


class ResNet20(ResNet):
    """ResNet-20 of He et al. (2016) for CIFAR: 3 stages of 3 blocks, 16/32/64 channels, conv shortcuts.

    Input ``(N, C, H, W)``, output ``(N, num_classes)`` logits.

    Args:
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).

    Example:
        >>> ResNet20()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, init: str = "authors") -> None:
        super().__init__([3, 3, 3], [16, 32, 64], num_classes, in_channels, init)


class ResNet32(ResNet):
    """ResNet-32 of He et al. (2016) for CIFAR: 3 stages of 5 blocks, 16/32/64 channels, conv shortcuts.

    Input ``(N, C, H, W)``, output ``(N, num_classes)`` logits.

    Args:
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, init: str = "authors") -> None:
        super().__init__([5, 5, 5], [16, 32, 64], num_classes, in_channels, init)


class ResNet56(ResNet):
    """ResNet-56 of He et al. (2016) for CIFAR: 3 stages of 9 blocks, 16/32/64 channels, conv shortcuts.

    Input ``(N, C, H, W)``, output ``(N, num_classes)`` logits.

    Args:
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, init: str = "authors") -> None:
        super().__init__([9, 9, 9], [16, 32, 64], num_classes, in_channels, init)
