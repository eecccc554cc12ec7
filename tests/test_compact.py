"""compact(): exact channel removal, constant folding, sparse layers, bad input, and the CompactionCallback."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_panning import MaskEnforcer, apply_masks, compact, prunable_parameters
from lightning_panning.callbacks import CompactionCallback, PanningCallback
from lightning_panning.compaction import (
    CompactionError,
    SparseLinear,
    UnsupportedModelError,
    compaction,
    model_cost,
    surgery,
)
from lightning_panning.models import VGG19, LeNet5, LeNet300100, ResNet, ResNet18, ResNet20

pytest.importorskip("torch_pruning")  # the surgery's library (the `compact` / `dev` extras)


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> Iterator[None]:
    yield


# ---------------------------------------------------------------------------------------------------------------------
# helpers (the models use Kaiming fan-in init: the authors' N(0, 0.01) heads leave masked outputs too flat to tell a
# wrong compaction from a right one)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial biases and BatchNorm statistics/affines, so that constant channels are not zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
    return model


def channel_masks(model: nn.Module, seed: int = 0, rows: float = 0.3, cols: float = 0.3, density: float = 0.5) -> dict:
    """Random masks that also empty whole rows (units with no input path) and columns (units nothing reads)."""
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for name, p in prunable_parameters(model).items():
        keep = torch.rand(p.shape, generator=g) < density
        keep[torch.rand(p.shape[0], generator=g) < rows] = False
        if not name.endswith(("classifier.weight", "fc.weight", "classifier.2.weight", "classifier.4.weight")):
            keep[:, torch.rand(p.shape[1], generator=g) < cols] = False
        masks[name] = keep
    return masks


def masked(model: nn.Module, masks: dict) -> nn.Module:
    return apply_masks(copy.deepcopy(model), masks)


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_exact(small: nn.Module, reference: nn.Module, shape: tuple[int, ...], seed: int = 1) -> None:
    x = torch.randn((6, *shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want, got = reference(x), small(x)
    assert float(want.std(dim=0).max()) > 1e-4, "the reference output must depend on the input for a real test"
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


class Branches(nn.Module):
    """Two conv branches concatenated (Inception-style), then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(2, 6, 3, padding=1)
        self.b = nn.Conv2d(2, 5, 1)
        self.mix = nn.Conv2d(11, 6, 3)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        joined = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1)
        return self.fc(torch.flatten(F.relu(self.mix(joined)), 1))


def vgg19() -> nn.Module:
    torch.manual_seed(0)
    return VGG19(num_classes=5, init="kaiming")  # the authors' N(0, 0.01) head leaves outputs too flat for the test


def resnet() -> nn.Module:
    torch.manual_seed(0)
    return ResNet([1, 1], [8, 16], num_classes=4, init="kaiming")


#: name: (builder, input shape, channel_masks arguments chosen so that the masked output still depends on the input)
MODELS: dict[str, tuple[Any, tuple[int, ...], dict[str, Any]]] = {
    "mlp": (mlp, (6,), {"seed": 1, "rows": 0.2, "cols": 0.2, "density": 0.9}),
    "cnn": (cnn, (2, 8, 8), {"seed": 1, "rows": 0.2, "cols": 0.2, "density": 0.9}),
    "lenet5": (lambda: LeNet5(init="kaiming"), (1, 28, 28), {"rows": 0.25, "cols": 0.25, "density": 0.8}),
    "lenet300100": (lambda: LeNet300100(input_size=[1, 28, 28], init="kaiming"), (1, 28, 28), {}),
    "vgg19-bn": (vgg19, (3, 32, 32), {"rows": 0.2, "cols": 0.2, "density": 0.9}),
    "concat": (Branches, (2, 6, 6), {"rows": 0.25, "cols": 0.25, "density": 0.9}),
    "resnet": (resnet, (3, 16, 16), {"seed": 1, "rows": 0.25, "cols": 0.25, "density": 0.8}),
}


# ---------------------------------------------------------------------------------------------------------------------
# 1. exactness on the supported networks


