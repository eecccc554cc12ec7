"""The authors' semantics as explicit options (issue 9): signed SynFlow, their normalisation, stage rule, keep rule,
Linear re-initialisation, and the ``*_authors`` presets through ``prune``, the callback and the CLI.

Bit-for-bit agreement with the authors' real code is measured by ``benchmarks/authors_parity.py`` (their code is not
a test dependency); these tests pin each option's behaviour against hand computations.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_panning.callbacks import PanningCallback
from lightning_panning.cli import cli_main
from lightning_panning.core import TABLE3, Panning, StageTable, exponential, get_pruner, keep_count, prune
from lightning_panning.core.fusion import normalize
from lightning_panning.core.params import DefaultRule, prunable_parameters
from lightning_panning.core.schedules import authors_keep_count, authors_keep_fractions
from lightning_panning.core.scorers import GraSP, ScoringContext, SynFlow
from lightning_panning.core.selection import select_at_threshold

ROOT = Path(__file__).resolve().parents[1]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(40, 12, generator=g), torch.arange(4).repeat(10)


def kept(masks: dict[str, torch.Tensor]) -> int:
    return sum(int(m.sum()) for m in masks.values())


# -- signed SynFlow and the authors' normalisation, by hand -----------------------------------------------------------
def tiny_linear_net() -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
        net[1].weight.copy_(torch.tensor([[-1.0, 2.0]]))
    return net


def test_signed_synflow_and_authors_normalisation_match_a_hand_computation() -> None:
    net = tiny_linear_net()
    ctx = ScoringContext(net, prunable_parameters(net), example_input=torch.zeros(1, 2))
    # R = 1ᵀ|W2||W1|1:  ∂R/∂|W1_ij| = |W2_0i|,  ∂R/∂|W2_0i| = Σ_j |W1_ij|;  the authors' saliency is w · ∂R/∂|w|
    signed = SynFlow(signed=True).saliency(ctx)
    assert signed["0.weight"].tolist() == [[1.0, -2.0], [1.0, 6.0]]
    assert signed["1.weight"].tolist() == [[-3.0, 7.0]]
    assert SynFlow().saliency(ctx)["1.weight"].tolist() == [[3.0, 7.0]]  # ours: |w| · ∂R/∂|w|
    # |S − μ| / σ over [1, −2, 1, 6, −3, 7]: μ = 5/3, σ² = (sample) 50/3
    normalised = normalize({n: s.abs() for n, s in signed.items()}, signed, "authors")
    got = torch.cat([normalised["0.weight"].flatten(), normalised["1.weight"].flatten()]).tolist()
    expected = [abs(v - 5 / 3) / math.sqrt(50 / 3) for v in (1.0, -2.0, 1.0, 6.0, -3.0, 7.0)]
    assert got == pytest.approx(expected, rel=1e-6)
    assert [round(v, 4) for v in got] == [0.1633, 0.8981, 0.1633, 1.0614, 1.1431, 1.3064]
    # on the unsigned score the same formula ranks w=1 (score 1) above w=−2 (score 2): the sign changes the order
    unsigned = SynFlow().saliency(ctx)
    wrong = normalize(unsigned, unsigned, "authors")["0.weight"].flatten().tolist()
    assert wrong[0] > wrong[1] and got[0] < got[1]


def test_authors_normalisation_of_a_dead_metric_is_nan_as_theirs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="lightning_panning.core.fusion"):
        out = normalize({"a": torch.zeros(4)}, method="authors")  # their 0/0
    assert torch.isnan(out["a"]).all() and "NaN, as in the authors' code" in caplog.text
    assert normalize({"a": torch.zeros(4)}, method="rms")["a"].tolist() == [0.0] * 4  # ours: 0, order kept


def test_panning_authors_keeps_nothing_once_synflow_is_dead_like_theirs(caplog: pytest.LogCaptureFixture) -> None:
    """Their Panning on LeNet5 at 0.9999 (T = 100) loses every input-output path in round 94; from round 95 on
    SynFlow is all zero, their normalisation divides 0 by 0 and every weight is pruned. The preset does the same."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 32, bias=False), nn.ReLU(), nn.Linear(32, 16, bias=False), nn.ReLU(),
                        nn.Linear(16, 4, bias=False))
    with torch.no_grad():
        net[2].weight.zero_()  # no path from input to output: SynFlow is 0 everywhere from round 1
    zeros = DefaultRule(zeros=True)  # the default rule leaves an all-zero weight dense; here it must be pruned too
    with caplog.at_level("WARNING", logger="lightning_panning.core.fusion"):
        result = get_pruner("panning_authors", rounds=2, progress=False, predicate=zeros).prune(net, batch(), 0.5)
    assert kept(result.masks) == 0 and [r.keep for r in result.history] == [0, 0]
    assert "no weight is kept" in caplog.text
    assert kept(get_pruner("panning", rounds=2, progress=False, predicate=zeros).prune(net, batch(), 0.5).masks) == 480


