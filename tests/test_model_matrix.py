"""The default method on every common architecture (issue 27): a matrix of models × methods.

Each torchvision classification family (the smallest member, width- or depth-reduced through torchvision's own
configuration classes where they allow it), Hugging Face families built from tiny configs, and timm's test models
are pruned with the default Panning, RLPanning, SNIP, GraSP and SynFlow. Each must either prune to the exact keep
count (finite scores: the pruners check them) and keep the pruned weights at zero through two optimiser steps, or
raise a clear error naming the method, the module and a method that works. One model is built per family and
reused by every method (pruning never modifies it). The last test counts the passes of RLPanning against Panning.

Torchvision's VGG, AlexNet and Inception-v3 have fixed classifiers of 4096 units or 24M+ parameters at any input
size, so they are marked ``slow`` and deselected by default (``pytest -m slow`` runs them).
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_panning import Panning, prunable_parameters, prune
from lightning_panning.core import keep_count
from lightning_panning.core.enforce import MaskEnforcer

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = 4
TARGET = 0.8
METHODS = ("panning", "rlpanning", "snip", "grasp", "synflow")


@dataclass
class Case:
    """A model family: how to build its model and a scoring batch, and its loss when the default does not apply."""

    build: Callable[[], nn.Module]
    batch: Callable[[], Any]
    loss_fn: Callable[[nn.Module, Any], Tensor] | None = None


def images(size: int = 32, channels: int = 3) -> Callable[[], tuple[Tensor, Tensor]]:
    def make() -> tuple[Tensor, Tensor]:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(2 * CLASSES, channels, size, size, generator=generator), torch.arange(2 * CLASSES) % CLASSES

    return make


def token_batch(vocab: int = 64, length: int = 8, labels: str = "class") -> Callable[[], dict[str, Tensor]]:
    def make() -> dict[str, Tensor]:
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(1, vocab, (2 * CLASSES, length), generator=generator)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if labels == "class":
            batch["labels"] = torch.arange(2 * CLASSES) % CLASSES
        elif labels == "seq2seq":
            batch["labels"] = torch.randint(1, vocab, (2 * CLASSES, length - 2), generator=generator)
        return batch

    return make


def causal_lm_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["input_ids"][:, 1:].reshape(-1))


def seq2seq_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return model(**batch).loss


# ---------------------------------------------------------------------------------------------------------------------
# the models


def torchvision_cases() -> dict[str, Case]:
    from torchvision import models as tv
    from torchvision.models.convnext import CNBlockConfig
    from torchvision.models.densenet import DenseNet
    from torchvision.models.efficientnet import MBConvConfig
    from torchvision.models.regnet import BlockParams, RegNet
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    def tiny_vit() -> nn.Module:
        return tv.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                    num_classes=CLASSES)

    def tiny_swin() -> nn.Module:
        return tv.SwinTransformer(patch_size=[2, 2], embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=[2, 2],
                                  stochastic_depth_prob=0.0, num_classes=CLASSES)

    def tiny_maxvit() -> nn.Module:
        return tv.MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[16, 32],
                         block_layers=[1, 1], head_dim=8, stochastic_depth_prob=0.0, num_classes=CLASSES)

    def tiny_efficientnet() -> nn.Module:  # EfficientNet-B0's block types (SiLU, sigmoid-gated squeeze-excitation)
        setting = [MBConvConfig(1, 3, 1, 8, 8, 1), MBConvConfig(6, 3, 2, 8, 16, 2), MBConvConfig(6, 5, 2, 16, 24, 1)]
        return tv.EfficientNet(setting, dropout=0.2, num_classes=CLASSES)

    def tiny_regnet() -> nn.Module:  # RegNetY: grouped convolutions with squeeze-excitation
        params = BlockParams.from_init_params(depth=3, w_0=8, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25)
        return RegNet(params, num_classes=CLASSES)

    def tiny_convnext() -> nn.Module:
        return tv.ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=CLASSES)

    return {
        "resnet": Case(lambda: ResNet(BasicBlock, [1, 1, 1, 1], num_classes=CLASSES), images()),
        "resnext": Case(lambda: ResNet(Bottleneck, [1, 1, 1, 1], groups=8, width_per_group=4, num_classes=CLASSES),
                        images()),
        "wide_resnet": Case(lambda: ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=128, num_classes=CLASSES),
                            images()),
        "densenet": Case(lambda: DenseNet(8, (2, 2), 16, bn_size=2, num_classes=CLASSES), images()),
        "mobilenet_v2": Case(lambda: tv.mobilenet_v2(width_mult=0.25, num_classes=CLASSES), images()),
        "mobilenet_v3": Case(lambda: tv.mobilenet_v3_small(width_mult=0.25, num_classes=CLASSES), images()),
        "efficientnet": Case(tiny_efficientnet, images()),
        "regnet": Case(tiny_regnet, images()),
        "convnext": Case(tiny_convnext, images()),
        "shufflenet": Case(lambda: tv.shufflenet_v2_x0_5(num_classes=CLASSES), images()),
        "squeezenet": Case(lambda: tv.squeezenet1_1(num_classes=CLASSES), images(48)),
        "mnasnet": Case(lambda: tv.mnasnet0_5(num_classes=CLASSES), images()),
        "googlenet": Case(lambda: tv.googlenet(num_classes=CLASSES, aux_logits=False, init_weights=True), images()),
        "vit": Case(tiny_vit, images()),
        "swin": Case(tiny_swin, images()),
        "maxvit": Case(tiny_maxvit, images()),
    }


def heavy_torchvision_cases() -> dict[str, Case]:
    from torchvision import models as tv

    return {
        "vgg": Case(lambda: tv.vgg11_bn(num_classes=CLASSES), images()),
        "alexnet": Case(lambda: tv.alexnet(num_classes=CLASSES), images(64)),
        "inception_v3": Case(lambda: tv.inception_v3(num_classes=CLASSES, aux_logits=False, init_weights=True),
                             images(75)),
    }


def hugging_face_cases() -> dict[str, Case]:
    t = pytest.importorskip("transformers")
    t.utils.logging.set_verbosity_error()
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}

    def vit() -> nn.Module:
        config = t.ViTConfig(image_size=32, patch_size=8, num_labels=CLASSES, **small)
        return t.ViTForImageClassification(config)

    return {
        "hf_bert": Case(lambda: t.BertForSequenceClassification(t.BertConfig(
            vocab_size=64, max_position_embeddings=32, num_labels=CLASSES, **small)), token_batch()),
        "hf_gpt2": Case(lambda: t.GPT2LMHeadModel(t.GPT2Config(
            n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0)),
            token_batch(labels="none"), causal_lm_loss),
        "hf_t5": Case(lambda: t.T5ForConditionalGeneration(t.T5Config(
            vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
            decoder_start_token_id=0, pad_token_id=0)), token_batch(labels="seq2seq"), seq2seq_loss),
        "hf_vit": Case(vit, lambda: {"pixel_values": images()()[0], "labels": images()()[1]}),
        "hf_llama": Case(lambda: t.LlamaForCausalLM(t.LlamaConfig(
            vocab_size=64, max_position_embeddings=32, num_key_value_heads=1, **small)), token_batch(labels="none"),
            causal_lm_loss),
    }


def timm_cases() -> dict[str, Case]:
    timm = pytest.importorskip("timm")
    names = ("test_resnet", "test_efficientnet", "test_convnext", "test_vit", "test_byobnet")
    return {f"timm_{n[5:]}": Case(lambda n=n: timm.create_model(n, num_classes=CLASSES), images()) for n in names}


def _cases(group: Callable[[], dict[str, Case]]) -> Iterator[Any]:
    try:
        found = group()
    except pytest.skip.Exception:
        return
    for name, case in found.items():
        yield pytest.param(case, id=name)


# ---------------------------------------------------------------------------------------------------------------------
# the checks


_AGENT: list[Any] = []


def agent() -> Any:
    """The shipped policy, loaded once for the whole matrix."""
    if not _AGENT:
        from lightning_panning.rl.agent import load_policy

        _AGENT.append(load_policy("default"))
    return _AGENT[0]


def prune_with(method: str, model: nn.Module, case: Case, batch: Any) -> dict[str, Tensor]:
    options: dict[str, Any] = {"rounds": 2, "per_class": 2}
    if case.loss_fn is not None:
        options["loss_fn"] = case.loss_fn
    if method == "rlpanning":
        from lightning_panning.rl.agent import rl_prune

        return rl_prune(model, batch, TARGET, agent(), **options).masks
    if method in ("snip", "grasp"):
        options.pop("rounds")
    return prune(model, batch, TARGET, method=method, progress=False, **options)


def train_steps(model: nn.Module, masks: dict[str, Tensor], case: Case, batch: Any, steps: int = 2) -> None:
    """Two SGD steps (momentum, weight decay) with the masks enforced, as the callbacks do."""
    state = copy.deepcopy(model.state_dict())  # with its metadata (MNASNet checks its version on loading)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    enforcer = MaskEnforcer(model, masks)
    enforcer.attach([optimizer])
    enforcer.apply()
    model.train()
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            if case.loss_fn is not None:
                loss = case.loss_fn(model, batch)
            elif isinstance(batch, dict):
                loss = model(**batch).loss
            else:
                loss = F.cross_entropy(model(batch[0]), batch[1])
            loss.backward()
            optimizer.step()
        for name, mask in masks.items():
            weight = model.get_parameter(name).detach()
            assert bool((weight[~mask] == 0).all()), name
    finally:
        enforcer.detach()
        model.load_state_dict(state)  # the next method prunes the model as built


def check_methods(case: Case) -> None:
    torch.manual_seed(0)
    model = case.build()
    batch = case.batch()
    params = prunable_parameters(model)
    total = sum(p.numel() for p in params.values())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for method in METHODS:
        try:
            masks = prune_with(method, model, case, batch)
        except ValueError as err:  # allowed: a clear error that names the method and one that works
            text = str(err)
            assert method in text.lower() or "grasp" in text.lower(), text
            assert "method=" in text, text
            continue
        assert set(masks) == set(params), method
        assert sum(int(m.sum()) for m in masks.values()) == keep_count(total, TARGET), method
        for name, value in model.state_dict().items():  # scoring leaves the model exactly as found
            assert torch.equal(value, state[name]), (method, name)
        train_steps(model, masks, case, batch)


@pytest.mark.parametrize("case", list(_cases(torchvision_cases)))
def test_torchvision_family(case: Case) -> None:
    check_methods(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(_cases(heavy_torchvision_cases)))
def test_heavy_torchvision_family(case: Case) -> None:
    check_methods(case)


@pytest.mark.parametrize("case", list(_cases(hugging_face_cases)))
def test_hugging_face_family(case: Case) -> None:
    check_methods(case)


@pytest.mark.parametrize("case", list(_cases(timm_cases)))
def test_timm_family(case: Case) -> None:
    check_methods(case)


# ---------------------------------------------------------------------------------------------------------------------
# the cost of RLPanning


def test_rlpanning_makes_the_passes_of_panning_and_one_ones_pass_per_round() -> None:
    """RLPanning's observation costs no data pass Panning does not make: counted by a forward hook, not timed.

    Per round both make one forward + (double) backward on the scoring batch and one SynFlow ones-pass; RLPanning
    adds the effective-sparsity ones-pass of its observation (one sample) and, after the last round, one gradient
    pass (no double backward) for the final reward. Counted in floating-point operations the whole run stays within
    1.2 × Panning's.
    """
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models.resnet import BasicBlock, ResNet

    from lightning_panning.core import get_pruner
    from lightning_panning.rl.agent import rl_prune

    rounds = 5
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=CLASSES)
    x, y = images()()
    passes: collections.Counter[str] = collections.Counter()

    def count(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        passes["batch" if args[0].shape[0] == x.shape[0] else "one sample"] += 1

    model.register_forward_hook(count)
    with FlopCounterMode(display=False) as flops:
        Panning(rounds=rounds, per_class=2, progress=False).prune(model, (x, y), 0.9)
    panning, panning_flops = dict(passes), flops.get_total_flops()
    passes.clear()
    with FlopCounterMode(display=False) as flops:
        rl_prune(model, (x, y), 0.9, agent(), pruner=get_pruner("panning", rounds=rounds, per_class=2))
    rl, rl_flops = dict(passes), flops.get_total_flops()
    assert panning == {"batch": rounds, "one sample": rounds}  # one gradient pass and one SynFlow pass per round
    assert rl == {"batch": rounds + 1, "one sample": 2 * rounds}
    assert rl_flops <= 1.2 * panning_flops, (rl_flops, panning_flops)