@pytest.mark.parametrize("name", list(MODELS))
def test_compacted_model_equals_the_masked_one(name: str) -> None:
    build, shape, options = MODELS[name]
    model = randomise(build()).eval()
    masks = channel_masks(model, **options)
    before = snapshot(model)
    result = compaction(model, masks, example_input=torch.randn(4, *shape), sparse="never")
    assert_exact(result.model, masked(model, masks), shape)
    assert result.removed_channels + result.folded_channels > 0
    assert result.after is not None and result.before is not None
    assert result.after.parameters < result.before.parameters
    assert result.after.macs < result.before.macs
    assert result.after.nonzero_macs <= min(result.after.macs, result.before.nonzero_macs)
    # the original is untouched: same tensors, pruned weights still there, still in eval mode
    after = snapshot(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training
    # the returned masks fit the returned model and its pruned weights are zero
    params = dict(result.model.named_parameters())
    for key, mask in result.masks.items():
        assert mask.shape == params[key].shape
        assert bool((params[key][~mask] == 0).all())


def test_lenet5_removes_exactly_the_units_without_effective_weights() -> None:
    from lightning_panning import effective_sparsity, prune

    model = LeNet5(init="kaiming").eval()
    x = torch.randn(2, 1, 28, 28)
    masks = prune(model, None, 0.995, method="synflow", rounds=5, example_input=x, progress=False)
    result = compaction(model, masks, example_input=x, sparse="never")
    assert result.removed_channels > 0
    assert result.layers["classifier.0"]["after"][0] < 500
    assert_exact(result.model, masked(model, masks), (1, 28, 28))
    # the core's effective sparsity counts units with no weight on an input-output path: exactly those go (dead or
    # folded constants; LeNet5 has no residual stream, no padding and its biases are 0 at initialisation)
    dead = effective_sparsity(model, masks, x).dead_units
    assert result.removed_channels + result.folded_channels == sum(d for name, (d, _) in dead.items()
                                                                    if name != "classifier.2.weight")
    for name, info in result.layers.items():
        assert info["after"][0] == info["before"][0] - (dead[f"{name}.weight"][0] if name != "classifier.2" else 0)


def test_dead_and_constant_units_of_a_small_mlp() -> None:
    net = randomise(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))).eval()
    masks = {
        "0.weight": torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]).bool(),  # unit 2: no input path
        "2.weight": torch.tensor([[1, 0, 1], [0, 0, 1]]).bool(),  # unit 1: read by nobody
    }
    result = compaction(net, masks, example_input=torch.randn(3, 4), sparse="never")
    assert (result.removed_channels, result.folded_channels) == (1, 1)
    assert result.model[0].weight.shape == (1, 4) and result.model[2].weight.shape == (2, 1)
    assert_exact(result.model, masked(net, masks), (4,))


def test_constant_folds_through_batchnorm_and_relu() -> None:
    torch.manual_seed(0)
    net = randomise(nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)), seed=3).eval()
    with torch.no_grad():  # unit 0's constant is BN(bias) -> ReLU: make it clearly positive
        net[1].running_mean[0] = -2.0
        net[1].weight[0] = 1.5
    masks = {"0.weight": torch.ones(4, 5, dtype=torch.bool), "3.weight": torch.ones(2, 4, dtype=torch.bool)}
    masks["0.weight"][0] = False
    result = compaction(net, masks, example_input=torch.randn(3, 5), sparse="never")
    assert result.folded_channels == 1
    assert result.model[3].weight.shape == (2, 3)
    assert_exact(result.model, masked(net, masks), (5,))


@pytest.mark.parametrize("padding", [0, 1])
def test_constant_through_a_padded_conv_stays_unless_uniform(padding: int) -> None:
    torch.manual_seed(0)
    net = randomise(
        nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=padding)), seed=1
    ).eval()
    with torch.no_grad():
        net[1].running_mean[0] = -3.0
        net[1].weight[0] = 1.0
    masks = {"0.weight": torch.ones(3, 1, 3, 3, dtype=torch.bool)}
    masks["0.weight"][0] = False  # channel 0 is the constant ReLU(BN(bias)) > 0
    result = compaction(net, masks, example_input=torch.randn(2, 1, 8, 8), sparse="never")
    # without padding the constant's contribution is the same at every position and is folded; with zero padding
    # it differs at the borders, so the channel must stay
    assert result.folded_channels == (1 if padding == 0 else 0)
    reference = masked(net, masks)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(result.model(x), reference(x), rtol=1e-4, atol=1e-5)


