from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from lightning_panning.classifier import ImageClassifier, infer_num_classes
from lightning_panning.models import (
    VGG,
    VGG11,
    VGG13,
    VGG16,
    VGG19,
    LeNet5,
    LeNet300100,
    ResNet,
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet56,
    kaiming_init,
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Heavy models are checked on the meta device (shapes only, no compute) to keep the suite fast on CPU.
HEAVY = True


@pytest.mark.parametrize(
    ("factory", "input_shape", "num_classes", "meta"),
    [
        (lambda: LeNet5(), (1, 28, 28), 10, False),
        (lambda: LeNet5(num_classes=7, in_channels=3, input_size=32), (3, 32, 32), 7, False),
        (lambda: LeNet5(input_size=16), (1, 16, 16), 10, False),
        (lambda: LeNet300100(), (1, 28, 28), 10, False),
        (lambda: LeNet300100(num_classes=5, input_size=[3, 8, 8]), (3, 8, 8), 5, False),
        (lambda: VGG11(), (3, 32, 32), 10, False),
        (lambda: VGG13(num_classes=100), (3, 32, 32), 100, HEAVY),
        (lambda: VGG16(in_channels=1), (1, 32, 32), 10, HEAVY),
        (lambda: VGG19(), (3, 32, 32), 10, False),
        (lambda: VGG19(num_classes=200, input_size=64), (3, 64, 64), 200, HEAVY),
        (lambda: VGG(depth=11, batch_norm=False), (3, 32, 32), 10, HEAVY),
        (lambda: ResNet18(num_classes=100), (3, 32, 32), 100, False),
        (lambda: ResNet18(num_classes=200), (3, 64, 64), 200, HEAVY),
        (lambda: ResNet34(), (3, 32, 32), 10, HEAVY),
        (lambda: ResNet20(), (3, 32, 32), 10, False),
        (lambda: ResNet32(in_channels=1), (1, 28, 28), 10, HEAVY),
        (lambda: ResNet56(num_classes=100), (3, 32, 32), 100, HEAVY),
    ],
)
def test_output_shape(
    factory: Callable[[], nn.Module], input_shape: tuple[int, ...], num_classes: int, meta: bool
) -> None:
    device = torch.device("meta" if meta else "cpu")
    with device:
        model = factory().eval()
    with torch.no_grad():
        out = model(torch.randn(2, *input_shape, device=device))
    assert out.shape == (2, num_classes)
    assert infer_num_classes(model) == num_classes


def test_lenet5_caffe_parameter_count() -> None:
    model = LeNet5()
    assert n_params(model) == 431_080
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(20, (5, 5)), (50, (5, 5))]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(800, 500), (500, 10)]


def test_reference_parameter_counts() -> None:
    assert n_params(LeNet300100()) == 266_610
    assert n_params(ResNet18()) == 11_173_962  # the usual CIFAR ResNet-18 (kuangliu layout)
    # VGG19-BN (GraSP layout): bias-free convs + BN + one Linear(512, 10).
    assert n_params(VGG19()) == 20_035_018
    assert n_params(VGG19(input_size=64)) == n_params(VGG19())  # only the pooling differs


def test_vgg_layout_matches_grasp() -> None:
    model = VGG19()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 16 and all(c.bias is None for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 16
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 512
    assert all(c.bias is not None for c in VGG(depth=11, batch_norm=False).modules() if isinstance(c, nn.Conv2d))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: VGG(depth=17), r"`depth`.*\[11, 13, 16, 19\].*17"),
        (lambda: VGG19(input_size=48), r"`input_size`.*\[32, 64\].*48"),
        (lambda: VGG19(num_classes=0), r"`num_classes`.*0"),
        (lambda: LeNet5(input_size=12), r"`input_size`.*16.*12"),
        (lambda: LeNet300100(input_size=0), r"`input_size`"),
        (lambda: ResNet(num_blocks=[2, 2], widths=[16]), r"`num_blocks` and `widths`"),
        (lambda: ResNet20(in_channels=0), r"`in_channels`.*0"),
    ],
)
def test_bad_arguments_raise(factory: Callable[[], nn.Module], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_kaiming_init_statistics() -> None:
    torch.manual_seed(0)
    model = VGG19()
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            fan_in = module.weight[0].numel()
            expected = math.sqrt(2.0 / fan_in)
            if module.weight.numel() >= 100_000:
                assert module.weight.std().item() == pytest.approx(expected, rel=0.05)
                assert abs(module.weight.mean().item()) < 0.1 * expected
            if module.bias is not None:
                assert torch.count_nonzero(module.bias) == 0
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.count_nonzero(module.bias) == 0
    lenet = LeNet5()
    assert all(torch.count_nonzero(m.bias) == 0 for m in lenet.modules() if isinstance(m, nn.Conv2d | nn.Linear))


def test_kaiming_init_resets_a_plain_module() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(2000, 300)
    nn.init.constant_(layer.weight, 5.0)
    kaiming_init(layer)
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2.0 / 2000), rel=0.05)


def test_torchvision_resnet18_in_classifier() -> None:
    backbone = torchvision.models.resnet18(num_classes=10)
    model = ImageClassifier(backbone).eval()
    assert model.num_classes == 10
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_models_are_deterministic_under_a_seed() -> None:
    torch.manual_seed(3)
    a = ResNet20()
    torch.manual_seed(3)
    b = ResNet20()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