def test_sum_normalisation_is_the_authors_ranking_factor() -> None:
    scores = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([-2.0])}
    out = normalize(scores, method="sum")
    factor = torch.tensor(2.0) + 1e-10  # |1 + 3 − 2| + ε in float32
    assert torch.equal(out["a"], scores["a"] / factor) and torch.equal(out["b"], scores["b"] / factor)


def test_fusion_rounds_each_share_before_adding() -> None:
    from lightning_panning.core.fusion import fuse

    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.rand(10_000, generator=g) * 10 for _ in range(3))
    fused = fuse({"x": c}, 0.5, fuse({"x": b}, 0.3, fuse({"x": a}, 0.2)))
    assert torch.equal(fused["x"], 0.2 * a + 0.3 * b + 0.5 * c)  # the authors' expression, bit for bit


# -- the SynFlow options ----------------------------------------------------------------------------------------------
def test_synflow_abs_buffers_linearises_running_mean() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        net[1].running_mean.copy_(torch.linspace(-2.0, 1.0, 8))
        net[1].running_var.uniform_(0.5, 2.0)
    absolute = copy.deepcopy(net)
    absolute[1].running_mean.abs_()
    example = torch.zeros(1, 6)
    ours = SynFlow(abs_buffers=True).saliency(ScoringContext(net, prunable_parameters(net), example_input=example))
    manual = SynFlow().saliency(ScoringContext(absolute, prunable_parameters(absolute), example_input=example))
    plain = SynFlow().saliency(ScoringContext(net, prunable_parameters(net), example_input=example))
    assert all(torch.equal(ours[n], manual[n]) for n in ours)
    assert not torch.equal(ours["0.weight"], plain["0.weight"])
    assert torch.equal(net[1].running_mean, torch.linspace(-2.0, 1.0, 8))  # the model is untouched


def test_synflow_float32_reports_overflow_instead_of_falling_back() -> None:
    net = nn.Sequential(*[nn.Linear(64, 64, bias=False) for _ in range(12)])
    with torch.no_grad():
        for layer in net:
            layer.weight.fill_(100.0)  # R = 64 · 6400¹² overflows float32
    ctx = ScoringContext(net, prunable_parameters(net), example_input=torch.zeros(1, 64))
    assert all(s.dtype == torch.float64 for s in SynFlow()(ctx).values())
    with pytest.raises(ValueError, match="non-finite scores"):
        SynFlow(dtype="float32")(ctx)
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        SynFlow(dtype="half")  # type: ignore[arg-type]


def test_grasp_factor_two_is_exactly_double() -> None:
    net = mlp()
    ctx = ScoringContext(net, prunable_parameters(net), batch=batch(), needs_hvp=True)
    one, two = GraSP().saliency(ctx), GraSP(factor=2.0).saliency(ctx)
    assert all(torch.equal(two[n], 2 * one[n]) for n in one)
    assert "factor=2.0" in repr(GraSP(factor=2.0))
    with pytest.raises(ValueError, match="`factor` must be a finite number > 0"):
        GraSP(factor=0)


# -- stage rule and keep count at the float boundaries ----------------------------------------------------------------
def test_authors_schedule_values_at_the_float_boundaries() -> None:
    rho, kappa = authors_keep_fractions(exponential, 0.9999, 100)
    assert rho[24] == 0.9000000000000028 and rho[24] > 0.9  # mathematically 0.9
    assert rho[49] == 0.9900000000000005 and rho[49] > 0.99  # mathematically 0.99
    assert kappa[24] == (1.0 - 0.9999) ** 0.25 and rho[24] == 1.0 - kappa[24]
    assert rho[-1] == 1.0 - (1.0 - 0.9999)  # not pinned to the target
    assert exponential(0.9999, 100)[24] == rho[24]  # the paper schedule has the same float