def test_residual_channel_goes_only_when_dead_in_every_coupled_layer() -> None:
    model = resnet().eval()
    shape = (3, 16, 16)
    full = {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(model).items()}
    # stage 0 stream: written by conv1 (stem) and layers.0.0.conv2; read by layers.0.0.conv1, layers.1.0.conv1 and
    # layers.1.0.shortcut.0. Channel 3 unread by a single reader: must stay.
    one = copy.deepcopy(full)
    one["layers.1.0.conv1.weight"][:, 3] = False
    result = compaction(model, one, example_input=torch.randn(2, *shape), sparse="never")
    assert result.layers["conv1"]["after"][0] == 8
    # unread by every reader: removed from the whole stream (stem, block output, readers)
    every = copy.deepcopy(one)
    for reader in ("layers.0.0.conv1.weight", "layers.1.0.shortcut.0.weight"):
        every[reader][:, 3] = False
    result = compaction(model, every, example_input=torch.randn(2, *shape), sparse="never")
    assert result.layers["conv1"]["after"][0] == 7
    assert result.layers["layers.0.0.conv2"]["after"][0] == 7
    assert result.layers["layers.1.0.shortcut.0"]["after"][1] == 7
    assert_exact(result.model, masked(model, every), shape)


@pytest.mark.parametrize("build", [ResNet20, ResNet18])
def test_resnets_with_synflow_masks_are_exact(build: Any) -> None:
    from lightning_panning import prune

    torch.manual_seed(0)
    model = randomise(build(num_classes=4, init="kaiming")).eval()
    x = torch.randn(2, 3, 16, 16)
    masks = prune(model, None, 0.99, method="synflow", rounds=3, example_input=x, progress=False)
    result = compaction(model, masks, example_input=x, sparse="never")
    assert result.removed_channels > 0
    assert_exact(result.model, masked(model, masks), (3, 16, 16))


def test_align_keeps_multiples_and_stays_exact() -> None:
    model = randomise(LeNet5(init="kaiming")).eval()
    masks = channel_masks(model, rows=0.5, cols=0.5)
    result = compaction(model, masks, example_input=torch.randn(2, 1, 28, 28), sparse="never", align=4)
    for group in result.groups:
        assert group["kept"] % 4 == 0 or group["kept"] == group["channels"]
    assert_exact(result.model, masked(model, masks), (1, 28, 28))


class InputResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 3, 3, padding=1), nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(torch.relu(x + self.conv(x)), 1))


class InputConcat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(7 * 4 * 4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(torch.cat([x, torch.relu(self.conv(x))], 1), 1))


@pytest.mark.parametrize("net", [InputResidual, InputConcat])
def test_channels_joined_with_the_raw_input_stay(net: type[nn.Module]) -> None:
    model = randomise(net()).eval()
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(model).items()}
    masks["conv.weight"][1] = False  # conv channel 1: a constant, and unread by fc below
    start = 16 if net is InputResidual else 3 * 16 + 16
    masks["fc.weight"][:, start : start + 16] = False
    result = compaction(model, masks, example_input=torch.randn(2, 3, 4, 4))
    assert result.layers["conv"]["after"] == result.layers["conv"]["before"]  # the input has no layer to follow
    assert_exact(result.model, masked(model, masks), (3, 4, 4))


def test_memory_format_choices() -> None:
    model = randomise(LeNet5(init="kaiming")).eval()
    masks = channel_masks(model, **MODELS["lenet5"][2])
    x = torch.randn(2, 1, 28, 28)
    last = compaction(model, masks, example_input=x, memory_format="channels_last")
    assert last.model.features[3].weight.is_contiguous(memory_format=torch.channels_last)
    assert last.memory_format == {"chosen": "channels_last"}
    assert_exact(last.model, masked(model, masks), (1, 28, 28))
    kept = compaction(model, masks, example_input=x, memory_format="preserve")
    assert kept.model.features[3].weight.is_contiguous()
    auto = compaction(model, masks, example_input=x)
    assert auto.memory_format["chosen"] in ("preserve", "channels_last")
    assert auto.memory_format["preserve_seconds"] > 0 and auto.memory_format["channels_last_seconds"] > 0
    mlp_result = compaction(mlp().eval(), {}, example_input=torch.randn(2, 6))
    assert mlp_result.memory_format == {"chosen": "preserve"}  # no convolution: nothing to time


def test_masks_may_cover_only_some_layers() -> None:
    model = randomise(mlp()).eval()
    masks = {"2.weight": torch.zeros(8, 8, dtype=torch.bool)}
    masks["2.weight"][:, :2] = True  # only units 0 and 1 of layer 0 are read
    result = compaction(model, masks, example_input=torch.randn(2, 6), sparse="never")
    assert result.layers["0"]["after"] == [2, 6]
    assert_exact(result.model, masked(model, masks), (6,))


