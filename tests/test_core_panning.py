"""The Panning loop, schedules, fusion, masks and every bad-input path of the core (issue 2)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_panning.core import (
    METHODS,
    TABLE3,
    FixedWeights,
    Panning,
    StageTable,
    apply_masks,
    balanced_batch,
    density,
    effective_sparsity,
    exponential,
    get_pruner,
    keep_count,
    linear,
    normalize,
    pack_masks,
    prunable_parameters,
    prune,
    select_top_k,
    shuffle_masks,
    unpack_masks,
)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(40, 12, generator=g), torch.arange(4).repeat(10)


def kept(masks: dict[str, torch.Tensor]) -> int:
    return sum(int(m.sum()) for m in masks.values())


# -- schedules and keep counts ------------------------------------------------------------------------------------
def test_schedule_values() -> None:
    values = exponential(0.98, 100)
    assert len(values) == 100 and values[-1] == 0.98
    assert values[0] == pytest.approx(1 - 0.02 ** (1 / 100))
    assert values[49] == pytest.approx(1 - 0.02**0.5)
    assert all(a < b for a, b in itertools.pairwise(values))
    assert linear(0.9, 3) == [0.3, 0.6, 0.9]
    assert exponential(0.5, 1) == [0.5]


@pytest.mark.parametrize(
    ("total", "target", "expected"),
    [(1000, 0.9, 100), (1000, 0.99, 10), (430500, 0.9999, 43), (430500, 0.98, 8610), (10, 0.05, 9), (7, 0.5, 3)],
)
def test_keep_count_rule(total: int, target: float, expected: int) -> None:
    assert keep_count(total, target) == expected


@pytest.mark.parametrize("target", [0.5, 0.9, 0.95, 0.98, 0.99, 0.999, 0.9999])
def test_exact_keep_counts(target: float) -> None:
    model = nn.Sequential(nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))  # m = 11000
    masks = prune(model, batch_for(model), target, rounds=5, progress=False)
    assert kept(masks) == math.floor(11000 * (1 - target) + 1e-6)


def batch_for(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(20, 100, generator=torch.Generator().manual_seed(0)), torch.arange(10).repeat(2)


# -- the Panning loop ---------------------------------------------------------------------------------------------
def test_every_method_keeps_the_exact_count_and_leaves_model_untouched() -> None:
    model = mlp()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    total = sum(p.numel() for p in prunable_parameters(model).values())
    for method in METHODS:
        masks = prune(model, batch(), 0.9, method=method, rounds=4, progress=False)
        if METHODS[method].get("selector") == "authors":  # int(960 · 0.09999999999999998) = 95, ties kept
            assert kept(masks) >= int(total * (1 - 0.9)) == 95, method
        else:
            assert kept(masks) == keep_count(total, 0.9) == 96, method
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_same_seed_gives_bit_identical_masks_and_seed_matters_for_random() -> None:
    a = prune(mlp(), batch(), 0.95, rounds=6, progress=False, seed=3)
    b = prune(mlp(), batch(), 0.95, rounds=6, progress=False, seed=3)
    assert all(torch.equal(a[n], b[n]) for n in a)
    r1 = prune(mlp(), None, 0.9, method="random", seed=1, example_input=torch.zeros(1, 12))
    r2 = prune(mlp(), None, 0.9, method="random", seed=2, example_input=torch.zeros(1, 12))
    assert any(not torch.equal(r1[n], r2[n]) for n in r1)


def test_resurrection_is_observed() -> None:
    result = Panning(rounds=20, progress=False).prune(mlp(), batch(), 0.99)
    assert sum(r.resurrected for r in result.history) > 0
    no_res = get_pruner("synflow", rounds=20, progress=False).prune(mlp(), batch(), 0.99)
    assert sum(r.resurrected for r in no_res.history) == 0


def test_history_records_table3_weights_and_losses() -> None:
    result = Panning(rounds=10, progress=False, track_effective=True).prune(mlp(), batch(), 0.995)
    assert [r.round for r in result.history] == list(range(1, 11))
    # ρ_i = 1 - 0.005^(i/10) = 0.411, 0.653, 0.796, 0.880, 0.929, 0.958, 0.975, 0.986, 0.992, 0.995 → Table 3 rows
    rows = [0, 0, 0, 1, 2, 2, 2, 3, 4, 4]
    assert [r.weights for r in result.history] == [TABLE3[i][1] for i in rows]
    assert result.history[-1].weights == {"synflow": 0.5, "snip": 0.0, "grasp": 0.5}
    assert all(r.loss is not None and r.grad_norm is not None for r in result.history)
    assert all(r.effective_sparsity is not None and r.effective_sparsity >= r.sparsity - 1e-9 for r in result.history)


def test_unmasked_data_scores_option_and_authors_normalization() -> None:
    authors = Panning(rounds=5, progress=False, masked_data_scores=False, normalization="authors")
    masks = authors.prune(mlp(), batch(), 0.9).masks
    assert kept(masks) == keep_count(sum(m.numel() for m in masks.values()), 0.9)
    model, calls = mlp(), []
    model[0].register_forward_hook(lambda *_: calls.append(1))
    losses = [r.loss for r in authors.replace(scorers=("snip", "grasp"), weights={"snip": 1, "grasp": 1}).prune(
        model, batch(), 0.9).history]
    assert len(set(losses)) == 1  # the unmasked network every round
    assert len(calls) == 1  # computed once, shared by all 5 rounds through the session's store


def test_masked_data_scores_are_recomputed_every_round() -> None:
    model, calls = mlp(), []
    model[0].register_forward_hook(lambda *_: calls.append(1))
    Panning(["snip", "grasp"], {"snip": 1, "grasp": 1}, rounds=5, progress=False).prune(model, batch(), 0.9)
    assert len(calls) == 5  # one shared SNIP/GraSP pass per round, at that round's mask


def test_the_loop_calls_the_scorer() -> None:
    """The loop uses `Scorer.scores`: a scorer that overrides it (or keep_score) is what runs."""
    from lightning_panning.core.scorers import Magnitude

    class Smallest(Magnitude):
        def keep_score(self, saliency: torch.Tensor) -> torch.Tensor:
            return -saliency.abs()

    model = mlp()
    masks = Panning([Smallest()], rounds=1, progress=False).prune(model, None, 0.5, example_input=torch.zeros(1, 12))
    weights = {n: p.detach().abs() for n, p in prunable_parameters(model).items()}
    kept_max = max(float(weights[n][m].max()) for n, m in masks.masks.items())
    pruned_min = min(float(weights[n][~m].min()) for n, m in masks.masks.items())
    assert kept_max <= pruned_min  # the smallest weights were kept


def test_scoring_batch_rule() -> None:
    from lightning_panning.core import SamplePool, scoring_batch

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 12, generator=g), torch.arange(60) % 3
    labelled = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    bx, by = scoring_batch(labelled, per_class=4, seed=1)
    assert by.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # D^b, whatever the loss
    again = scoring_batch(labelled, per_class=4, seed=1)
    assert torch.equal(bx, again[0])  # seeded read of a shuffling loader
    first = scoring_batch(labelled, per_class=4, seed=1, balanced=False)
    assert first[0].shape == (8, 12)  # the first batch when D^b is not needed (data-free scorers)
    assert scoring_batch(TensorDataset(x, y), per_class=2)[0].shape == (6, 12)  # a Dataset is read the same way
    unlabelled = DataLoader(TensorDataset(x), batch_size=5)
    assert scoring_batch(unlabelled)[0].shape == (5, 12)  # no labels: its first batch
    with pytest.raises(ValueError, match="no integer labels"):
        scoring_batch(unlabelled, require_labels=True)
    pool = SamplePool((x, y))
    a = scoring_batch(pool, per_class=3, generator=__import__("numpy").random.default_rng(5))
    b = scoring_batch(pool, per_class=3, seed=5)
    assert torch.equal(a[0], b[0]) and a[1].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert scoring_batch(None) is None and scoring_batch((x, y)) == (x, y)
    with pytest.raises(TypeError, match="`data` must be"):
        scoring_batch(3)  # type: ignore[arg-type]
    custom_loss = get_pruner(loss_fn=lambda m, b: m(b[0]).sum(), per_class=2, rounds=2, progress=False)
    assert custom_loss.scoring_batch(labelled)[1].tolist() == [0, 0, 1, 1, 2, 2]  # same rule as the callback's


def test_meta_device_model_is_a_clear_error() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(12, 4))
    with pytest.raises(ValueError, match=r"Sequential has parameters on the meta device \(0\.weight\).*to_empty"):
        prune(model, batch(), 0.9, rounds=2, progress=False)


def test_register_method_and_replace_and_settings() -> None:
    from lightning_panning import register_method

    register_method("test_snip_fixed", scorers=("snip", "grasp"), weights={"snip": 1.0})
    try:
        pruner = get_pruner("test_snip_fixed", rounds=3)
        assert pruner.name == "test_snip_fixed" and pruner.rounds == 3
        assert kept(prune(mlp(), batch(), 0.9, method="test_snip_fixed", rounds=2, progress=False)) == keep_count(
            12 * 32 + 32 * 16 + 16 * 4, 0.9
        )
        with pytest.raises(ValueError, match="already registered"):
            register_method("test_snip_fixed", scorers=("snip",))
        register_method("test_snip_fixed", scorers=("snip",), overwrite=True)
        assert get_pruner("test_snip_fixed").scorers.keys() == {"snip"}
    finally:
        METHODS.pop("test_snip_fixed", None)
    with pytest.raises(ValueError, match=r"`weights` names scorers \['magnitude'\]"):
        register_method("test_bad", scorers=("snip",), weights={"magnitude": 1.0})
    assert "test_bad" not in METHODS
    base = Panning(rounds=4, seed=2, include="0.*")
    changed = base.replace(seed=3)
    assert (changed.rounds, changed.seed, changed.include, base.seed) == (4, 3, "0.*", 2)
    settings = base.settings()
    assert settings["rounds"] == 4 and settings["weights"]["type"] == "StageTable"
    assert [s["type"] for s in settings["scorers"]] == ["SynFlow", "SNIP", "GraSP"]
    assert settings["scorers"][2]["variant"] == "improved"
    assert Panning(seed=2, rounds=4, include="0.*").settings() == settings  # plain values compare across instances


def test_dataloader_gives_a_class_balanced_deterministic_batch() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 12, generator=g), torch.randint(0, 4, (200,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    bx1, by1 = balanced_batch(loader, per_class=5, num_classes=4, seed=11)
    bx2, by2 = balanced_batch(loader, per_class=5, num_classes=4, seed=11)
    assert torch.equal(bx1, bx2) and torch.equal(by1, by2)
    assert by1.tolist() == [c for c in range(4) for _ in range(5)]
    masks_a = prune(mlp(), loader, 0.9, rounds=3, progress=False)
    masks_b = prune(mlp(), loader, 0.9, rounds=3, progress=False)
    assert all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a)


def test_custom_loss_fn_for_non_classification() -> None:
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 12))  # an autoencoder-like model
    x = torch.randn(8, 12)

    def recon(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return ((model(batch) - batch) ** 2).mean()

    masks = prune(model, x, 0.8, rounds=3, progress=False, loss_fn=recon)
    assert kept(masks) == keep_count(12 * 16 + 16 * 12, 0.8)


# -- fusion -------------------------------------------------------------------------------------------------------
def test_rms_normalization_is_order_preserving_and_nan_safe() -> None:
    s = {"a": torch.tensor([0.1, 3.0]), "b": torch.tensor([2.0, 0.0])}
    n = normalize(s)
    flat, nflat = torch.cat(list(s.values())), torch.cat(list(n.values()))
    assert torch.equal(flat.argsort(), nflat.argsort())
    assert float((nflat**2).mean()) == pytest.approx(1.0)
    zeros = normalize({"a": torch.zeros(3)})
    assert torch.equal(zeros["a"], torch.zeros(3))


def test_authors_normalization_formula() -> None:
    signed = {"a": torch.tensor([1.0, -2.0]), "b": torch.tensor([4.0, 0.5])}
    out = normalize({k: v.abs() for k, v in signed.items()}, signed, "authors")
    flat = torch.tensor([1.0, -2.0, 4.0, 0.5], dtype=torch.float64)
    expected = (flat - flat.mean()).abs() / flat.std()
    torch.testing.assert_close(torch.cat([out["a"], out["b"]]), expected.float())


def test_stage_table_rows_and_boundaries() -> None:
    table = StageTable()
    assert table.weights_at(0.5) == TABLE3[0][1]
    assert table.weights_at(0.8) == TABLE3[0][1]
    assert table.weights_at(1 - 0.2 + 1e-15) == TABLE3[0][1]  # float error at the boundary
    assert table.weights_at(0.85) == TABLE3[1][1]
    assert table.weights_at(0.98) == TABLE3[2][1]
    assert table.weights_at(0.985) == TABLE3[3][1]
    assert table.weights_at(0.9999) == TABLE3[4][1]
    slow = StageTable(one_row_per_round=True)
    assert [slow.weights_at(0.999)["snip"] for _ in range(5)] == [0.4, 0.3, 0.2, 0.0, 0.0]


def test_weight_options() -> None:
    assert FixedWeights({"snip": 2})(None) == {"snip": 2.0}
    with pytest.raises(ValueError, match=r"`weights\['snip'\]` must be a finite number ≥ 0, got -1"):
        FixedWeights({"snip": -1})
    with pytest.raises(ValueError, match="last row"):
        StageTable([(0.5, {"snip": 1.0})])
    with pytest.raises(ValueError, match="do(es)? not use"):
        Panning(weights={"magnitude": 1.0}, rounds=2, progress=False).prune(mlp(), batch(), 0.5)


# -- masks --------------------------------------------------------------------------------------------------------
def test_select_top_k_breaks_ties_by_index() -> None:
    scores = {"a": torch.ones(5), "b": torch.ones(5)}
    masks = select_top_k(scores, 3)
    assert masks["a"].tolist() == [True, True, True, False, False] and not masks["b"].any()


def test_apply_masks_density_pack_shuffle() -> None:
    model = mlp()
    masks = prune(model, batch(), 0.9, rounds=3, progress=False)
    apply_masks(model, masks)
    params = prunable_parameters(model)
    assert all((params[n][~m] == 0).all() for n, m in masks.items())
    overall, per_layer = density(masks)
    assert overall == pytest.approx(kept(masks) / sum(m.numel() for m in masks.values()))
    assert set(per_layer) == set(masks)
    restored = unpack_masks(pack_masks(masks))
    assert all(torch.equal(restored[n], masks[n]) for n in masks)
    shuffled = shuffle_masks(masks, seed=0)
    assert all(int(shuffled[n].sum()) == int(masks[n].sum()) for n in masks)
    assert any(not torch.equal(shuffled[n], masks[n]) for n in masks)


def test_effective_sparsity_counts_disconnected_weights_and_dead_units() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    m0 = torch.zeros(4, 3, dtype=torch.bool)
    m0[0, :] = True  # unit 0 has inputs
    m0[1, 0] = True  # unit 1 has an input but (below) no output
    m1 = torch.zeros(2, 4, dtype=torch.bool)
    m1[0, 0] = True  # unit 0 → output 0: effective
    m1[1, 2] = True  # unit 2 has no input: ineffective
    es = effective_sparsity(model, {"0.weight": m0, "2.weight": m1}, torch.zeros(1, 3))
    assert es.nominal == pytest.approx(1 - 6 / 20)
    assert es.effective == pytest.approx(1 - 4 / 20)  # 3 weights of unit 0 + the one 0→0 weight
    assert es.dead_units == {"0.weight": (3, 4), "2.weight": (1, 2)}
    assert not es.dead


def test_effective_sparsity_dead_network_and_vgg() -> None:
    from lightning_panning.models import VGG11

    model = VGG11(num_classes=10)
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(model).items()}
    first = next(iter(masks))
    assert effective_sparsity(model, masks, torch.zeros(1, 3, 32, 32)).effective == pytest.approx(0.0)
    masks[first] = torch.zeros_like(masks[first])
    assert effective_sparsity(model, masks, torch.zeros(1, 3, 32, 32)).dead


def test_effective_sparsity_honours_mask_buffers_a_layer_multiplies_its_weights_by() -> None:
    """Synaptic-Flow-style masked layers and ``torch.nn.utils.prune`` keep their masks in ``*_mask`` buffers."""

    class MaskedLinear(nn.Linear):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.register_buffer("weight_mask", torch.ones_like(self.weight))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.linear(x, self.weight * self.weight_mask, self.bias)

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    masked = nn.Sequential(MaskedLinear(6, 8), nn.ReLU(), MaskedLinear(8, 3))
    masked.load_state_dict(plain.state_dict(), strict=False)
    masks = prune(plain, None, 0.7, method="synflow", rounds=3, example_input=torch.zeros(1, 6), progress=False)
    expected = effective_sparsity(plain, masks, torch.zeros(1, 6))
    found = effective_sparsity(masked, masks, torch.zeros(1, 6))
    assert not found.dead and expected.effective < 1.0 and found.effective == pytest.approx(expected.effective)
    masked[2].weight_mask[:, :] = 0.0  # the module's own mask cuts every path: the pass sees it
    assert effective_sparsity(masked, masks, torch.zeros(1, 6)).dead
    from torch.nn.utils import prune as torch_prune

    pruned = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    torch_prune.identity(pruned[0], "weight")  # weight_orig (parameter) and weight_mask (buffer)
    found = effective_sparsity(pruned, {n.replace("0.weight", "0.weight_orig"): m for n, m in masks.items()},
                               torch.zeros(1, 6))
    assert found.effective == pytest.approx(expected.effective)


# -- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_target_outside_open_interval(target: float) -> None:
    with pytest.raises(ValueError, match=r"`target` must be in the open interval \(0, 1\)"):
        prune(mlp(), batch(), target, progress=False)


def test_target_type_error() -> None:
    with pytest.raises(TypeError, match="`target` must be a real number"):
        prune(mlp(), batch(), "0.9", progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`target` must be a real number"):
        prune(mlp(), batch(), True, progress=False)


@pytest.mark.parametrize("make", [np.float64, np.float32])
def test_numpy_float_target_is_accepted(make: Any) -> None:
    masks = prune(mlp(), batch(), make(0.9), method="snip", progress=False)
    reference = prune(mlp(), batch(), float(make(0.9)), method="snip", progress=False)
    assert all(torch.equal(masks[n], reference[n]) for n in reference)


def test_target_that_leaves_no_weight() -> None:
    with pytest.raises(ValueError, match="leaves no weight"):
        prune(mlp(), batch(), 0.99999, progress=False)


def test_unknown_names() -> None:
    with pytest.raises(ValueError, match="Unknown `method` 'pannning'; allowed"):
        prune(mlp(), batch(), 0.9, method="pannning")
    with pytest.raises(ValueError, match="Unknown scorer"):
        Panning(scorers=("snip", "nope"))
    with pytest.raises(ValueError, match="Unknown `normalization`"):
        Panning(normalization="zscore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Unknown `schedule`"):
        Panning(schedule="cosine")
    with pytest.raises(ValueError, match=r"`rounds` must be an integer in \[1, 10000\] .*got 0"):
        Panning(rounds=0)
    with pytest.raises(ValueError, match=r"`rounds` must be an integer in \[1, 10000\] .*got 10000000"):
        Panning(rounds=10**7)  # a 97-hour progress bar on a ResNet
    assert Panning(rounds=10_000).rounds == 10_000


def test_mismatched_mask_shapes_and_unknown_layers() -> None:
    model = mlp()
    with pytest.raises(ValueError, match=r"Mask '0.weight' has shape \(3, 3\) but the parameter has shape \(32, 12\)"):
        apply_masks(model, {"0.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="does not have"):
        apply_masks(model, {"9.weight": torch.ones(3, 3, dtype=torch.bool)})


def test_data_without_labels_and_missing_data() -> None:
    x, _ = batch()
    with pytest.raises(ValueError, match="needs integer labels"):
        prune(mlp(), x, 0.9, rounds=2, progress=False)
    with pytest.raises(ValueError, match="need data, but `data` is None"):
        prune(mlp(), None, 0.9, method="snip")
    unlabeled = DataLoader(TensorDataset(x), batch_size=8)
    with pytest.raises(ValueError, match="no integer labels"):
        prune(mlp(), unlabeled, 0.9, rounds=2, progress=False)


def test_nothing_prunable() -> None:
    model = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="no prunable parameters"):
        prune(model, batch(), 0.9)


def test_nan_scores_name_scorer_and_layer_in_the_loop() -> None:
    model = mlp()
    with torch.no_grad():
        model[2].weight[0, 0] = float("inf")
    with pytest.raises(
        ValueError, match=r"Scorer '(snip|grasp|synflow)' produced non-finite scores in layer '\d\.weight'"
    ):
        prune(model, batch(), 0.9, rounds=2, progress=False)


def test_parameter_selection_patterns() -> None:
    from torchvision.models import resnet18

    names = list(prunable_parameters(resnet18(num_classes=10)))
    assert names[0] == "conv1.weight" and "layer1.0.conv1.weight" in names and names[-1] == "fc.weight"
    assert "layer2.0.downsample.0.weight" in names and not any("bn" in n for n in names)
    assert list(prunable_parameters(mlp(), include="0.*")) == ["0.weight", "0.bias"]
    assert list(prunable_parameters(mlp(), exclude=["4.*"])) == ["0.weight", "2.weight"]
    only_linear_out = prunable_parameters(mlp(), predicate=lambda n, m, p: p.ndim == 2 and m.out_features == 4)
    assert list(only_linear_out) == ["4.weight"]
    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    assert list(prunable_parameters(tied)) == ["0.weight"]


def test_custom_batch_layout_with_loss_fn_and_data_scorers_only() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))
    batch = {"feats": torch.randn(10, 6), "t": torch.randn(10, 1)}

    def mse(model: nn.Module, b: dict) -> torch.Tensor:
        return ((model(b["feats"]) - b["t"]) ** 2).mean()

    masks = Panning(["snip"], loss_fn=mse, rounds=2, progress=False).prune(model, batch, 0.5).masks
    assert kept(masks) == keep_count(6 * 8 + 8, 0.5)
    with pytest.raises(ValueError, match="need its shape"):
        Panning(loss_fn=mse, rounds=2, progress=False).prune(model, batch, 0.5)


@pytest.mark.parametrize("kind", ["rand", "ties", "sorted", "const"])
@pytest.mark.parametrize("k", [1, 37, 5_000, 150_000, 299_999, 300_000])
def test_kth_largest_is_exact(kind: str, k: int) -> None:
    from lightning_panning.core.selection import kth_largest

    g = torch.Generator().manual_seed(k)
    m = 300_000  # above the sampling threshold (4 × 65,536)
    x = {
        "rand": lambda: torch.randn(m, generator=g),
        "ties": lambda: torch.randint(0, 7, (m,), generator=g).float(),
        "sorted": lambda: torch.arange(m, dtype=torch.float32),
        "const": lambda: torch.zeros(m),
    }[kind]()
    assert float(kth_largest(x, k)) == float(torch.kthvalue(x, m - k + 1).values)


@pytest.mark.parametrize("kind", ["mostly_zero", "ties", "const", "rand"])
@pytest.mark.parametrize("k", [1, 1_000, 150_000, 299_999])
def test_top_k_keeps_exactly_k_and_the_lowest_indexed_ties(kind: str, k: int) -> None:
    """The exact count with ties to the lower index, also when a value is shared by most scores (an all-zero round
    takes the shortcut through the bound and the per-block tie count), against a plain reference."""
    from lightning_panning.core.selection import _after_nth_true, _top_k_flat

    g = torch.Generator().manual_seed(k)
    m = 300_000
    x = {
        "mostly_zero": lambda: torch.where(torch.rand(m, generator=g) < 0.95, 0.0, torch.rand(m, generator=g)),
        "ties": lambda: torch.randint(0, 7, (m,), generator=g).float(),
        "const": lambda: torch.zeros(m),
        "rand": lambda: torch.randn(m, generator=g),
    }[kind]()
    threshold = torch.kthvalue(x, m - k + 1).values
    expected = x > threshold
    ties = torch.nonzero(x == threshold).squeeze(1)
    expected[ties[: k - int(expected.sum())]] = True
    keep = _top_k_flat(x, k)
    assert int(keep.sum()) == k and torch.equal(keep, expected)
    flags = torch.zeros(10, dtype=torch.bool)
    flags[[2, 5, 9]] = True
    assert [_after_nth_true(flags, n, block=4) for n in range(4)] == [0, 3, 6, 10]


def test_output_spread_reads_tuples_and_refuses_what_it_cannot_measure() -> None:
    from lightning_panning.core.masks import output_spread

    class TupleNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.fc(x), x.sum()

    class Scalar(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum()  # a 0-d output: no batch to spread over

    net = TupleNet()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    dense, pruned = output_spread(net, {"fc.weight": torch.zeros(2, 3, dtype=torch.bool)}, x)
    assert dense > 0.0 and pruned == 0.0  # only the bias is left
    assert torch.equal(net.fc.weight, net.fc.weight.detach()) and bool((net.fc.weight != 0).all())  # not modified
    assert output_spread(net, {}, x[:1]) is None  # one sample: no spread
    with pytest.raises(ValueError, match=r"needs a tensor output of shape \(B, ...\)"):
        output_spread(Scalar(), {}, x)
    with pytest.raises(ValueError, match="Masks name parameters the model does not have"):
        output_spread(net, {"nope": torch.ones(2, 3, dtype=torch.bool)}, x)