def test_stage_rule_at_the_float_boundaries() -> None:
    rho = 0.9000000000000028
    assert StageTable().weights_at(rho) == TABLE3[1][1]  # paper: ρ is 0.9, row (0.8, 0.9]
    assert StageTable(tolerance=0.0).weights_at(rho) == TABLE3[2][1]  # authors: 0.9 < ρ in floats, next row
    assert StageTable(tolerance=0.0).weights_at(0.9) == TABLE3[1][1]

    # the authors' loop: `if stair[psta] < 1 - keep_ratio: psta += 1`, at most one row per round
    def theirs(sparsities: list[float]) -> list[int]:
        stair, stage, rows = [0.8, 0.9, 0.98, 0.99, 1.0], 0, []
        for r in sparsities:
            if stair[stage] < r:
                stage += 1
            rows.append(stage)
        return rows

    for target, rounds in [(0.9999, 100), (0.98, 100), (0.999, 4), (0.9999, 3)]:
        sparsities, _ = authors_keep_fractions(exponential, target, rounds)
        table = StageTable(one_row_per_round=True, tolerance=0.0)
        used = [table.weights_at(r) for r in sparsities]  # stateful: one call per round
        ours = [next(i for i, (_, w) in enumerate(TABLE3) if w == u) for u in used]
        assert ours == theirs(sparsities), (target, rounds)
    jump = StageTable(one_row_per_round=True, tolerance=0.0)
    assert [jump.weights_at(r) for r in [0.999, 0.999]] == [TABLE3[1][1], TABLE3[2][1]]  # one row per round


def test_keep_count_at_the_float_boundaries() -> None:
    rho, kappa = authors_keep_fractions(exponential, 0.9999, 100)
    assert authors_keep_count(430500, kappa[24]) == 43049  # int(43049.99999999881)
    assert keep_count(430500, rho[24]) == 43050  # the paper's m·(1 − ρ) = 43,050 with the 1e-6 tolerance
    assert authors_keep_count(960, 1 - 0.9) == 95 and keep_count(960, 0.9) == 96
    net = mlp()  # m = 960
    exact = Panning(rounds=1, progress=False).prune(net, batch(), 0.9)
    authors = Panning(rounds=1, progress=False, selector="authors").prune(net, batch(), 0.9)
    assert kept(exact.masks) == exact.history[0].keep == 96
    assert kept(authors.masks) == authors.history[0].keep == 95


def test_authors_keep_rule_keeps_ties_at_the_threshold() -> None:
    scores = {"a": torch.tensor([3.0, 1.0, 2.0]), "b": torch.tensor([2.0, 0.5])}
    masks = select_at_threshold(scores, 2)  # threshold 2.0: both 2.0s are kept
    assert masks["a"].tolist() == [True, False, True] and masks["b"].tolist() == [True, False]
    with pytest.raises(ValueError, match="rank k=0"):
        select_at_threshold(scores, 0)


