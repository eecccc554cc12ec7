"""No silent damage, and bad input caught at the door (issue 27 §2): each case reproduced on a tiny model."""

from __future__ import annotations

import copy
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_panning import prune
from lightning_panning.callbacks import PanningCallback
from lightning_panning.core import SNIP, ScoringContext, prunable_parameters
from lightning_panning.core.functional import call_with
from test_callbacks import StepChecker, TinyNet, assert_masked, callback, trainer, xy_dataset

# ---------------------------------------------------------------------------------------------------------------------
# shared modules and tied parameters: scoring leaves the model exactly as found


class SharedModule(nn.Module):
    """``fc3`` is ``fc2`` registered under a second name (weight sharing: the layer is applied twice)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = self.fc2
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))))


class TiedParameter(nn.Module):
    """Two modules, one ``nn.Parameter`` (``b.weight = a.weight``, as a tied embedding and head)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(8, 16)
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        self.b.weight = self.a.weight
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.b(torch.relu(self.a(torch.relu(self.fc1(x)))))))


def xy() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(40, 8, generator=g), torch.arange(4).repeat(10)


def snapshot(model: nn.Module) -> list[tuple[str, type, int, torch.Tensor]]:
    """Every registered name with the object, its type and a copy of its value."""
    tensors = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return [(n, type(t), id(t), t.detach().clone()) for n, t in tensors]


@pytest.mark.parametrize("model_cls", [SharedModule, TiedParameter])
@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "panning"])
def test_scoring_leaves_shared_modules_exactly_as_found(one_thread: None, model_cls: type, method: str) -> None:
    model = model_cls()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # built before pruning, as a Trainer does
    before = snapshot(model)
    masks = prune(model, xy(), 0.5, method=method, rounds=3, progress=False)
    after = snapshot(model)
    assert [(n, t, i) for n, t, i, _ in after] == [(n, t, i) for n, t, i, _ in before]  # same Parameter objects
    assert all(torch.equal(a[3], b[3]) for a, b in zip(after, before, strict=True))
    assert all(t is nn.Parameter for name, t, _, _ in after if name.endswith(("weight", "bias")))
    shared = "fc2.weight" if model_cls is SharedModule else "a.weight"
    assert shared in masks and len(masks) == 3  # the one tensor has one mask, under its first name
    x, y = xy()
    F.cross_entropy(model(x), y).backward()
    old = model.get_parameter(shared).detach().clone()
    optimizer.step()  # the optimizer still updates the shared weight
    assert not torch.equal(model.get_parameter(shared).detach(), old)


@pytest.mark.parametrize("model_cls", [SharedModule, TiedParameter])
def test_a_shared_weight_is_scored_by_its_total_gradient(model_cls: type) -> None:
    """SNIP of a weight used twice is |θ ⊙ dL/dθ| with the gradient summed over both uses, as autograd gives it."""
    model = model_cls()
    batch = xy()
    params = prunable_parameters(model)
    scores = SNIP()(ScoringContext(model, params, batch=batch))
    model.train()
    F.cross_entropy(model(batch[0]) / 200.0, batch[1]).backward()
    for name, param in params.items():
        assert param.grad is not None
        torch.testing.assert_close(scores[name], (param.grad * param).detach().abs(), rtol=1e-5, atol=0.0)


def test_call_with_refuses_two_values_for_one_shared_tensor() -> None:
    model = SharedModule()
    with pytest.raises(ValueError, match=r"two different values for one shared tensor, under 'fc2.weight' and 'fc3"):
        call_with(model, {"fc2.weight": torch.zeros(16, 16), "fc3.weight": torch.ones(16, 16)}, lambda m: None)


class SharedLightning(TinyNet):
    """TinyNet whose classifier applies one hidden Linear twice."""

    def __init__(self) -> None:
        super().__init__()
        hidden = nn.Linear(16, 16)
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(), hidden, nn.ReLU(),
            hidden, nn.ReLU(), nn.Linear(16, 4),
        )


def test_callback_prunes_a_shared_module_and_trains_it_sparse(tmp_path: Path) -> None:
    model = SharedLightning()
    cb = callback()
    trainer(tmp_path, callbacks=[cb], max_steps=3).fit(model, DataLoader(xy_dataset(), batch_size=16))
    assert cb.masks is not None and "net.5.weight" in cb.masks and "net.7.weight" not in cb.masks
    assert type(model.net[7].weight) is nn.Parameter and model.net[5] is model.net[7]
    assert_masked(model, cb.masks)


# ---------------------------------------------------------------------------------------------------------------------
# the callback's own checks: one pruning callback, picklable, real-number targets