# ---------------------------------------------------------------------------------------------------------------------
# 2. training the compacted network


def test_training_mode_removes_only_dead_units_and_trains_exactly_like_the_masked_model() -> None:
    model = randomise(cnn())
    model.train()
    masks = channel_masks(model, seed=2)
    result = compaction(model, masks, example_input=torch.randn(4, 2, 8, 8), mode="training")
    assert result.removed_channels > 0 and result.folded_channels == 0
    assert result.model.training and all(isinstance(m, nn.Module) for m in result.model.modules())
    assert not any(isinstance(m, SparseLinear) for m in result.model.modules())
    big, small = masked(model, masks), result.model
    runs = []
    for net, net_masks in ((big, masks), (small, result.masks)):
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        enforcer = MaskEnforcer(net, net_masks)
        enforcer.attach([opt])
        g = torch.Generator().manual_seed(5)
        for _ in range(4):
            x, y = torch.randn(8, 2, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        enforcer.detach()
        runs.append(net)
    x = torch.randn(5, 2, 8, 8)
    torch.testing.assert_close(runs[1](x), runs[0](x), rtol=1e-4, atol=1e-5)  # training mode (batch statistics)
    runs[0].eval()
    runs[1].eval()
    torch.testing.assert_close(runs[1](x), runs[0](x), rtol=1e-4, atol=1e-5)  # running statistics too


# ---------------------------------------------------------------------------------------------------------------------
# 3. sparse layers and costs


def test_sparse_always_makes_csr_linears_and_stays_exact() -> None:
    model = randomise(LeNet300100(input_size=[1, 28, 28], init="kaiming")).eval()
    masks = channel_masks(model, rows=0.2, cols=0.0, density=0.05)
    result = compaction(model, masks, example_input=torch.randn(2, 1, 28, 28), sparse="always")
    sparse = [m for m in result.model.modules() if isinstance(m, SparseLinear)]
    assert len(sparse) == 3 and all(f"{n}.weight" not in result.masks for n in ("classifier.0", "classifier.2"))
    assert result.layers["classifier.0"]["sparse"] is True
    assert_exact(result.model, masked(model, masks), (1, 28, 28))
    assert result.after is not None and result.before is not None
    assert result.after.macs == result.after.nonzero_macs < result.before.nonzero_macs  # CSR: only kept weights


def test_sparse_auto_times_candidates_and_never_makes_none() -> None:
    model = randomise(LeNet300100(input_size=[1, 28, 28], init="kaiming")).eval()
    masks = channel_masks(model, rows=0.2, cols=0.0, density=0.05)
    auto = compaction(model, masks, example_input=torch.randn(2, 1, 28, 28))
    timed = auto.layers["classifier.0"]
    assert timed["dense_seconds"] > 0 and timed["sparse_seconds"] > 0
    assert timed["sparse"] == (timed["sparse_seconds"] < 0.9 * timed["dense_seconds"])
    assert_exact(auto.model, masked(model, masks), (1, 28, 28))
    never = compaction(model, masks, example_input=torch.randn(2, 1, 28, 28), sparse="never")
    assert not any(isinstance(m, SparseLinear) for m in never.model.modules())


def test_sparse_linear_copies_saves_and_casts(tmp_path: Path) -> None:
    dense = nn.Linear(7, 5)
    with torch.no_grad():
        dense.weight[dense.weight.abs() < 0.2] = 0
    layer = SparseLinear.from_linear(dense)
    x = torch.randn(3, 2, 7)
    torch.testing.assert_close(layer(x), dense(x))
    torch.testing.assert_close(copy.deepcopy(layer)(x), dense(x))
    torch.save(layer, tmp_path / "layer.pt")
    loaded = torch.load(tmp_path / "layer.pt", weights_only=False)
    torch.testing.assert_close(loaded(x), dense(x))
    torch.testing.assert_close(layer.double()(x.double()), dense.double()(x.double()))
    assert torch.equal(layer.to_dense_weight(), dense.weight.detach().double())
    assert sum(p.numel() for p in layer.parameters()) == 0
    with pytest.raises(ValueError, match="2-D"):
        SparseLinear(torch.zeros(3))


def test_model_cost_counts_parameters_and_macs() -> None:
    net = nn.Sequential(nn.Conv2d(2, 4, 3, bias=False), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    masks = {"0.weight": torch.zeros(4, 2, 3, 3, dtype=torch.bool)}
    masks["0.weight"][:, 0, 1, 1] = True
    cost = model_cost(net, torch.zeros(5, 2, 6, 6), masks)
    assert cost.parameters == 72 + 64 * 3 + 3
    assert cost.macs == 72 * 16 + 64 * 3
    assert cost.nonzero_macs == 4 * 16 + int(torch.count_nonzero(net[2].weight))
    assert cost.layers["0"] == (72 * 16, 4 * 16)


# ---------------------------------------------------------------------------------------------------------------------
# 4. bad input: clear errors, nothing changed


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(torch.relu(self.layer(x)))


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(self.a(x) * -2.0)


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.a(x), x


@pytest.mark.parametrize(
    ("masks", "kwargs", "error", "pattern"),
    [
        ({"nope.weight": torch.ones(1)}, {}, ValueError, "does not have"),
        ({"0.weight": torch.ones(2, 2, dtype=torch.bool)}, {}, ValueError, "shape"),
        ({"0.weight": torch.full((8, 6), 0.5)}, {}, ValueError, "boolean"),
        ({"0.weight": [[True]]}, {}, TypeError, "tensor"),
        ({}, {"example_input": None}, ValueError, "example_input"),
        ({}, {"example_input": torch.ones(2, 6, dtype=torch.long)}, ValueError, "floating-point"),
        ({}, {"mode": "fast"}, ValueError, "`mode`"),
        ({}, {"sparse": "maybe"}, ValueError, "`sparse`"),
        ({}, {"mode": "training", "sparse": "always"}, ValueError, "not trainable"),
        ({}, {"memory_format": "nhwc"}, ValueError, "`memory_format`"),
        ({}, {"align": 0}, ValueError, "`align`"),
    ],
)
def test_bad_arguments_are_clear_errors(masks: Any, kwargs: dict, error: type, pattern: str) -> None:
    arguments = {"example_input": torch.randn(2, 6), **kwargs}
    with pytest.raises(error, match=pattern):
        compaction(mlp().eval(), masks, **arguments)


def test_masks_on_an_unsupported_layer_are_refused() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)).eval()
    with pytest.raises(ValueError, match="LayerNorm"):
        compaction(net, {"1.weight": torch.ones(4, dtype=torch.bool)}, example_input=torch.randn(2, 4))