def test_rule_options_are_validated() -> None:
    with pytest.raises(ValueError, match="Unknown `selector` 'floor'"):
        Panning(selector="floor")
    with pytest.raises(ValueError, match="Unknown `stage_rule` 'table'"):
        Panning(stage_rule="table")
    with pytest.raises(ValueError, match="configure it directly"):
        Panning(weights=StageTable(), stage_rule="authors")
    with pytest.raises(ValueError, match="`reinit_linear` must be True or False"):
        Panning(reinit_linear=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`tolerance` must be a number"):
        StageTable(tolerance=-1.0)


# -- the Linear re-initialisation of the scoring copy -----------------------------------------------------------------
def test_reinit_linear_draws_xavier_from_the_seed_and_leaves_the_model() -> None:
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(3 * 6 * 6, 10), nn.ReLU(), nn.Linear(10, 4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = prunable_parameters(net)
    scoring = Panning(reinit_linear=True, seed=5).scoring_params(net, params)
    torch.manual_seed(5)  # the authors' code draws from the global RNG right after the seed, in module order
    expected = [nn.init.xavier_normal_(torch.empty(10, 108)), nn.init.xavier_normal_(torch.empty(4, 10))]
    assert torch.equal(scoring["2.weight"], expected[0]) and torch.equal(scoring["4.weight"], expected[1])
    assert scoring["0.weight"] is params["0.weight"]  # convolutions keep their weights
    x, y = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(4).repeat(2)
    a = get_pruner("snip_authors", seed=5, progress=False).prune(net, (x, y), 0.9).masks
    b = get_pruner("snip_authors", seed=5, progress=False, reinit_linear=False).prune(net, (x, y), 0.9).masks
    assert any(not torch.equal(a[n], b[n]) for n in a)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# -- the presets through prune, the callback and the CLI --------------------------------------------------------------
def test_presets_are_methods_with_the_authors_options() -> None:
    pruner = get_pruner("panning_authors")
    assert pruner.normalization == "authors" and pruner.selector.name == "authors" and pruner.stage_rule == "authors"
    assert pruner.masked_data_scores is False and pruner.reinit_linear is False
    synflow = pruner.scorers["synflow"]
    assert isinstance(synflow, SynFlow) and synflow.signed and synflow.abs_buffers and synflow.dtype == "float32"
    assert get_pruner("snip_authors").reinit_linear and get_pruner("snip_authors").normalization == "sum"
    assert get_pruner("grasp_authors").scorers["grasp"].factor == 2.0  # type: ignore[attr-defined]
    synflow_it = get_pruner("synflow_authors")
    assert synflow_it.resurrect is False and synflow_it.rounds == 100 and synflow_it.normalization == "none"
    default = get_pruner("panning")  # the paper's Algorithm 1 stays the default
    assert default.normalization == "rms" and default.selector.name == "top_k" and default.stage_rule == "paper"
    assert default.masked_data_scores is True
    assert get_pruner("panning_authors", normalization=None).normalization == "authors"  # None keeps the preset
    assert get_pruner("panning_authors", normalization="rms").normalization == "rms"  # explicit values override


def test_panning_authors_through_prune() -> None:
    result = get_pruner("panning_authors", rounds=4, progress=False).prune(mlp(), batch(), 0.995)
    # unmasked SNIP/GraSP: the same loss every round; ρ_i = 0.73, 0.93, 0.98, 0.995: the authors' stage lags one row
    assert len({r.loss for r in result.history}) == 1
    assert [r.weights for r in result.history] == [TABLE3[i][1] for i in (0, 1, 2, 3)]
    paper = Panning(rounds=4, progress=False).prune(mlp(), batch(), 0.995)
    assert [r.weights for r in paper.history] == [TABLE3[i][1] for i in (0, 2, 3, 4)]
    _, kappa = authors_keep_fractions(exponential, 0.995, 4)
    assert [r.keep for r in result.history] == [authors_keep_count(960, k) for k in kappa]  # no ties here
    masks = prune(mlp(), batch(), 0.995, method="panning_authors", rounds=4, progress=False)
    assert all(torch.equal(masks[n], result.masks[n]) for n in masks)


class _Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_panning_authors_through_the_callback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    original = PanningCallback.compute_masks

    def spy(self: PanningCallback, trainer: Any, pl_module: Any, pruner: Any, scoring_batch: Any, *args: Any) -> Any:
        seen.append((copy.deepcopy(pl_module.net), scoring_batch))
        return original(self, trainer, pl_module, pruner, scoring_batch, *args)

    monkeypatch.setattr(PanningCallback, "compute_masks", spy)
    cb = PanningCallback(target=0.995, method="panning_authors", options={"rounds": 4}, verbose=False, log_figure=False)
    assert cb.pruner.normalization == "authors" and cb.pruner.masked_data_scores is False  # from the method
    assert cb.hparams()["normalization"] == "authors"
    x, y = batch()
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[cb],
    )
    trainer.fit(_Net(), DataLoader(TensorDataset(x, y), batch_size=20))
    assert cb.result is not None and [r.weights for r in cb.result.history] == [TABLE3[i][1] for i in (0, 1, 2, 3)]
    net, scoring_batch = seen[0]
    expected = get_pruner("panning_authors", rounds=4, progress=False).prune(net, scoring_batch, 0.995).masks
    assert cb.masks is not None and all(torch.equal(cb.masks[f"net.{n}"].cpu(), expected[n]) for n in expected)
    assert PanningCallback(method="panning_authors", options={"normalization": "rms"}).pruner.normalization == "rms"


def test_panning_authors_through_the_cli(tmp_path: Path) -> None:
    text = yaml.safe_load((ROOT / "examples" / "lenet5_digits.yaml").read_text())
    for cb in text["trainer"]["callbacks"]:
        if "Panning" in cb["class_path"]:
            cb["init_args"].update({"method": "panning_authors", "verbose": False})
            cb["init_args"]["rounds"] = 3
    config = tmp_path / "authors.yaml"
    config.write_text(yaml.safe_dump(text))
    cli = cli_main(
        ["fit", "--config", str(config), "--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(tmp_path)]
    )
    pruner = next(c for c in cli.trainer.callbacks if isinstance(c, PanningCallback))
    assert pruner.method == "panning_authors" and pruner.pruner.normalization == "authors"
    assert pruner.result is not None and len({r.loss for r in pruner.result.history}) == 1
    total = sum(m.numel() for m in pruner.masks.values())  # type: ignore[union-attr]
    assert pruner.summary["kept_weights"] >= authors_keep_count(total, (1 - 0.98) ** 1.0)