def test_two_pruning_callbacks_are_refused_at_setup(tmp_path: Path) -> None:
    first, second = callback(), callback(target=0.5, method="snip")
    model = TinyNet()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"2 pruning callbacks: PanningCallback\(target=0.9, method='panning'\), "
                                         r"PanningCallback\(target=0.5, method='snip'\).*one pruning callback"):
        trainer(tmp_path, callbacks=[first, second], max_steps=1).fit(model, DataLoader(xy_dataset(), batch_size=16))
    assert first.masks is None and second.masks is None
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))


def test_callback_pickles_after_fit(tmp_path: Path) -> None:
    cb = callback()
    trainer(tmp_path, callbacks=[cb], max_steps=1).fit(TinyNet(), DataLoader(xy_dataset(), batch_size=16))
    assert cb._pruned is not None  # the weak reference that made pickling fail
    for clone in (pickle.loads(pickle.dumps(cb)), copy.deepcopy(cb)):
        assert clone.masks is not None and cb.masks is not None
        assert all(torch.equal(clone.masks[n], cb.masks[n]) for n in cb.masks)
        assert clone.summary == cb.summary and clone._pruned is None
    assert cb._pruned is not None  # the original keeps its own state


@pytest.mark.parametrize("make", [np.float64, np.float32, float])
def test_numpy_float_target(make: Any) -> None:
    cb = PanningCallback(target=make(0.9), verbose=False)
    assert cb.target == float(make(0.9)) and type(cb.target) is float


def test_rounds_upper_bound_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"`rounds` must be an integer in \[1, 10000\] \(each round scores the whole network\), got 1"):
        PanningCallback(options={"rounds": 10**7})


# ---------------------------------------------------------------------------------------------------------------------
# bad input caught at the door


def test_every_parameter_frozen_is_refused_before_pruning(tmp_path: Path) -> None:
    model = TinyNet().requires_grad_(False)
    cb = callback()
    with pytest.raises(ValueError, match=r"every parameter of TinyNet has requires_grad=False.*requires_grad_\(True\)"):
        trainer(tmp_path, callbacks=[cb], max_steps=1).fit(model, DataLoader(xy_dataset(), batch_size=16))
    assert cb.masks is None


def test_partly_frozen_model_is_pruned(tmp_path: Path) -> None:
    model = TinyNet()
    model.net[0].requires_grad_(False)  # a frozen first layer: the rest trains
    cb = callback()
    trainer(tmp_path, callbacks=[cb], max_steps=1).fit(model, DataLoader(xy_dataset(), batch_size=16))
    assert cb.masks is not None
    assert_masked(model, cb.masks)


def test_meta_device_model_under_the_trainer_is_refused_at_setup(tmp_path: Path) -> None:
    with torch.device("meta"):
        model = TinyNet()
    with pytest.raises(ValueError, match=r"TinyNet has tensors on the meta device \(net.0.weight, .*to_empty"):
        trainer(tmp_path, callbacks=[callback()], max_steps=1).fit(model, DataLoader(xy_dataset(), batch_size=16))
    assert "cpu" not in model.__dict__ and model.net[0].weight.is_meta  # left as it was


def labelled(labels: torch.Tensor) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(len(labels), 1, 8, 8, generator=g), labels)


@pytest.mark.parametrize("method", ["snip", "panning"])
def test_float_labels_are_named_under_the_trainer(tmp_path: Path, method: str) -> None:
    data = labelled((torch.arange(48) % 4).float())
    with pytest.raises(ValueError, match=r"training_step failed on the scoring batch .*RuntimeError: expected target "
                                         r"dtype .*its labels y are torch.float32 values; .*`y.long\(\)`"):
        trainer(tmp_path, callbacks=[callback(method=method)], max_steps=1).fit(TinyNet(), DataLoader(data, 16))


@pytest.mark.parametrize("method", ["snip", "panning"])
def test_labels_beyond_the_outputs_are_named_under_the_trainer(tmp_path: Path, method: str) -> None:
    data = labelled(torch.arange(48) % 6)  # TinyNet has 4 outputs
    with pytest.raises(ValueError, match=r"IndexError: Target 4 is out of bounds. .*its labels range over \[0, 5\] "
                                         r"but the model gives 4 outputs per sample: class labels must lie in \[0, 3\]"):
        trainer(tmp_path, callbacks=[callback(method=method)], max_steps=1).fit(TinyNet(), DataLoader(data, 16))