@pytest.mark.parametrize(
    ("net", "pattern"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2)), "Gelu"),
        (nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)), "LayerNorm"),
        (nn.Sequential(nn.Conv1d(4, 4, 1, groups=2), nn.Flatten(), nn.Linear(4, 2)), "grouped"),
        (Scaled(), "Mul"),
        (Shared(), "more than once"),
        (TwoOutputs(), "one tensor"),
    ],
)
def test_unsupported_operations_are_refused_and_nothing_changes(net: nn.Module, pattern: str) -> None:
    net.eval()
    shape = (4, 1) if isinstance(net[0] if isinstance(net, nn.Sequential) else None, nn.Conv1d) else (4,)
    before = snapshot(net)
    masks = {n: torch.rand(p.shape) < 0.5 for n, p in prunable_parameters(net).items()}
    with pytest.raises((UnsupportedModelError, TypeError), match=pattern):
        compaction(net, masks, example_input=torch.randn(2, *shape))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_inference_mode_refuses_a_model_in_training_mode_with_batchnorm() -> None:
    model = cnn().train()
    masks = channel_masks(model)
    with pytest.raises(ValueError, match=r"model.eval\(\)"):
        compaction(model, masks, example_input=torch.randn(2, 2, 8, 8))
    stats = model[1].running_mean.clone()
    compaction(model, masks, example_input=torch.randn(2, 2, 8, 8), mode="training")  # documented alternative
    assert torch.equal(model[1].running_mean, stats) and model.training  # running statistics untouched


def test_a_wrong_surgery_is_caught_by_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(*args: Any, **kwargs: Any) -> Tensor | None:
        result = original(*args, **kwargs)
        return None if result is None else result + 1.0

    original = surgery.constant_contribution
    monkeypatch.setattr("lightning_panning.compaction.api.constant_contribution", wrong)
    model = randomise(mlp()).eval()
    masks = channel_masks(model)
    with pytest.raises(CompactionError, match="differs"):
        compaction(model, masks, example_input=torch.randn(2, 6))
    assert compaction(model, masks, example_input=torch.randn(2, 6), verify=False).model is not None


