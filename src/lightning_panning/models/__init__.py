"""Example networks from the Panning paper's experiments, as plain ``nn.Module`` s.

Every constructor takes only plain values, so LightningCLI configs can build them, e.g.
``backbone: {class_path: lightning_panning.models.VGG19, init_args: {num_classes: 10}}``.
All models are initialised like the authors' code (see :func:`kaiming_init`).
"""

from lightning_panning.models._init import kaiming_init
from lightning_panning.models.lenet import LeNet5, LeNet300100
from lightning_panning.models.resnet import BasicBlock, ResNet, ResNet18, ResNet20, ResNet32, ResNet34, ResNet56
from lightning_panning.models.vgg import VGG, VGG11, VGG13, VGG16, VGG19, VGG_CONFIGS

__all__ = [
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
    "kaiming_init",
]