def test_labels_beyond_the_outputs_with_the_classification_loss(tmp_path: Path) -> None:
    data = labelled(torch.arange(48) % 6)
    with pytest.raises(ValueError, match=r"classification loss cannot score this batch: its labels range over \[0, 5\]"):
        trainer(tmp_path, callbacks=[callback(method="snip", loss="classification")], max_steps=1).fit(
            TinyNet(), DataLoader(data, 16)
        )


def bn_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


@pytest.mark.parametrize(
    ("labels", "pattern"),
    [
        ((torch.arange(40) % 4).float(), r"its labels y are torch.float32 values; .*`y.long\(\)`"),
        (torch.arange(40) % 6, r"its labels range over \[0, 5\] but the model gives 4 outputs per sample"),
    ],
)
@pytest.mark.parametrize("method", ["snip", "grasp", "panning"])
def test_bad_labels_in_plain_prune(method: str, labels: torch.Tensor, pattern: str) -> None:
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=pattern):
        prune(bn_mlp(), (x, labels), 0.5, method=method, rounds=2, progress=False)


class BatchNormNet(TinyNet):
    """A BatchNorm1d after a Linear layer: one sample gives one value per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


ONE_SAMPLE = r"a BatchNorm layer of .* in train mode got a batch of one sample.*raise `per_class`.*train_mode"


@pytest.mark.parametrize("method", ["snip", "panning"])
def test_a_scoring_batch_of_one_sample_with_batchnorm(tmp_path: Path, method: str) -> None:
    one_class = labelled(torch.zeros(48, dtype=torch.long))  # per_class=1 of one class: a batch of one sample
    with pytest.raises(ValueError, match=ONE_SAMPLE):
        trainer(tmp_path, callbacks=[callback(method=method, per_class=1)], max_steps=1).fit(
            BatchNormNet(), DataLoader(one_class, 16)
        )
    x = torch.randn(1, 8)
    with pytest.raises(ValueError, match=ONE_SAMPLE):
        prune(bn_mlp(), (x, torch.zeros(1, dtype=torch.long)), 0.5, method=method, rounds=2, progress=False)
    masks = prune(bn_mlp(), (x, torch.zeros(1, dtype=torch.long)), 0.5, method=method, rounds=2, progress=False,
                  train_mode=False)  # what the error suggests works
    assert sum(int(m.sum()) for m in masks.values()) == int(0.5 * (8 * 16 + 16 * 4))


# ---------------------------------------------------------------------------------------------------------------------
# precision="bf16-true" / "16-true": scored in float32, the module left in its own dtype


@pytest.mark.parametrize(("precision", "dtype"), [("bf16-true", torch.bfloat16), ("16-true", torch.float16)])
def test_true_half_precision_is_scored_as_its_float32_twin(
    tmp_path: Path, precision: str, dtype: torch.dtype
) -> None:
    model = TinyNet()
    twin = copy.deepcopy(model).to(dtype).float()  # the same values, held in float32
    half = callback()
    checker = StepChecker(half)
    trainer(tmp_path, callbacks=[half, checker], max_steps=2, precision=precision).fit(
        model, DataLoader(xy_dataset(), batch_size=16)
    )
    reference = callback()
    trainer(tmp_path, callbacks=[reference], max_steps=1).fit(twin, DataLoader(xy_dataset(), batch_size=16))
    assert half.masks is not None and reference.masks is not None and checker.checked == 2
    assert all(torch.equal(half.masks[n], reference.masks[n]) for n in reference.masks)
    assert all(t.dtype == dtype for t in (*model.parameters(), *model.buffers()) if t.is_floating_point())
    assert half.summary["effective_sparsity"] is not None and half.summary["output_spread"] is not None
    assert_masked(model, half.masks)


def test_float32_scoring_restores_the_module_bit_for_bit() -> None:
    from lightning_panning.callbacks.base import float32_scoring

    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).to(torch.bfloat16)
    params = list(net.parameters())
    before = [t.detach().clone() for t in (*net.parameters(), *net.buffers())]
    with float32_scoring(net) as upcast:
        assert upcast and all(t.dtype in (torch.float32, torch.int64) for t in (*net.parameters(), *net.buffers()))
        assert net.eval()(torch.randn(5, 4)).dtype == torch.float32
    after = [t.detach() for t in (*net.parameters(), *net.buffers())]
    assert all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert all(a is b for a, b in zip(net.parameters(), params, strict=True))


# ---------------------------------------------------------------------------------------------------------------------
# masks that cannot train are flagged, once


class ZeroInitBlock(nn.Module):
    """A residual block whose last BatchNorm starts at zero (timm's `zero_init_last`, torchvision's
    `zero_init_residual`): the branch contributes nothing at initialisation, so every saliency before it is 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ZeroInitResNet(TinyNet):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), ZeroInitBlock(8), ZeroInitBlock(8), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(8, 4),
        )