def test_compact_returns_just_the_model() -> None:
    model = randomise(mlp()).eval()
    masks = channel_masks(model)
    small = compact(model, masks, example_input=torch.randn(2, 6), sparse="never")
    assert isinstance(small, nn.Sequential)
    assert_exact(small, masked(model, masks), (6,))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compaction_on_cuda() -> None:
    model = randomise(LeNet5(init="kaiming")).eval().cuda()
    masks = {n: m.cuda() for n, m in channel_masks(model, **MODELS["lenet5"][2]).items()}
    result = compaction(model, masks, example_input=torch.randn(8, 1, 28, 28, device="cuda"), sparse="always")
    assert next(result.model.parameters()).is_cuda
    assert any(isinstance(m, SparseLinear) for m in result.model.modules())
    reference = masked(model, masks)
    x = torch.randn(16, 1, 28, 28, device="cuda")
    torch.testing.assert_close(result.model(x), reference(x), rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# 5. the Lightning callback


class LitCNN(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 24), nn.ReLU(),
            nn.Linear(24, 4),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(64, 1, 8, 8, generator=g), torch.arange(64) % 4), batch_size=16)


def fit(tmp_path: Path, *callbacks: pl.Callback, steps: int = 6, **kwargs: Any) -> LitCNN:
    model = LitCNN()
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, callbacks=list(callbacks),
        deterministic=True, **kwargs,
    )
    trainer.fit(model, loader())
    return model


def pruner() -> PanningCallback:
    return PanningCallback(target=0.97, method="synflow", options={"rounds": 3}, verbose=False, log_figure=False)


def test_callback_exports_the_compacted_model_next_to_the_checkpoints(tmp_path: Path) -> None:
    prune_cb, export = pruner(), CompactionCallback(submodule="backbone", sparse="never", verbose=False)
    model = fit(tmp_path, prune_cb, export)
    assert export.export_path == tmp_path / "compact.pt" and export.export_path.is_file()
    report = json.loads((tmp_path / "compact.json").read_text())
    assert report["removed_channels"] == export.result.removed_channels > 0  # type: ignore[union-attr]
    small = torch.load(export.export_path, weights_only=False)
    model.eval()
    assert_exact(small, model.backbone, (1, 8, 8))
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.backbone.parameters())


def test_training_the_compacted_network_matches_training_the_masked_one(tmp_path: Path) -> None:
    plain = fit(tmp_path / "a", pruner())
    compacted_cb = CompactionCallback(train_compacted=True, export=False, verbose=False)
    small = fit(tmp_path / "b", pruner(), compacted_cb)
    assert compacted_cb.training_result is not None and compacted_cb.training_result.removed_channels > 0
    assert small.backbone[4].weight.shape[0] < 24  # really trained smaller
    plain.eval()
    small.eval()
    assert_exact(small, plain, (1, 8, 8))
    assert compacted_cb.masks is not None
    for name, mask in compacted_cb.masks.items():  # masks enforced on the compacted weights
        assert bool((small.get_parameter(name)[~mask] == 0).all())


def test_callback_argument_and_source_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do nothing"):
        CompactionCallback(export=False)
    with pytest.raises(ValueError, match="`sparse`"):
        CompactionCallback(sparse="yes")
    with pytest.raises(ValueError, match="`align`"):
        CompactionCallback(align=0)
    with pytest.raises(ValueError, match="pruning callback"):
        fit(tmp_path, CompactionCallback(verbose=False), steps=1)
    with pytest.raises(ValueError, match="submodule"):
        fit(tmp_path, pruner(), CompactionCallback(submodule="head", verbose=False), steps=1)


def test_callback_is_configurable_by_jsonargparse() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--callback", type=CompactionCallback)
    cfg = parser.parse_object(
        {
            "callback": {
                "class_path": "lightning_panning.callbacks.CompactionCallback",
                "init_args": {"submodule": "backbone", "sparse": "never", "train_compacted": True, "align": 8},
            }
        }
    )
    callback = parser.instantiate(cfg).callback
    assert isinstance(callback, CompactionCallback)
    assert (callback.submodule, callback.sparse, callback.train_compacted, callback.align) == ("backbone", "never", True, 8)
