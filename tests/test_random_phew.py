"""Random pruning at layer-wise densities (ERK, ER, uniform, another method's) and PHEW (biased random walks)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lightning_panning import METHODS, get_pruner, prune, shuffle_masks
from lightning_panning.callbacks import PanningCallback
from lightning_panning.core import DefaultRule, ScoringContext, layer_quotas, prunable_parameters
from lightning_panning.core.phew import INPUT, PHEWError, layer_graph, phew_masks, phew_order
from lightning_panning.core.scorers import PHEW
from lightning_panning.models import VGG11, LeNet5, ResNet20

LAYERWISE = {"random_erk": "erk", "random_er": "er", "random_uniform": "uniform"}


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything pruning must leave as it found it: values, modes, flags, .grad and every global RNG."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state()[1].copy(),
        "python_rng": random.getstate(),
    }


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["state"].keys() == b["state"].keys()
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    assert a["modes"] == b["modes"] and a["requires_grad"] == b["requires_grad"]
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(a["grads"], b["grads"], strict=True))
    assert torch.equal(a["torch_rng"], b["torch_rng"])
    assert np.array_equal(a["numpy_rng"], b["numpy_rng"]) and a["python_rng"] == b["python_rng"]


def lenet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return LeNet5(), torch.randn(4, 1, 28, 28)


def kept(masks: dict[str, torch.Tensor]) -> int:
    return sum(int(m.sum()) for m in masks.values())


def touched_model() -> tuple[nn.Module, torch.Tensor]:
    """LeNet5 in a non-default state that pruning must keep: eval mode, a frozen layer, an existing .grad."""
    model, x = lenet()
    model.eval()
    model.features[0].weight.requires_grad_(False)
    model.classifier[2].weight.grad = torch.ones_like(model.classifier[2].weight)
    return model, x


# -- random at ERK / ER / uniform densities -------------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(LAYERWISE))
def test_layerwise_random_keeps_exact_quotas_deterministically(method: str) -> None:
    model, x = touched_model()
    before = snapshot(model)
    masks = prune(model, None, 0.95, method=method, example_input=x, seed=3, progress=False)
    assert_same(before, snapshot(model))
    params = prunable_parameters(model)
    total = sum(p.numel() for p in params.values())
    quotas = layer_quotas({n: tuple(p.shape) for n, p in params.items()}, int(total * 0.05 + 1e-6), LAYERWISE[method])
    assert {n: int(m.sum()) for n, m in masks.items()} == quotas
    again = prune(model, None, 0.95, method=method, example_input=x, seed=3, progress=False)
    other = prune(model, None, 0.95, method=method, example_input=x, seed=4, progress=False)
    assert all(torch.equal(masks[n], again[n]) for n in masks)
    assert any(not torch.equal(masks[n], other[n]) for n in masks)


def test_erk_gives_small_layers_more_density_than_uniform() -> None:
    model, x = lenet()
    erk = prune(model, None, 0.99, method="random_erk", example_input=x, progress=False)
    uniform = prune(model, None, 0.99, method="random_uniform", example_input=x, progress=False)
    # the first conv (20x1x5x5, ERK factor 31/500) is far denser under ERK than the large fc layer (800→500)
    assert erk["features.0.weight"].float().mean() > 10 * erk["classifier.0.weight"].float().mean()
    densities = {round(float(m.float().mean()), 2) for m in uniform.values()}
    assert densities == {0.01}


# -- random at another method's layer densities: the layer-wise shuffle ---------------------------------------------
def test_panning_shuffled_is_panning_shuffled_within_layers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    batch = (torch.randn(9, 1, 8, 8), torch.arange(3).repeat(3))
    before = snapshot(model)
    kwargs: dict[str, Any] = {"rounds": 3, "seed": 2, "progress": False, "per_class": 3}
    own = prune(model, batch, 0.9, method="panning", **kwargs)
    shuffled = prune(model, batch, 0.9, method="panning_shuffled", **kwargs)
    assert_same(before, snapshot(model))
    expected = shuffle_masks(own, seed=2)
    assert all(torch.equal(shuffled[n], expected[n]) for n in own)
    assert {n: int(m.sum()) for n, m in shuffled.items()} == {n: int(m.sum()) for n, m in own.items()}
    assert any(not torch.equal(shuffled[n], own[n]) for n in own)
    # any method's own layer densities, with the same setting
    snip = prune(model, batch, 0.9, method="snip", **kwargs)
    snip_shuffled = prune(model, batch, 0.9, method="snip", shuffle_masks=True, **kwargs)
    assert {n: int(m.sum()) for n, m in snip_shuffled.items()} == {n: int(m.sum()) for n, m in snip.items()}


def test_callback_shuffle_masks_is_the_pruners_setting() -> None:
    assert PanningCallback(0.9, "panning_shuffled", verbose=False).shuffle_masks
    callback = PanningCallback(0.9, "snip", shuffle_masks=True, verbose=False)
    assert callback.pruner.shuffle_masks and callback.settings()["shuffle_masks"] is True
    assert PanningCallback(0.9, "snip", options={"shuffle_masks": True}, verbose=False).shuffle_masks
    assert not PanningCallback(0.9, "snip", verbose=False).settings()["shuffle_masks"]
    with pytest.raises(ValueError, match=r"`shuffle_masks` must be True or False, got 1"):
        get_pruner("panning", shuffle_masks=1)


def test_sweep_knows_the_new_methods() -> None:
    from benchmarks.sweep.methods import METHOD_LABELS, SWEEP_ONLY_METHODS, build_callback

    for method in ("random_erk", "random_er", "random_uniform", "phew", "panning_shuffled"):
        assert method in METHODS and method in METHOD_LABELS and method not in SWEEP_ONLY_METHODS
        assert build_callback(method, 0.9, rounds=3).method == method


# -- PHEW -----------------------------------------------------------------------------------------------------------
def test_phew_follows_the_only_paths_of_nonzero_weight() -> None:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[2].weight.fill_(1.0)
    params = prunable_parameters(net, predicate=DefaultRule(zeros=True))
    masks = phew_masks(net, params, 4, torch.zeros(1, 2))
    assert masks["0.weight"].tolist() == [[True, False], [False, True]] and masks["2.weight"].all()
    with pytest.raises(ValueError, match=r"found no new weight .* after keeping 4 of `keep`=5"):
        phew_masks(net, params, 5, torch.zeros(1, 2))


def test_phew_graph_of_lenet_flattens_and_of_resnet_joins_residual_sums() -> None:
    model, x = lenet()
    graph = layer_graph(model, prunable_parameters(model), x)
    assert [layer.module for layer in graph.layers] == ["features.0", "features.3", "classifier.0", "classifier.2"]
    assert [layer.preds for layer in graph.layers] == [[(INPUT, 1)], [(0, 1)], [(1, 16)], [(2, 1)]]
    assert graph.sources == [0] and graph.sinks == [3]
    torch.manual_seed(0)
    resnet = ResNet20()
    graph = layer_graph(resnet, prunable_parameters(resnet), torch.zeros(1, 3, 32, 32))
    joined = [layer for layer in graph.layers if len(layer.preds) > 1]
    assert joined, "a residual sum feeds later layers from several layers"
    assert all(step == 1 for layer in graph.layers for _, step in layer.preds)  # the fc reads pooled channels
    assert graph.sinks == [len(graph.layers) - 1] and graph.layers[-1].module == "fc"


def resnet_tv() -> nn.Module:
    tv = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    return tv.resnet18(num_classes=10)


def mobilenet_tv() -> nn.Module:
    tv = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    return tv.mobilenet_v2(width_mult=0.25, num_classes=10)


def vgg() -> nn.Module:
    torch.manual_seed(0)
    return VGG11()


def resnet20() -> nn.Module:
    torch.manual_seed(0)
    return ResNet20()


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], float]] = {
    "lenet5": (lambda: lenet()[0], (2, 1, 28, 28), 0.99),
    "vgg11_bn": (vgg, (2, 3, 32, 32), 0.999),
    "resnet20": (resnet20, (2, 3, 32, 32), 0.99),
    "torchvision_resnet18": (resnet_tv, (2, 3, 32, 32), 0.9995),
    "torchvision_mobilenet_v2": (mobilenet_tv, (2, 3, 32, 32), 0.99),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_phew_exact_deterministic_and_model_untouched(name: str, one_thread: None) -> None:
    build, shape, target = MODELS[name]
    model = build()
    model.train()
    x = torch.randn(shape)
    before = snapshot(model)
    masks = prune(model, None, target, method="phew", example_input=x, seed=5, progress=False)
    assert_same(before, snapshot(model))
    total = sum(m.numel() for m in masks.values())
    assert kept(masks) == int(total * (1 - target) + 1e-6)
    again = prune(model, None, target, method="phew", example_input=x, seed=5, progress=False)
    assert all(torch.equal(masks[n], again[n]) for n in masks)
    other = prune(model, None, target, method="phew", example_input=x, seed=6, progress=False)
    assert any(not torch.equal(masks[n], other[n]) for n in masks)
    assert all(bool(m.any()) for m in masks.values()), "every layer lies on some walk"


def test_phew_refuses_attention_with_a_clear_error() -> None:
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=3,
    )
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(config)
    ids = torch.randint(0, 64, (2, 8))
    before = snapshot(bert)
    with pytest.raises(PHEWError, match=r"PHEW cannot walk BertForSequenceClassification: the input of "
                       r"'bert\.encoder\.layer\.0\.attention\.output\.dense' combines several layers' outputs .*"
                       r"no attention"):
        prune(bert, None, 0.9, method="phew", example_input=ids, progress=False)
    assert_same(before, snapshot(bert))


def test_phew_refuses_what_it_cannot_walk() -> None:
    lm = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 20))
    with pytest.raises(PHEWError, match=r"PHEW cannot prune '0\.weight' \(Embedding\).*Conv1d/2d/3d and Linear"):
        prune(lm, None, 0.5, method="phew", example_input=torch.randint(0, 20, (2, 5)), predicate=DefaultRule(
            embeddings=True), progress=False)
    shared = nn.Linear(4, 4)
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    with pytest.raises(PHEWError, match=r"PHEW cannot walk '0': forward calls it 2 times"):
        prune(twice, None, 0.5, method="phew", example_input=torch.randn(2, 4), progress=False)

    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.a(x) * torch.sigmoid(self.b(x)))

    with pytest.raises(PHEWError, match=r"the input of 'out' combines several layers' outputs with MulBackward0"):
        prune(Gated(), None, 0.5, method="phew", example_input=torch.randn(2, 4), progress=False)


def test_phew_scorer_needs_the_keep_count_and_orders_its_keep_set() -> None:
    model, x = lenet()
    params = prunable_parameters(model)
    with pytest.raises(ValueError, match=r"Scorer 'phew' needs the round's keep count"):
        PHEW()(ScoringContext(model, params, example_input=x))
    scores = PHEW()(ScoringContext(model, params, example_input=x, keep=300, seed=1))
    order = phew_order(layer_graph(model, params, x), 300, seed=1)
    for n in params:
        assert torch.equal(scores[n] > 0, torch.from_numpy(order[n] > 0))
    flat = torch.cat([scores[n].reshape(-1) for n in params])
    ranked = torch.sort(flat[flat > 0], descending=True).values
    torch.testing.assert_close(ranked, 1 - torch.arange(300, dtype=torch.float32) / 300)


def test_new_methods_resolve_from_a_yaml_config() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callbacks", type=list[PanningCallback])
    config = """
