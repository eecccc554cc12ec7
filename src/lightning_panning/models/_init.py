"""Weight initialisation shared by the example models."""

from __future__ import annotations

from torch import nn

__all__ = ["kaiming_init"]


def kaiming_init(module: nn.Module) -> None:
    r"""Initialise ``module`` and its children like the GraSP / SynFlow research code.

    Conv and linear weights are drawn with :func:`torch.nn.init.kaiming_normal_` (fan-in, ReLU gain
    :math:`\sqrt{2}`), their biases are set to zero; BatchNorm weights are set to one and biases to zero.

    Args:
        module: the network to initialise in place (``nn.Module.apply`` is used, so every sub-module is visited).

    Example:
        >>> import torch
        >>> layer = nn.Linear(4, 2)
        >>> kaiming_init(layer)
        >>> bool((layer.bias == 0).all())
        True
    """

    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    module.apply(_init)
