"""PX (Iurada et al. 2024): the formula by hand, the models it prunes, the ones it refuses, chunks and contracts."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_panning.core import METHODS, PX, PXError, ScoringContext, get_pruner, prunable_parameters, prune
from lightning_panning.core.schedules import keep_count
from lightning_panning.models import VGG, LeNet5, ResNet20


def images(n: int, shape: tuple[int, ...] = (1, 28, 28), classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, *shape, generator=g), torch.arange(n) % classes


def kept(masks: dict[str, torch.Tensor]) -> int:
    return sum(int(m.sum()) for m in masks.values())


def test_saliency_is_the_path_formula_on_a_two_layer_network() -> None:
    """Linear(4, 8) → ReLU → Linear(8, 3), the second the output layer (untouched): by hand,

    gates g_s = 1[W₁x_s + b₁ > 0]; z₁ = W₂ (g_s ⊙ (1·x_s² + 1)) + b₂; z₂ = W₂ (W₁² 1 + b₁²) + b₂ (the same for all s);
    ∂Σ z₁·z₂/∂(W₁²)[i, j] = Σ_s (W₂ᵀ z₁_s)[i]; ∂/∂W₂[k, i] = Σ_s z₁_s[k] · h[i] with h = W₁² 1 + b₁².
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    w1, b1, w2, b2 = (p.detach() for p in net.parameters())
    gates = ((x @ w1.T + b1) > 0).double()
    z1 = (gates * (x.pow(2) @ torch.ones_like(w1).T + 1.0)) @ w2.T + b2
    h = w1.pow(2).sum(dim=1) + b1.pow(2)
    expected_w1 = (z1 @ w2).sum(dim=0)[:, None].expand_as(w1).abs() * w1.pow(2)
    expected_w2 = (z1.sum(dim=0)[:, None] * h[None, :]).abs() * w2.pow(2)
    ctx = ScoringContext(net, prunable_parameters(net), batch=(x, y))
    scores = PX()(ctx)
    torch.testing.assert_close(scores["0.weight"], expected_w1)
    torch.testing.assert_close(scores["2.weight"], expected_w2)
    # their name rule: nothing here is named 'bn' or 'fc', so the output layer is squared and set to ones too
    theirs = PX(untouched=("bn", "fc"))(ScoringContext(net, prunable_parameters(net), batch=(x, y)))
    assert not torch.allclose(theirs["2.weight"], expected_w2)


def test_removed_weights_score_zero_and_masks_enter_every_pass() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    params = prunable_parameters(net)
    masks = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) > 0.4 for n, p in params.items()}
    batch = (torch.randn(6, 4), torch.arange(6) % 3)
    without = PX()(ScoringContext(net, params, masks, batch=batch, resurrect=False))
    assert all(bool((without[n][~masks[n]] == 0).all()) for n in masks)
    with_resurrection = PX()(ScoringContext(net, params, masks, batch=batch, resurrect=True))
    assert any(bool((with_resurrection[n][~masks[n]] > 0).any()) for n in masks)
    # the same where kept: resurrection only drops the mask factor
    for n in masks:
        torch.testing.assert_close(with_resurrection[n][masks[n]], without[n][masks[n]])


def test_chunks_add_up_to_the_whole_set() -> None:
    model, batch = LeNet5(num_classes=4), images(12)
    whole = get_pruner("px", rounds=3, progress=False).prune(model, batch, 0.95)
    chunked = get_pruner("px", rounds=3, progress=False, micro_batch=4).prune(model, batch, 0.95)
    agree = sum(int((whole.masks[n] == chunked.masks[n]).sum()) for n in whole.masks)
    assert agree / sum(m.numel() for m in whole.masks.values()) > 0.999  # summation order only


def models() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    from torchvision.models import resnet18

    return {
        "lenet5": (lambda: LeNet5(num_classes=4), (1, 28, 28)),
        "vgg11_bn": (lambda: VGG(depth=11, num_classes=4), (3, 32, 32)),
        "resnet20": (lambda: ResNet20(num_classes=4), (3, 32, 32)),
        # 64×64, not 32×32: at 1×1 feature maps the all-ones pass's BatchNorm (train mode, identical samples) gives
        # the weights before it zero gradients, in their code too, and layer4 is removed whole (docs/differences.md)
        "torchvision_resnet18": (lambda: resnet18(num_classes=4), (3, 64, 64)),
    }


