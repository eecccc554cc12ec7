"""VGG with BatchNorm for CIFAR (32x32) and Tiny-ImageNet (64x64), in the GraSP research-code layout."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_panning.models._init import init_weights

__all__ = ["VGG", "VGG11", "VGG13", "VGG16", "VGG19", "VGG_CONFIGS"]

#: Layer configurations of the GraSP CIFAR VGG: an int is a 3x3 conv with that many output channels,
#: ``"M"`` a 2x2 max-pool. There is no pool after the last stage (32x32 → 2x2 feature maps).
VGG_CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}

#: Supported input sizes and the side of the final feature map (input size / 16) averaged away before the classifier.
_POOL_SIZE: dict[int, int] = {32: 2, 64: 4}


class VGG(nn.Module):
    """VGG-{11,13,16,19} for small images, as in the GraSP / SynFlow code used by the Panning paper.

    ``features`` is a stack of 3x3 conv (padding 1) → BatchNorm → ReLU blocks with four 2x2 max-pools; it maps an
    ``SxS`` image to ``512x(S/16)x(S/16)``. An average pool over that map (``AvgPool2d(2)`` for 32x32 inputs,
    ``AvgPool2d(4)`` for 64x64 ones) gives 512 features, and one ``Linear(512, num_classes)`` gives the logits.
    With BatchNorm the convs have no bias (BatchNorm supplies it); without BatchNorm they do.

    Args:
        depth: number of weight layers, one of 11, 13, 16, 19.
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        input_size: height = width ``S`` of the input images: 32 (CIFAR) or 64 (Tiny-ImageNet).
        batch_norm: put a BatchNorm after every conv.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).

    Shape:
        - Input: ``(N, C, S, S)``.
        - Output: ``(N, num_classes)`` logits.

    Raises:
        ValueError: if ``depth`` or ``input_size`` is not supported, or a count is not positive.

    Example:
        >>> model = VGG(depth=11, num_classes=100)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 100])
    """

    def __init__(
        self,
        depth: int = 19,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        batch_norm: bool = True,
        init: str = "authors",
    ) -> None:
        super().__init__()
        if depth not in VGG_CONFIGS:
            raise ValueError(f"`depth` must be one of {sorted(VGG_CONFIGS)}, got {depth!r}.")
        if input_size not in _POOL_SIZE:
            raise ValueError(f"`input_size` must be one of {sorted(_POOL_SIZE)}, got {input_size!r}.")
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}.")
        if in_channels < 1:
            raise ValueError(f"`in_channels` must be a positive integer, got {in_channels!r}.")
        self.depth = depth
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        self.batch_norm = batch_norm

        config = VGG_CONFIGS[depth]
        layers: list[nn.Module] = []
        channels = in_channels
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            assert isinstance(v, int)
            layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            channels = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(_POOL_SIZE[input_size])
        last = config[-1]
        assert isinstance(last, int)
        self.classifier = nn.Linear(last, num_classes)
        init_weights(self, init)

    def forward(self, x: Tensor) -> Tensor:
        """Compute logits.

        Args:
            x: images of shape ``(N, C, S, S)``.

        Returns:
            Logits of shape ``(N, num_classes)``.
        """
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class VGG11(VGG):
    """VGG-11 (see :class:`VGG`); input ``(N, C, S, S)``, output ``(N, num_classes)``.

    Args:
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        input_size: height = width ``S`` of the input images: 32 or 64.
        batch_norm: put a BatchNorm after every conv.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        batch_norm: bool = True,
        init: str = "authors",
    ) -> None:
        super().__init__(11, num_classes, in_channels, input_size, batch_norm, init)


class VGG13(VGG):
    """VGG-13 (see :class:`VGG`); input ``(N, C, S, S)``, output ``(N, num_classes)``.

    Args:
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        input_size: height = width ``S`` of the input images: 32 or 64.
        batch_norm: put a BatchNorm after every conv.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        batch_norm: bool = True,
        init: str = "authors",
    ) -> None:
        super().__init__(13, num_classes, in_channels, input_size, batch_norm, init)


class VGG16(VGG):
    """VGG-16 (see :class:`VGG`); input ``(N, C, S, S)``, output ``(N, num_classes)``.

    Args:
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        input_size: height = width ``S`` of the input images: 32 or 64.
        batch_norm: put a BatchNorm after every conv.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        batch_norm: bool = True,
        init: str = "authors",
    ) -> None:
        super().__init__(16, num_classes, in_channels, input_size, batch_norm, init)


class VGG19(VGG):
    """VGG-19 with BatchNorm, the paper's CIFAR-10 / Tiny-ImageNet model (see :class:`VGG`).

    Input ``(N, C, S, S)`` with ``S`` 32 or 64, output ``(N, num_classes)`` logits.

    Args:
        num_classes: number of output logits.
        in_channels: channels ``C`` of the input images.
        input_size: height = width ``S`` of the input images: 32 or 64.
        batch_norm: put a BatchNorm after every conv.
        init: weight initialisation, ``"authors"`` (default, the authors' code) or ``"kaiming"`` (fan-in).

    Example:
        >>> model = VGG19(num_classes=200, input_size=64)
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 200])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        batch_norm: bool = True,
        init: str = "authors",
    ) -> None:
        super().__init__(19, num_classes, in_channels, input_size, batch_norm, init)
