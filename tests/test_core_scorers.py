"""Scorer contract and maths (issue 2)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lightning_panning.core import (
    SCORERS,
    SNIP,
    GraSP,
    Panning,
    ScoringContext,
    SynFlow,
    get_scorer,
    prunable_parameters,
)
from lightning_panning.core.scorers import Needs, Scorer, ScorerOutput, register_scorer


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 8),
        nn.ReLU(),
        nn.Linear(8, 3),
    )


def small_batch(n_per_class: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(3 * n_per_class, 1, 6, 6, generator=g), torch.arange(3).repeat(n_per_class)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "rng": torch.get_rng_state(),
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    assert a["modes"] == b["modes"]
    assert a["requires_grad"] == b["requires_grad"]
    for ga, gb in zip(a["grads"], b["grads"], strict=False):
        assert (ga is None and gb is None) or torch.equal(ga, gb)
    assert torch.equal(a["rng"], b["rng"]), "the global RNG state changed"


@pytest.mark.parametrize("name", sorted(SCORERS))
@pytest.mark.parametrize("masked", [False, True])
def test_scorer_contract(name: str, masked: bool) -> None:
    model = small_cnn()
    model.eval()  # a non-default mode that must survive
    model[0].weight.requires_grad_(False)  # a frozen layer must stay frozen
    model[5].weight.grad = torch.ones_like(model[5].weight)  # an existing .grad must stay
    model[1].running_mean.fill_(0.3)
    params = prunable_parameters(model)
    masks = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(3)) > 0.5 for n, p in params.items()}
    before = snapshot(model)
    scorer = get_scorer(name)

    def run() -> ScorerOutput:  # what the Panning loop calls every round
        keep = sum(p.numel() for p in params.values()) // 2  # the loop passes the round's keep count (PHEW reads it)
        ctx = ScoringContext(model, params, masks if masked else None, small_batch(), seed=7, keep=keep)
        return scorer.scores(ctx)

    first, second = run(), run()
    assert_same(before, snapshot(model))
    for part in ("saliency", "keep"):
        a, b = getattr(first, part), getattr(second, part)
        assert set(a) == set(params)
        for n, p in params.items():
            assert a[n].shape == p.shape and torch.isfinite(a[n]).all()
            assert torch.equal(a[n], b[n]), f"{name} is not deterministic on {n}"
    for n in params:
        assert torch.equal(first.keep[n], scorer.keep_score(first.saliency[n]))

    def loop() -> dict[str, torch.Tensor]:  # and through the loop itself (2 rounds: the masked network too)
        return Panning([scorer], {scorer.label: 1.0}, rounds=2, progress=False, seed=7).prune(
            model, small_batch(), 0.5
        ).masks

    masks_a, masks_b = loop(), loop()
    assert_same(before, snapshot(model))
    assert all(torch.equal(masks_a[n], masks_b[n]) for n in params)


def test_snip_matches_manual_gradient() -> None:
    model = small_cnn().eval()  # eval: no dropout/batch stats so a plain computation agrees
    params = prunable_parameters(model)
    x, y = small_batch()
    ctx = ScoringContext(model, params, None, (x, y), train_mode=False)
    scores = SNIP()(ctx)
    reference = copy.deepcopy(model)
    loss = nn.functional.cross_entropy(reference(x) / 200.0, y)
    grads = torch.autograd.grad(loss, [dict(reference.named_parameters())[n] for n in params])
    for (n, p), g in zip(params.items(), grads, strict=False):
        torch.testing.assert_close(scores[n], (g * p.detach()).abs())


def test_grasp_hg_matches_autograd_hvp() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    params = prunable_parameters(model)
    x, y = torch.randn(9, 5), torch.arange(3).repeat(3)
    names = list(params)
    others = {n: p.detach() for n, p in model.named_parameters() if n not in params}

    def loss_of(*weights: torch.Tensor) -> torch.Tensor:
        tensors = {**others, **dict(zip(names, weights, strict=False))}
        out = torch.func.functional_call(model, tensors, (x,))
        return nn.functional.cross_entropy(out / 200.0, y)

    primals = tuple(params[n].detach().clone() for n in names)
    leaves = [p.clone().requires_grad_() for p in primals]
    g = torch.autograd.grad(loss_of(*leaves), leaves)
    _, hg = torch.autograd.functional.hvp(loss_of, primals, tuple(gi.detach() for gi in g))
    ctx = ScoringContext(model, params, None, (x, y))
    for n, h in zip(names, hg, strict=False):
        torch.testing.assert_close(ctx.hvp[n], h, rtol=1e-4, atol=1e-10)
    improved = GraSP()(ctx)
    original = GraSP(variant="original")(ctx)
    for n, h, p in zip(names, hg, primals, strict=False):
        torch.testing.assert_close(improved[n], (h * p).abs(), rtol=1e-4, atol=1e-10)
        # GraSP removes the largest -Hg⊙θ, so its keep-score is +Hg⊙θ (signed)
        torch.testing.assert_close(original[n], h * p, rtol=1e-4, atol=1e-10)


def test_synflow_closed_form_two_layer_linear() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 3, bias=False))
    w1, w2 = model[0].weight.detach().abs(), model[1].weight.detach().abs()
    params = prunable_parameters(model)
    scores = SynFlow()(ScoringContext(model, params, None, example_input=torch.zeros(2, 4)))
    # R = 1ᵀ |W2| |W1| 1  ⇒  S(W1_ij) = (1ᵀ|W2|)_i |W1_ij|,  S(W2_ki) = (|W1| 1)_i |W2_ki|
    torch.testing.assert_close(scores["0.weight"], w2.sum(0)[:, None] * w1)
    torch.testing.assert_close(scores["1.weight"], (w1.sum(1))[None, :] * w2)
    assert scores["0.weight"].dtype == torch.float32  # small path sums stay in float32


def test_synflow_does_not_overflow_on_vgg19() -> None:
    from lightning_panning.models import VGG19

    model = VGG19(num_classes=10)
    with torch.no_grad():  # scale each of the 17 layers by 8: the float32 path sum (~4e25 at init) overflows
        for p in prunable_parameters(model).values():
            p.mul_(8.0)
    linearised = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in linearised.parameters():
            p.abs_()
        assert not torch.isfinite(linearised(torch.ones(1, 3, 32, 32)).sum()), "premise: float32 overflows"
    params = prunable_parameters(model)
    scores = SynFlow()(ScoringContext(model, params, None, example_input=torch.zeros(1, 3, 32, 32)))
    assert all(torch.isfinite(s).all() and (s > 0).any() for s in scores.values())
    assert all(s.dtype == torch.float64 for s in scores.values())  # the float64 fallback ran


def test_snip_and_grasp_share_one_forward() -> None:
    model = small_cnn()
    calls = []
    model[0].register_forward_hook(lambda *_: calls.append(1))
    params = prunable_parameters(model)
    ctx = ScoringContext(model, params, None, small_batch(), needs_hvp=True)
    SNIP()(ctx)
    GraSP()(ctx)
    assert len(calls) == 1


def test_masked_scoring_and_resurrection_scores() -> None:
    model = small_cnn().eval()
    params = prunable_parameters(model)
    masks = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in params.items()}
    masks["0.weight"][:] = True
    masks["5.weight"][:4] = True
    masks["7.weight"][:] = True
    ctx = ScoringContext(model, params, masks, small_batch(), train_mode=False)
    snip = SNIP()(ctx)
    # removed weights of layer 5 still get scores (gradient at c⊙w times the original w)
    assert (snip["5.weight"][4:] > 0).any()
    no_res = SNIP()(ScoringContext(model, params, masks, small_batch(), train_mode=False, resurrect=False))
    assert (no_res["5.weight"][4:] == 0).all()


def test_missing_labels_is_a_clear_error() -> None:
    model = small_cnn()
    params = prunable_parameters(model)
    x, _ = small_batch()
    with pytest.raises(ValueError, match="needs integer labels"):
        SNIP()(ScoringContext(model, params, None, x))
    with pytest.raises(ValueError, match="needs data"):
        SNIP()(ScoringContext(model, params, None, None))
    # SynFlow only needs the input shape
    assert set(SynFlow()(ScoringContext(model, params, None, x))) == set(params)


def test_non_finite_scores_name_scorer_and_layer() -> None:
    model = small_cnn()
    with torch.no_grad():
        model[5].weight[0, 0] = float("nan")
    params = prunable_parameters(model)
    with pytest.raises(ValueError, match=r"'magnitude'.*'5\.weight'.*1 NaN"):
        get_scorer("magnitude")(ScoringContext(model, params, None, small_batch()))


def test_unknown_scorer_and_bad_variant() -> None:
    with pytest.raises(ValueError, match="Unknown scorer 'snipp'.*allowed"):
        get_scorer("snipp")
    with pytest.raises(ValueError, match="`variant`.*'improved' or 'original'"):
        GraSP(variant="signed")  # type: ignore[arg-type]


def test_new_scorer_is_one_small_subclass() -> None:
    @register_scorer("test_gradient_magnitude")
    class GradMagnitude(Scorer):
        needs = Needs.GRAD

        def saliency(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
            return dict(ctx.grad)

    try:
        model = small_cnn()
        params = prunable_parameters(model)
        scores = get_scorer("test_gradient_magnitude")(ScoringContext(model, params, None, small_batch()))
        assert set(scores) == set(params)
    finally:
        SCORERS.pop("test_gradient_magnitude")


def test_scorers_declare_what_they_need() -> None:
    assert [get_scorer(n).needs_data for n in ("snip", "grasp", "grasp_original", "synflow", "magnitude", "random")] == [
        True, True, True, False, False, False
    ]

    class OwnPass(Scorer):  # computes its own gradient from ctx.batch: declares it
        needs_data = True

        def saliency(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
            return dict(ctx.theta)

    assert OwnPass.needs_data and Panning([OwnPass()], rounds=1).needs_data
    with pytest.raises(ValueError, match=r"Scorers \['OwnPass'\] need data"):
        Panning([OwnPass()], rounds=1, progress=False).prune(small_cnn(), None, 0.5)


def test_cached_is_the_public_caching_seam() -> None:
    model = small_cnn()
    params = prunable_parameters(model)
    shared: dict = {}
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 42

    a = ScoringContext(model, params, None, small_batch(), shared=shared)
    b = ScoringContext(model, params, None, small_batch(), shared=shared)
    assert a.cached("mine", compute) == a.cached("mine", compute) == 42 and len(calls) == 1  # once per context
    b.cached("mine", compute)
    assert len(calls) == 2  # a new context (a new mask) computes again
    a.cached("unmasked", compute, mask_independent=True)
    b.cached("unmasked", compute, mask_independent=True)
    assert len(calls) == 3  # unless the result does not depend on the mask
    unmasked_a = ScoringContext(model, params, None, small_batch(), masked_data_scores=False, shared=shared)
    unmasked_b = ScoringContext(model, params, None, small_batch(), masked_data_scores=False, shared=shared)
    assert unmasked_a.loss is None
    assert unmasked_a.grad is unmasked_b.grad and unmasked_b.loss is not None  # SNIP's pass shared the same way