@pytest.mark.parametrize("method", ["px", "px_authors"])
@pytest.mark.parametrize("name", ["lenet5", "vgg11_bn", "resnet20", "torchvision_resnet18"])
def test_prunes_the_models_exactly_and_leaves_them_alone(method: str, name: str) -> None:
    build, shape = models()[name]
    torch.manual_seed(0)
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    batch = images(2, shape=shape)
    # px_authors on torchvision's ResNet-18 at T = 2: their name rule squares `downsample.1` (a BatchNorm not named
    # 'bn'), and on this project's current CI machine (AVX512) every score of round 2 comes out exactly 0, so their
    # tie rule keeps no weight (the pruner warns that every fused score is zero; the previous machine's CI passed at
    # T = 2, and the same failure shows at commit 0e667e6 here: the rounding, not a change). T = 1 and 3 keep the count.
    # T = 3 there.
    rounds = 3 if (name, method) == ("torchvision_resnet18", "px_authors") else 2
    masks = prune(model, batch, 0.9, method=method, rounds=rounds, progress=False)
    total = sum(p.numel() for p in prunable_parameters(model).values())
    if METHODS[method].get("selector") == "synaptic_flow":  # their count m − int(0.9 m); ties at it removed
        assert total - int(0.9 * total) - 2 <= kept(masks) <= total - int(0.9 * total)
    else:
        assert kept(masks) == keep_count(total, 0.9)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in model.parameters())
    again = prune(model, batch, 0.9, method=method, rounds=rounds, progress=False)
    assert all(torch.equal(masks[n], again[n]) for n in masks)


def test_output_layer_and_normalisation_stay_untouched_by_default() -> None:
    """The output layer is found by the forward pass, not by name: torchvision's `fc`, our LeNet5's last Linear."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=4)
    batch = images(2, shape=(3, 32, 32))
    ctx = ScoringContext(model, prunable_parameters(model), batch=batch)
    scorer = PX()
    _, output_layer = scorer._record_gates(ctx, ctx.model_input())
    assert output_layer == "fc"
    untouched = scorer._untouched_names(model, output_layer)
    assert {"fc.weight", "fc.bias", "bn1.weight", "layer1.0.bn2.bias", "layer2.0.downsample.1.weight"} <= untouched
    assert "conv1.weight" not in untouched and "layer2.0.downsample.0.weight" not in untouched
    lenet = LeNet5(num_classes=4)
    ctx = ScoringContext(lenet, prunable_parameters(lenet), batch=images(2))
    assert scorer._record_gates(ctx, ctx.model_input())[1] == "classifier.2"


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3)), "'gelu'"),
        (lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)), "'tanh'"),
        (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU6(), nn.Linear(8, 3)), "'hardtanh'"),
    ],
)
def test_activations_outside_relu_get_a_clear_error(build: Callable[[], nn.Module], named: str) -> None:
    with pytest.raises(PXError, match=f"forward pass calls {named}.*method='synflow'"):
        prune(build(), (torch.randn(6, 4), torch.arange(6) % 3), 0.9, method="px", rounds=2, progress=False)


def test_mobilenet_and_a_hugging_face_model_are_refused_by_name() -> None:
    from torchvision.models import mobilenet_v2

    with pytest.raises(PXError, match="hardtanh"):  # ReLU6
        prune(mobilenet_v2(width_mult=0.25, num_classes=4), images(2, shape=(3, 32, 32)), 0.9, method="px",
              rounds=1, progress=False)
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32, num_labels=3)
    bert = transformers.BertForSequenceClassification(config)
    ids = torch.randint(0, 64, (4, 8), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones(4, 8, dtype=torch.long), "labels": torch.arange(4) % 3}
    with pytest.raises(PXError, match="PX supports networks whose nonlinearities are ReLU"):
        prune(bert, batch, 0.8, method="px", rounds=1, progress=False)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="`untouched` must be 'auto' or a sequence"):
        PX(untouched="bn")
    with pytest.raises(ValueError, match="non-empty name fragments"):
        PX(untouched=("bn", ""))
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(PXError, match="needs a scoring set"):
        PX()(ScoringContext(net, prunable_parameters(net), example_input=torch.zeros(2, 4)))
    assert repr(PX(untouched=("bn", "fc"))) == "PX(untouched=('bn', 'fc'))"


#: their checkout beside this repository (``PX_REPO`` overrides)
PX_REPO = Path(os.environ.get("PX_REPO", Path(__file__).resolve().parents[2] / "authors-px"))


@pytest.mark.skipif(not (PX_REPO / "lib" / "pruners.py").is_file(), reason="no iurada/px-ntk-pruning checkout")
def test_px_parity_quick(tmp_path: Path) -> None:
    from benchmarks.authors_parity import main

    record = main(["--px-repo", str(PX_REPO), "--quick", "--out", str(tmp_path)])["px"]
    assert (tmp_path / "authors_parity_px_quick.md").is_file()
    for row in record["rows"]:
        assert row["first_round_scores_bitwise_equal"], row
        assert row["px_authors"]["differing"] == 0
