"""Example networks from the Panning paper's experiments, as plain ``nn.Module`` s.

Every constructor takes only plain values, so LightningCLI configs can build them, e.g.
``backbone: {class_path: lightning_panning.models.VGG19, init_args: {num_classes: 10}}``.
All models are initialised exactly like the authors' code by default (:func:`authors_init`: conv Kaiming fan-out,
linear N(0, 0.01²), zero biases, BatchNorm 1/0); ``init="kaiming"`` selects Kaiming fan-in (:func:`kaiming_init`).
"""

from lightning_panning.models._init import INITS, authors_init, init_weights, kaiming_init
from lightning_panning.models.lenet import LeNet5, LeNet300100
from lightning_panning.models.resnet import BasicBlock, ResNet, ResNet18, ResNet20, ResNet32, ResNet34, ResNet56
from lightning_panning.models.vgg import VGG, VGG11, VGG13, VGG16, VGG19, VGG_CONFIGS

__all__ = [
    "INITS",
    "VGG",
    "VGG11",
    "VGG13",
    "VGG16",
    "VGG19",
    "VGG_CONFIGS",
    "BasicBlock",
    "LeNet5",
    "LeNet300100",
    "ResNet",
    "ResNet18",
    "ResNet20",
    "ResNet32",
    "ResNet34",
    "ResNet56",
    "authors_init",
    "init_weights",
    "kaiming_init",
]