def untrainable_warnings(record: Any) -> list[str]:
    return [str(w.message) for w in record if "these masks may not train" in str(w.message)]


@pytest.mark.parametrize("method", ["panning", "snip"])
def test_zero_initialised_residual_branches_are_flagged_once(tmp_path: Path, method: str) -> None:
    cb = callback(method=method, target=0.8)
    with pytest.warns(UserWarning) as record:
        trainer(tmp_path, callbacks=[cb], max_steps=1).fit(ZeroInitResNet(), DataLoader(xy_dataset(), 16))
    found = untrainable_warnings(record)
    assert len(found) == 1, found
    assert cb.summary["layer_density"]["net.2.conv2.weight"] == 0.0  # what is flagged is real
    assert cb.summary["effective_sparsity"] > 0.9  # target 0.8
    message = found[0]
    assert "PanningCallback: these masks may not train: effective sparsity" in message
    assert "pruned layers keep no effective weight: net.2.conv1.weight, net.2.conv2.weight" in message
    assert "2 normalisation layers have all-zero weights (net.2.bn2.weight, net.3.bn2.weight)" in message
    assert "zero_init_last=False" in message and "Otherwise, try a lower `target`" in message
    assert cb.summary["untrainable"] == message.split("these masks may not train: ", 1)[1]


class TinyMiddle(TinyNet):
    """An MLP whose middle layer has weights 1000× smaller: global magnitude pruning removes it whole."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                                 nn.Linear(32, 4))
        with torch.no_grad():
            self.net[3].weight.mul_(1e-3)


def test_an_emptied_layer_is_flagged_once_by_the_callback_and_by_prune(tmp_path: Path) -> None:
    cb = callback(method="magnitude", target=0.8)
    with pytest.warns(UserWarning) as record:
        trainer(tmp_path, callbacks=[cb], max_steps=1).fit(TinyMiddle(), DataLoader(xy_dataset(), 16))
    found = untrainable_warnings(record)
    assert len(found) == 1, found
    assert cb.summary["layer_density"]["net.3.weight"] == 0.0 and cb.summary["effective_sparsity"] == 1.0
    assert "effective sparsity 1.0000 against the target 0.8 (only 0.0% of the kept weights" in found[0]
    assert "3 of 3 pruned layers keep no effective weight" in found[0]
    x = torch.randn(8, 1, 8, 8)
    with pytest.warns(UserWarning, match=r"prune: these masks may not train: 1 of 3 pruned layers keep no weight: "
                                         r"net.3.weight\. Try a lower `target`"):
        prune(TinyMiddle(), None, 0.8, method="magnitude", example_input=x, progress=False)


def test_healthy_masks_are_not_flagged(tmp_path: Path) -> None:
    cb = callback(target=0.5)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*these masks may not train")
        trainer(tmp_path, callbacks=[cb], max_steps=1).fit(TinyNet(), DataLoader(xy_dataset(), 16))
    assert cb.summary["untrainable"] is None


def test_all_zero_fused_scores_are_reported_once_per_run() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    nn.init.zeros_(net[2].weight)  # a zero-initialised head (torchvision's ViT): every saliency vanishes
    batch = (torch.randn(6, 4), torch.arange(6) % 3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        prune(net, batch, 0.5, rounds=5, progress=False)
    ties = [str(w.message) for w in record if "every fused score" in str(w.message)]
    assert len(ties) == 1 and ties[0].startswith("Round 1:") and "once per run" in ties[0]


@pytest.mark.parametrize("activation", [nn.ReLU6, nn.Hardtanh, nn.Hardsigmoid])
def test_effective_sparsity_sees_through_clamping_activations(activation: type[nn.Module]) -> None:
    """The connectivity pass's values exceed 6 after one wide layer; a clamp must not cut every path before it."""
    from lightning_panning.core.masks import effective_sparsity

    net = nn.Sequential(nn.Linear(64, 64), activation(inplace=True) if activation is not nn.Hardsigmoid
                        else activation(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    dense = {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(net).items()}
    assert effective_sparsity(net, dense, torch.zeros(1, 64)).effective == 0.0
    half = {n: m.clone() for n, m in dense.items()}
    half["2.weight"][:, 32:] = False  # units 32..63 of the first layer feed nothing: their weights are not effective
    result = effective_sparsity(net, half, torch.zeros(1, 64))
    assert result.layer_effective_density["0.weight"] == 0.5 and result.layer_effective_density["2.weight"] == 0.5