callbacks:
  - class_path: lightning_panning.callbacks.PanningCallback
    init_args: {target: 0.9, method: phew, seed: 2}
  - class_path: lightning_panning.callbacks.PanningCallback
    init_args: {target: 0.9, method: random_erk}
  - class_path: lightning_panning.callbacks.PanningCallback
    init_args: {target: 0.9, method: synflow, options: {shuffle_masks: true}}
"""
    callbacks = parser.instantiate(parser.parse_string(config)).callbacks
    assert [(c.method, c.shuffle_masks) for c in callbacks] == [
        ("phew", False), ("random_erk", False), ("synflow", True)]
    assert callbacks[0].pruner.seed == 2 and callbacks[1].pruner.selector.name == "erk"


@pytest.mark.parametrize("method", ["phew", "random_erk"])
def test_new_methods_prune_inside_fit(method: str, tmp_path: Any) -> None:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(4 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(TensorDataset(torch.randn(12, 1, 8, 8), torch.arange(3).repeat(4)), batch_size=6)
    callback = PanningCallback(0.8, method, seed=1, verbose=False, log_figure=False)
    pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, default_root_dir=tmp_path, callbacks=[callback]).fit(Net(), data)
    assert callback.masks is not None
    total = sum(m.numel() for m in callback.masks.values())
    assert kept(callback.masks) == int(total * 0.2 + 1e-6)


#: the authors' checkout of Random_Pruning beside this repository (``RANDOM_PRUNING_REPO`` overrides)
RANDOM_PRUNING_REPO = Path(os.environ.get("RANDOM_PRUNING_REPO",
                                          Path(__file__).resolve().parents[2] / "authors-randompruning"))


@pytest.mark.skipif(not (RANDOM_PRUNING_REPO / "CIFAR" / "sparselearning" / "core.py").is_file(),
                    reason="no VITA-Group/Random_Pruning checkout")
def test_prune_speed_times_random_erk_against_their_masking(tmp_path: Path) -> None:
    from benchmarks.prune_speed import main

    data = main(["--random-pruning-repo", str(RANDOM_PRUNING_REPO), "--groups", "random_erk", "--quick",
                 "--threads", "1", "--out", str(tmp_path)])
    group = data["results"]["lenet5"]["groups"]["random_erk"]
    assert set(group) == {"theirs", "ours_default"}  # no bit-for-bit preset: our own count and draws
    ours = group["ours_default"]
    assert ours["kept"]["ours"] == 8610 and abs(ours["kept"]["theirs"] - 8610) < 500  # theirs: Bernoulli per layer
    assert 0 < ours["differing_mask_entries_vs_theirs"] < 2 * 8610 + 1000
    assert data["meta"]["git_commit"] is None or len(data["meta"]["git_commit"]) == 40
    assert "kept 8,610" in (tmp_path / "prune_speed.md").read_text()
