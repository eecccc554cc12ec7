"""Weight initialisation of the example models: the authors' scheme (default) or Kaiming fan-in.

Pruning at initialisation scores the *initial* weights, so the initialisation decides which weights survive as
much as the pruning method does, and it decides whether Table 1's recipe (SGD, lr 0.1) trains at all: dense LeNet5
trains at lr 0.1 with the authors' scheme and stays at chance (loss 2.30) with Kaiming fan-in on every layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from torch import Tensor, nn

__all__ = ["INITS", "Init", "authors_init", "init_weights", "kaiming_init"]

Init = Literal["authors", "kaiming"]
#: Names accepted by :func:`init_weights` and the models' ``init`` argument.
INITS: tuple[str, ...] = ("authors", "kaiming")


def _apply_init(module: nn.Module, conv: Callable[[Tensor], Any], linear: Callable[[Tensor], Any]) -> None:
    """Initialise ``module`` in ``nn.Module.apply`` order, drawing from the global RNG.

    ``conv`` / ``linear`` draw the weights of ``Conv2d`` / ``Linear`` layers module by module (so the random stream
    is consumed as in the authors' code); biases are zeroed, BatchNorm weights set to one and biases to zero.
    """

    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d | nn.Linear):
            (conv if isinstance(m, nn.Conv2d) else linear)(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    module.apply(_init)


def authors_init(module: nn.Module) -> None:
    r"""Initialise ``module`` and its children exactly like the authors' ``weights_init``.

    This is ``models/base/init_utils.py`` of the authors' code (github ``kangxiatao/RLPanning``), which their
    ``main.py`` applies to every model before pruning:

    * ``nn.Conv2d``: :func:`torch.nn.init.kaiming_normal_` with ``mode="fan_out", nonlinearity="relu"``
      (std :math:`\sqrt{2 / (C_{out} k_h k_w)}`), bias 0;
    * ``nn.Linear``: :math:`\mathcal{N}(0, 0.01^2)`, bias 0;
    * ``nn.BatchNorm1d`` / ``nn.BatchNorm2d``: weight 1, bias 0 (running statistics untouched).

    Modules are visited in :meth:`nn.Module.apply` order and draw from the global RNG, as in the authors' code,
    so the same seed gives the same weights as theirs for the same architecture.

    Args:
        module: the network to initialise in place.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> layer = nn.Linear(1000, 500)
        >>> authors_init(layer)
        >>> round(layer.weight.std().item(), 3), bool((layer.bias == 0).all())
        (0.01, True)
    """
    _apply_init(
        module,
        conv=lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
        linear=lambda w: nn.init.normal_(w, 0.0, 0.01),
    )


def kaiming_init(module: nn.Module) -> None:
    r"""Initialise ``module`` and its children with Kaiming fan-in on every conv and linear layer.

    Conv and linear weights are drawn with :func:`torch.nn.init.kaiming_normal_` (fan-in, ReLU gain
    :math:`\sqrt{2}`), their biases are set to zero; BatchNorm weights are set to one and biases to zero. This is
    *not* the authors' scheme (:func:`authors_init`): its last linear layer has a large output scale and dense
    LeNet5 does not train with Table 1's lr 0.1 (it stays at chance).

    Args:
        module: the network to initialise in place (``nn.Module.apply`` is used, so every sub-module is visited).

    Example:
        >>> import torch
        >>> layer = nn.Linear(4, 2)
        >>> kaiming_init(layer)
        >>> bool((layer.bias == 0).all())
        True
    """
    _apply_init(module, conv=nn.init.kaiming_normal_, linear=nn.init.kaiming_normal_)


def init_weights(module: nn.Module, init: str = "authors") -> None:
    """Initialise ``module`` in place with the scheme named ``init`` (one of :data:`INITS`).

    Raises:
        ValueError: for an unknown ``init``.

    Example:
        >>> init_weights(nn.Linear(3, 2), "xavier")
        Traceback (most recent call last):
        ...
        ValueError: `init` must be one of ['authors', 'kaiming'], got 'xavier'.
    """
    if init == "authors":
        authors_init(module)
    elif init == "kaiming":
        kaiming_init(module)
    else:
        raise ValueError(f"`init` must be one of {list(INITS)}, got {init!r}.")
