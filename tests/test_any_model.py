"""Any model out of the box (issue 12): the parameter rule for modern layers, the data-free signal of token-input
models, keyword/dict inputs, the bad-input errors, and real model code (Hugging Face, nn.TransformerEncoder,
Lightning's demo Transformer, torchvision ResNet-18 and ViT-B/16) pruned with the default Panning in ``Trainer.fit``.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_panning.callbacks import PanningCallback
from lightning_panning.core import (
    DefaultRule,
    ModelInput,
    Panning,
    ScoringContext,
    SynFlow,
    effective_masks,
    effective_sparsity,
    model_input,
    prunable_parameters,
    prune,
    selection_report,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------------------------------------------------------------
# small models


class TokenMLP(nn.Module):
    """Embedding → Linear → ReLU → Linear, no biases: connectivity is easy to state by hand."""

    def __init__(self, vocab: int = 7, dim: int = 4, hidden: int = 5, out: int = 3) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, out, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(self.emb(ids))))


class EncoderLM(nn.Module):
    """A causal ``nn.TransformerEncoder`` language model: token + learned position embeddings, pre-norm layers."""

    def __init__(self, vocab: int = 48, dim: int = 16, layers: int = 2, max_len: int = 32, final_norm_only: bool = False):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.1, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = None if final_norm_only else nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        h = self.tok(ids) + self.pos(torch.arange(length, device=ids.device))[None]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=ids.device)
        h = self.norm(self.encoder(h, mask=mask, is_causal=True))
        return h if self.head is None else self.head(h)


def tokens(n: int = 24, length: int = 12, vocab: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(seed))


def dense_masks(model: nn.Module, **kwargs: Any) -> dict[str, torch.Tensor]:
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(model, **kwargs).items()}


def transformers_or_skip() -> Any:
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    return transformers


def tiny_gpt2() -> nn.Module:
    t = transformers_or_skip()
    config = t.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    return t.GPT2LMHeadModel(config)


def tiny_bert(num_labels: int = 3) -> nn.Module:
    t = transformers_or_skip()
    config = t.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=num_labels,
    )
    return t.BertForSequenceClassification(config)


# ---------------------------------------------------------------------------------------------------------------------
# 1. the default parameter rule


def test_default_rule_covers_attention_weights_and_leaves_embeddings_selectable() -> None:
    lm = EncoderLM()
    names = list(prunable_parameters(lm))
    assert names == [
        f"encoder.layers.{i}.{p}"
        for i in range(2)
        for p in ("self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight")
    ] + ["head.weight"]
    # separate Q/K/V projections when key/value dimensions differ
    cross = nn.MultiheadAttention(8, 2, kdim=4, vdim=6)
    assert list(prunable_parameters(cross)) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"]
    assert list(prunable_parameters(cross, predicate=DefaultRule(attention=False))) == ["out_proj.weight"]
    # embeddings: by the rule's option, or by name
    with_embeddings = list(prunable_parameters(lm, predicate=DefaultRule(embeddings=True)))
    assert with_embeddings[:2] == ["tok.weight", "pos.weight"] and with_embeddings[2:] == names
    assert "pos.weight" not in prunable_parameters(lm, predicate=DefaultRule(embeddings=True), exclude="pos.*")
    assert list(prunable_parameters(lm, include=["tok.weight", "head.weight"])) == ["tok.weight", "head.weight"]
    assert "head.weight" not in prunable_parameters(lm, exclude="head.*")
    with pytest.raises(ValueError, match="`embeddings` must be True or False"):
        DefaultRule(embeddings="yes")  # type: ignore[arg-type]


def test_hf_conv1d_and_tied_head_are_pruned_once() -> None:
    gpt2 = tiny_gpt2()
    params = prunable_parameters(gpt2)
    assert "transformer.h.0.attn.c_attn.weight" in params and "transformer.h.1.mlp.c_proj.weight" in params
    # lm_head is tied to the token embedding: one parameter, under its first name, counted once
    assert "transformer.wte.weight" in params and "lm_head.weight" not in params
    assert sum(p.numel() for p in params.values()) == sum(
        p.numel() for n, p in gpt2.named_parameters() if n in params
    )
    report = selection_report(gpt2, params)
    assert report.tied == {"transformer.wte.weight": ["lm_head.weight"]}
    assert "tied, pruned once: lm_head.weight = transformer.wte.weight" in report.line
    # excluding the head by any of its names leaves the tied weight dense
    assert "transformer.wte.weight" not in prunable_parameters(gpt2, exclude="lm_head.*")
    # masks keep the tie: pruning the shared weight prunes both uses
    masks = prune(gpt2, None, 0.8, method="synflow", rounds=2, example_input=tokens(2, 8, 64), progress=False)
    assert "lm_head.weight" not in masks
    from lightning_panning import apply_masks

    apply_masks(gpt2, masks)
    assert torch.equal(gpt2.lm_head.weight == 0, ~masks["transformer.wte.weight"])


def test_report_and_warning_name_large_dense_weights() -> None:
    bert = tiny_bert()
    params = prunable_parameters(bert)
    report = selection_report(bert, params)
    assert "bert.embeddings.word_embeddings.weight" in report.large
    assert "bert.embeddings.token_type_embeddings.weight" not in report.large  # 2 × 32: small
    assert report.line.startswith(f"prunable: {len(params)} tensors")
    assert "left dense: 3 tensors" in report.line
    batch = {"input_ids": tokens(6, 8, 64), "attention_mask": torch.ones(6, 8, dtype=torch.long),
             "labels": torch.arange(6) % 3}
    with pytest.warns(UserWarning, match=r"leaves 2 large weight tensor\(s\).*word_embeddings.*Prune them"):
        prune(bert, batch, 0.8, rounds=1, progress=False)
    with warnings.catch_warnings():  # excluded by name: the user chose, no warning
        warnings.filterwarnings("error", message=".*large weight tensor")
        prune(bert, batch, 0.8, rounds=1, progress=False, exclude="*embeddings*")


def test_all_zero_layers_stay_dense_and_vanishing_scores_are_reported() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    nn.init.zeros_(net[2].weight)  # a zero-initialised head, as torchvision's ViT has
    assert list(prunable_parameters(net)) == ["0.weight"]
    assert list(prunable_parameters(net, predicate=DefaultRule(zeros=True))) == ["0.weight", "2.weight"]
    assert selection_report(net, prunable_parameters(net)).zero == ["2.weight"]
    with pytest.warns(UserWarning, match="SynFlow scores of Sequential are all zero"):
        prune(net, None, 0.5, method="synflow", rounds=1, example_input=torch.zeros(1, 4), progress=False)
    batch = (torch.randn(6, 4), torch.arange(6) % 3)
    with pytest.warns(UserWarning, match=r"Round 1: every fused score of Sequential is zero.*initialise it"):
        prune(net, batch, 0.5, rounds=1, progress=False)


# ---------------------------------------------------------------------------------------------------------------------
# 2. the data-free signal of token-input models


def test_synflow_treats_the_token_embedding_as_an_input_layer_fed_every_token() -> None:
    torch.manual_seed(0)
    model = TokenMLP()
    params = prunable_parameters(model, predicate=DefaultRule(embeddings=True))
    ids = tokens(3, 5, vocab=7)
    scores = SynFlow()(ScoringContext(model, params, None, example_input=ids))
    # the same network with the embedding written as a Linear on one-hot vectors, fed all-ones (SynFlow's definition)
    linear = nn.Sequential(nn.Linear(7, 4, bias=False), model.fc1, nn.ReLU(), model.fc2)
    with torch.no_grad():
        linear[0].weight.copy_(model.emb.weight.T)
    reference = SynFlow()(ScoringContext(linear, prunable_parameters(linear), None, example_input=torch.ones(1, 5, 7)))
    torch.testing.assert_close(scores["emb.weight"], reference["0.weight"].T)
    torch.testing.assert_close(scores["fc1.weight"], reference["1.weight"])
    torch.testing.assert_close(scores["fc2.weight"], reference["3.weight"])
    assert bool((scores["emb.weight"] > 0).all())  # every row is scored, whatever the example's token ids


def test_synflow_and_panning_on_a_transformer_language_model() -> None:
    torch.manual_seed(0)
    lm = EncoderLM()
    params = prunable_parameters(lm)
    scores = SynFlow()(ScoringContext(lm, params, None, example_input=tokens()))
    for name, s in scores.items():
        assert torch.isfinite(s).all() and bool((s > 0).any()), name
    # Q and K get scores too: the learned position embedding makes positions differ
    in_proj = scores["encoder.layers.0.self_attn.in_proj_weight"]
    assert bool((in_proj[:16] > 0).any()) and bool((in_proj[16:32] > 0).any())

    def lm_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        logits = model(batch[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))

    result = Panning(rounds=3, loss_fn=lm_loss, progress=False, track_effective=True).prune(lm, tokens(), 0.8)
    assert all(r.effective_sparsity is not None and r.effective_sparsity < 1.0 for r in result.history)
    assert math.isclose(result.sparsity, 0.8, abs_tol=1e-3)


def test_effective_sparsity_of_a_token_model_matches_the_paths_by_hand() -> None:
    model = TokenMLP()
    masks = dense_masks(model, predicate=DefaultRule(embeddings=True))
    masks["emb.weight"][:, 1] = False  # embedding dimension 1 carries nothing ...
    masks["fc1.weight"][2, :] = False  # ... hidden unit 2 receives nothing
    eff = effective_masks(model, masks, tokens(2, 3, vocab=7))
    expected = {n: m.clone() for n, m in masks.items()}
    expected["fc1.weight"][:, 1] = False  # reads the empty embedding dimension
    expected["fc2.weight"][:, 2] = False  # reads the dead hidden unit
    for name in masks:
        assert torch.equal(eff[name], expected[name]), name


def test_effective_sparsity_is_connectivity_through_layernorm_and_attention() -> None:
    lm = EncoderLM()
    ids = tokens(2, 8)
    dense = effective_sparsity(lm, dense_masks(lm), ids)
    assert dense.effective == 0.0  # Q and K included, although Σ LayerNorm(x) is constant and softmax saturates
    # a model whose output is a LayerNorm: its sum is constant, its inputs are still connected
    assert effective_sparsity(EncoderLM(final_norm_only=True), dense_masks(EncoderLM(final_norm_only=True)), ids).effective == 0.0
    # a (log-)softmax output: Σ log_softmax of equal logits is constant, the network is still connected
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4), nn.LogSoftmax(-1))
    assert effective_sparsity(classifier, dense_masks(classifier), torch.zeros(1, 16)).effective == 0.0
    masks = dense_masks(lm)
    masks["encoder.layers.1.linear1.weight"][:] = False  # the second feed-forward block is cut at its input ...
    eff = effective_sparsity(lm, masks, ids)
    assert eff.layer_effective_density["encoder.layers.1.linear2.weight"] == 0.0  # ... so its output layer is dead
    assert eff.layer_effective_density["encoder.layers.1.self_attn.in_proj_weight"] == 1.0  # the residual path lives
    assert eff.layer_effective_density["head.weight"] == 1.0


# ---------------------------------------------------------------------------------------------------------------------
# 3. dict batches and keyword forwards


class KeywordTagger(nn.Module):
    """``forward(input_ids, attention_mask)``: mean-pools the unmasked positions, then classifies."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 8)
        self.fc = nn.Linear(8, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.tanh(self.fc(self.emb(input_ids)))
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        weights = mask.unsqueeze(-1).to(h.dtype)
        return self.out((h * weights).sum(1) / weights.sum(1).clamp_min(1.0))


def tagger_batch(n: int = 12) -> dict[str, torch.Tensor]:
    mask = torch.ones(n, 6, dtype=torch.long)
    mask[:, 4:] = 0
    return {"input_ids": tokens(n, 6, vocab=30), "attention_mask": mask, "labels": torch.arange(n) % 3}


def test_dict_batches_become_keyword_arguments() -> None:
    model = KeywordTagger()
    inp = model_input(model, tagger_batch())
    assert inp.args == () and sorted(inp.kwargs) == ["attention_mask", "input_ids"]  # labels are left out
    assert model_input(model, tagger_batch()["input_ids"]).args[0].shape == (12, 6)
    explicit = ModelInput(kwargs={"input_ids": tokens(2, 6, vocab=30)})
    assert model_input(model, explicit) is explicit
    # the whole default Panning: classification loss through **kwargs, SynFlow with the batch's attention mask
    result = Panning(rounds=3, progress=False, track_effective=True).prune(model, tagger_batch(), 0.7)
    assert math.isclose(result.sparsity, 0.7, abs_tol=0.01)
    assert result.history[-1].loss is not None and result.history[-1].effective_sparsity is not None


def test_class_balanced_batch_of_dict_samples_keeps_the_attention_mask() -> None:
    from lightning_panning.core.batch import scoring_batch

    samples = [{k: v[i] for k, v in tagger_batch(24).items()} for i in range(24)]
    loader = DataLoader(samples, batch_size=8, shuffle=True)  # type: ignore[arg-type]
    batch = scoring_batch(loader, per_class=2, seed=0)
    assert sorted(batch) == ["attention_mask", "input_ids", "labels"]
    assert batch["labels"].tolist() == [0, 0, 1, 1, 2, 2] and batch["attention_mask"].shape == (6, 6)
    assert bool((batch["attention_mask"][:, 4:] == 0).all())
    masks = Panning(rounds=2, per_class=2, progress=False).prune(KeywordTagger(), loader, 0.7).masks
    assert masks["fc.weight"].shape == (8, 8)


def test_hugging_face_classifier_with_the_default_loss() -> None:
    bert = tiny_bert()
    batch = {"input_ids": tokens(9, 8, 64), "attention_mask": torch.ones(9, 8, dtype=torch.long),
             "labels": torch.arange(9) % 3}
    result = Panning(rounds=2, progress=False).prune(bert, batch, 0.8, example_input=None)
    assert result.history[0].loss is not None and math.isfinite(result.history[0].loss)  # logits of the ModelOutput
    assert effective_sparsity(bert, result.masks, batch).effective < 1.0


# ---------------------------------------------------------------------------------------------------------------------
# 4. bad input: each a clear error naming what to pass or choose


class NoForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)


class OneHotNet(nn.Module):
    """Integer input that no embedding reads: it one-hot encodes the ids itself."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc(F.one_hot(ids, 10).float().mean(1))


def test_forward_that_needs_inputs_the_batch_lacks() -> None:
    from lightning.pytorch.demos import Transformer

    demo = Transformer(vocab_size=20, ninp=8, nhead=2, nhid=16, nlayers=1)
    with pytest.raises(ValueError, match=r"Transformer\.forward needs the arguments \['inputs', 'target'\].*example_input="):
        prune(demo, None, 0.5, method="synflow", rounds=1, example_input=tokens(2, 5, vocab=20), progress=False)
    with pytest.raises(ValueError, match=r"KeywordTagger\.forward needs the argument\(s\) \['input_ids'\]"):
        model_input(KeywordTagger(), {"attention_mask": torch.ones(2, 6)})


def test_module_without_forward() -> None:
    with pytest.raises(ValueError, match=r"NoForward has no `forward` method, but synflow.*calls the model.*method='snip'"):
        prune(NoForward(), None, 0.5, example_input=torch.zeros(1, 4), progress=False)

    class StepOnly(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

    with pytest.raises(ValueError, match="StepOnly has no `forward` method"):
        prune(StepOnly(), None, 0.5, example_input=torch.zeros(1, 4), progress=False)
    # without a forward call (magnitude) it prunes
    assert prune(NoForward(), None, 0.5, method="magnitude", progress=False)["fc.weight"].sum() == 4


def test_integer_input_that_no_embedding_reads() -> None:
    batch = (tokens(12, 5, vocab=10), torch.arange(12) % 4)
    with pytest.raises(ValueError, match=r"OneHotNet takes integer input \(int64\) but no nn\.Embedding.*method='snip'"):
        prune(OneHotNet(), batch, 0.5, method="synflow", rounds=1, progress=False)
    masks = prune(OneHotNet(), batch, 0.5, method="snip", progress=False)  # the advice works
    assert int(masks["fc.weight"].sum()) == 20


def test_parameters_on_several_devices() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[1].to("meta")  # a device that needs no GPU here; the prunable weights stay on the CPU
    with pytest.raises(ValueError, match=r"on several devices \(cpu, meta\).*Move it to one device"):
        prune(model, None, 0.5, method="synflow", rounds=1, example_input=torch.zeros(1, 4), progress=False)


# ---------------------------------------------------------------------------------------------------------------------
# 5. real model code, pruned with the default Panning inside Trainer.fit, trained, reloaded strictly


class Classifier(pl.LightningModule):
    """Any image backbone with a cross-entropy ``training_step``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


class CausalLM(pl.LightningModule):
    """A token model with a next-token loss; batches are ``{"input_ids", "attention_mask"}`` dicts."""

    def __init__(self, net: nn.Module, hugging_face: bool = False) -> None:
        super().__init__()
        self.net = net
        self.hugging_face = hugging_face

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.hugging_face:
            return self.net(input_ids=input_ids, attention_mask=attention_mask).logits
        return self.net(input_ids)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])[:, :-1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["input_ids"][:, 1:].reshape(-1))

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


class TokenDicts(Dataset):
    def __init__(self, n: int = 16, length: int = 12, vocab: int = 48) -> None:
        self.ids = tokens(n, length, vocab)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i])}


class RandomWikiText(Dataset):
    """WikiText2-style ``(inputs, target)`` blocks of random tokens (no download)."""

    def __init__(self, vocab: int = 40, block: int = 10, n: int = 16) -> None:
        self.data = torch.randint(0, vocab, (n * block + 1,), generator=torch.Generator().manual_seed(3))
        self.block = block
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.block
        return self.data[start : start + self.block], self.data[start + 1 : start + self.block + 1]


def check_pruned_fit(
    make: Any, loader: DataLoader, tmp_path: Path, rounds: int = 2, steps: int = 2, per_class: int = 10,
    **options: Any,
) -> PanningCallback:
    """Default Panning at 0.8 in ``fit``, a few steps; pruned weights exactly zero; the checkpoint reloads strictly."""
    module = make()
    pruner = PanningCallback(target=0.8, options={"rounds": rounds, "per_class": per_class, **options},
                             verbose=False, log_figure=False)
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, callbacks=[pruner],
    )
    initial = {n: p.detach().clone() for n, p in module.named_parameters()}
    trainer.fit(module, loader)
    assert trainer.global_step == steps
    assert pruner.masks is not None and pruner.summary["method"] == "panning"
    assert math.isclose(pruner.summary["nominal_sparsity"], 0.8, abs_tol=1e-3)
    effective = pruner.summary["effective_sparsity"]
    assert effective is not None and 0.8 - 1e-3 <= effective < 1.0  # computed for every kind of input, not dead
    moved = False
    for name, mask in pruner.masks.items():
        weight = module.get_parameter(name).detach()
        assert bool((weight[~mask] == 0).all()), name  # pruned weights exactly zero after training
        moved = moved or not torch.equal(weight[mask], initial[name][mask])
    assert moved  # it trained
    path = tmp_path / "pruned.ckpt"
    trainer.save_checkpoint(path)
    fresh = make()
    fresh.load_state_dict(torch.load(path, weights_only=False)["state_dict"], strict=True)
    for name, mask in pruner.masks.items():
        assert bool((fresh.get_parameter(name).detach()[~mask] == 0).all()), name
    return pruner


class CustomLayout(CausalLM):
    """Batches ``{"tokens": ids}`` that ``forward(input_ids, ...)`` cannot take: ``example_input_array`` says how."""

    def __init__(self) -> None:
        super().__init__(EncoderLM())
        self.example_input_array = {"input_ids": torch.zeros(1, 12, dtype=torch.long)}  # Lightning: dict = kwargs

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return super().training_step({"input_ids": batch["tokens"], "attention_mask": None}, batch_idx)


def test_example_input_array_gives_the_data_free_input(tmp_path: Path) -> None:
    data = [{"tokens": t} for t in tokens(16, 12)]
    pruner = PanningCallback(target=0.8, options={"rounds": 2}, verbose=False, log_figure=False)
    trainer = pl.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[pruner],
    )
    trainer.fit(CustomLayout(), DataLoader(data, batch_size=8))  # type: ignore[arg-type]
    assert pruner.summary["effective_sparsity"] is not None and pruner.summary["round_weights"][0]["synflow"] > 0


def test_hugging_face_gpt2_in_fit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pruner = check_pruned_fit(
        lambda: CausalLM(tiny_gpt2(), hugging_face=True), DataLoader(TokenDicts(vocab=64), batch_size=8), tmp_path
    )
    assert "net.transformer.wte.weight" in pruner.masks and "net.lm_head.weight" not in pruner.masks
    assert "net.transformer.h.0.attn.c_attn.weight" in pruner.masks


def test_transformer_encoder_language_model_in_fit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pruner = check_pruned_fit(lambda: CausalLM(EncoderLM()), DataLoader(TokenDicts(), batch_size=8), tmp_path)
    assert "net.encoder.layers.0.self_attn.in_proj_weight" in pruner.masks
    assert set(pruner.summary["left_dense"]) == {"net.tok.weight", "net.pos.weight"}
    # the embeddings, chosen through the callback's options
    pruner = check_pruned_fit(
        lambda: CausalLM(EncoderLM()), DataLoader(TokenDicts(), batch_size=8), tmp_path,
        predicate=DefaultRule(embeddings=True),
    )
    assert {"net.tok.weight", "net.pos.weight"} <= set(pruner.masks) and not pruner.summary["left_dense"]


def test_lightning_demo_transformer_in_fit(tmp_path: Path) -> None:
    from lightning.pytorch.demos import LightningTransformer, Transformer

    class SmallDemo(LightningTransformer):
        def __init__(self) -> None:
            super().__init__(vocab_size=40)
            self.model = Transformer(vocab_size=40, ninp=16, nhead=2, nhid=32, nlayers=1)

        def prepare_data(self) -> None:  # the demo downloads WikiText2 here; the test feeds random tokens
            pass

    torch.manual_seed(0)
    pruner = check_pruned_fit(SmallDemo, DataLoader(RandomWikiText(), batch_size=8), tmp_path)
    assert "model.transformer.decoder.layers.0.multihead_attn.in_proj_weight" in pruner.masks


def test_torchvision_resnet18_in_fit(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(20, 3, 32, 32), torch.arange(20) % 10)
    check_pruned_fit(
        lambda: Classifier(resnet18(num_classes=10)), DataLoader(data, batch_size=10), tmp_path, per_class=2
    )


def test_torchvision_vit_b16_in_fit(tmp_path: Path) -> None:
    from torchvision.models import vit_b_16

    def vit() -> Classifier:
        net = vit_b_16(image_size=32, num_classes=10)  # image_size: any multiple of the 16-pixel patch
        # torchvision zero-initialises the head: every saliency would vanish (see the test above); initialise it
        nn.init.normal_(net.heads.head.weight, std=0.01)
        return Classifier(net)

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(10, 3, 32, 32), torch.arange(10))
    with warnings.catch_warnings():  # no vanishing scores, no large dense weight
        warnings.filterwarnings("error", message=".*(every fused score|large weight tensor|SynFlow scores)")
        pruner = check_pruned_fit(vit, DataLoader(data, batch_size=10), tmp_path, rounds=1, per_class=1)
    assert "net.encoder.layers.encoder_layer_0.self_attention.in_proj_weight" in pruner.masks
    assert "net.heads.head.weight" in pruner.masks
    assert set(pruner.summary["left_dense"]) == {"net.class_token", "net.encoder.pos_embedding"}


# ---------------------------------------------------------------------------------------------------------------------
# 6. on a GPU (skipped without CUDA; run `pytest -m gpu` on a GPU machine)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_token_models_on_cuda(tmp_path: Path) -> None:
    gpt2 = tiny_gpt2().cuda()
    batch = {"input_ids": tokens(4, 8, 64).cuda(), "attention_mask": torch.ones(4, 8, dtype=torch.long).cuda()}
    masks = prune(gpt2, None, 0.8, method="synflow", rounds=3, example_input=batch, progress=False)
    assert all(m.is_cuda for m in masks.values())
    assert effective_sparsity(gpt2, masks, batch).effective < 1.0

    class TrainedOn(pl.Callback):  # the device of the weights while training (teardown moves them to the CPU)
        devices: set[str] = set()

        def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
            self.devices |= {p.device.type for p in pl_module.parameters()}

    module = CausalLM(EncoderLM())
    pruner = PanningCallback(target=0.8, options={"rounds": 3}, verbose=False, log_figure=False)
    seen = TrainedOn()
    trainer = pl.Trainer(
        accelerator="gpu", devices=1, max_steps=2, callbacks=[pruner, seen], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, default_root_dir=tmp_path, precision="bf16-mixed",
    )
    trainer.fit(module, DataLoader(TokenDicts(), batch_size=8))
    assert seen.devices == {"cuda"}
    assert pruner.summary["effective_sparsity"] is not None
    for name, mask in pruner.masks.items():
        weight = module.get_parameter(name).detach()
        assert bool((weight[~mask.to(weight.device)] == 0).all()), name


# ---------------------------------------------------------------------------------------------------------------------
# 7. the default method on every architecture (issue 27): SynFlow that cannot overflow, GraSP through any activation,
#    encoder-decoders


def synflow_scores(model: nn.Module, example: Any, scaling: str, dtypes: tuple[torch.dtype, ...] = (torch.float64,)):
    from lightning_panning.core.probe import path_saliency

    params = prunable_parameters(model)
    values = {n: p.detach() for n, p in params.items()}
    return path_saliency(model, params, values, {n: v.abs() for n, v in values.items()}, example, abs_rest=True,
                         dtypes=dtypes, scaling=scaling)  # type: ignore[arg-type]


def top_k_masks(scores: dict[str, torch.Tensor], keep: int) -> dict[str, torch.Tensor]:
    from lightning_panning.core.selection import select_top_k

    return select_top_k(scores, keep)


@pytest.mark.parametrize("name", ["lenet5", "vgg19_bn"])
def test_normalised_synflow_is_todays_synflow_times_one_factor_on_homogeneous_networks(name: str) -> None:
    from lightning_panning.core.probe import layer_scales
    from lightning_panning.models import VGG19, LeNet5

    torch.manual_seed(0)
    model, example = (LeNet5(), torch.zeros(1, 1, 28, 28)) if name == "lenet5" else (VGG19(), torch.zeros(1, 3, 32, 32))
    plain = synflow_scores(model, example, "plain")
    normalized = synflow_scores(model, example, "normalized")
    params = prunable_parameters(model)
    factor = math.prod(layer_scales(model, {n: p.detach().abs().double() for n, p in params.items()}).values())
    assert factor != 1.0
    for n in plain:  # powers of two scale exactly: bit for bit, not just the same ranking
        assert torch.equal(normalized[n] * factor, plain[n]), n
    keep = sum(p.numel() for p in params.values()) // 20
    plain_masks, normalized_masks = top_k_masks(plain, keep), top_k_masks(normalized, keep)
    assert all(torch.equal(plain_masks[n], normalized_masks[n]) for n in plain)


def test_todays_synflow_path_is_unchanged_where_it_is_finite() -> None:
    from lightning_panning.models import VGG19, LeNet5, ResNet20

    torch.manual_seed(0)
    for model, example in ((LeNet5(), torch.zeros(1, 1, 28, 28)), (VGG19(), torch.zeros(1, 3, 32, 32)),
                           (ResNet20(), torch.zeros(1, 3, 32, 32))):
        auto = synflow_scores(model, example, "auto", (torch.float32, torch.float64))
        plain = synflow_scores(model, example, "plain", (torch.float32, torch.float64))
        assert all(torch.equal(auto[n], plain[n]) for n in plain), type(model).__name__  # same dtype, same bits


def test_synflow_beyond_float64_ranks_like_the_same_network_scaled_down() -> None:
    torch.manual_seed(0)
    deep = nn.Sequential(*[nn.Linear(16, 16, bias=False) for _ in range(120)])
    with torch.no_grad():
        for layer in deep:
            layer.weight.mul_(256.0)  # R ≈ (16 · 0.8 · 256 / 4)^120 ≫ 1e308: float64 overflows
    smaller = copy.deepcopy(deep)
    with torch.no_grad():
        for layer in smaller:
            layer.weight.mul_(2.0**-10)  # the same network, each layer scaled by a power of two: R ≈ 1e-60
    example = torch.zeros(1, 16)
    plain = synflow_scores(deep, example, "plain")
    assert not all(bool(torch.isfinite(s).all()) for s in plain.values())  # today's float64 pass
    scores = SynFlow()(ScoringContext(deep, prunable_parameters(deep), example_input=example))
    assert all(bool(torch.isfinite(s).all()) and bool((s > 0).all()) for s in scores.values())
    reference = synflow_scores(smaller, example, "plain")
    keep = 16 * 16 * 120 // 10
    masks, expected = top_k_masks(scores, keep), top_k_masks(reference, keep)
    assert all(torch.equal(masks[n], expected[n]) for n in masks)
    # the authors' float32 pass still reports the overflow instead of falling back, with SynFlow's own advice
    with pytest.raises(ValueError, match=r"Scorer 'synflow' produced non-finite.*no loss; .*dtype='auto'") as err:
        prune(deep, None, 0.9, method="synflow_authors", rounds=1, example_input=example, progress=False)
    assert "temperature" not in str(err.value)


def test_synflow_on_gated_and_attention_blocks_is_finite() -> None:
    from lightning.pytorch.demos import LightningTransformer
    from torchvision.models import efficientnet_b0

    torch.manual_seed(0)
    net = efficientnet_b0(num_classes=10)  # squeeze-excitation: float32 gradients overflow while R is small
    masks = prune(net, None, 0.9, method="synflow", rounds=3, example_input=torch.zeros(1, 3, 64, 64), progress=False)
    assert sum(int(m.sum()) for m in masks.values()) == math.floor(sum(m.numel() for m in masks.values()) * 0.1 + 1e-6)
    normalized = synflow_scores(net, torch.zeros(1, 3, 64, 64), "normalized")
    assert all(bool(torch.isfinite(s).all()) and bool((s > 0).any()) for s in normalized.values())
    demo = LightningTransformer()  # the default size: SynFlow gave NaN/inf in the attention input projection
    ids = tokens(2, 35, vocab=33278)
    scores = SynFlow()(ScoringContext(demo, prunable_parameters(demo), example_input=ModelInput((ids, ids))))
    assert all(bool(torch.isfinite(s).all()) for s in scores.values())


class HardGated(nn.Module):
    """MobileNetV3's ingredients: hard-swish (in place) and a hard-sigmoid squeeze-excitation gate."""

    def __init__(self, gate: nn.Module | None = None, act: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = act if act is not None else nn.Hardswish(inplace=True)
        self.fc1 = nn.Linear(8, 4)
        self.fc2 = nn.Linear(4, 8)
        self.gate = gate if gate is not None else nn.Hardsigmoid()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x)).mean((2, 3))
        return self.head(h * self.gate(self.fc2(F.relu(self.fc1(h)))))


class ClampHardSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


class ClampHardSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


def test_grasp_through_hard_sigmoid_and_hard_swish() -> None:
    from lightning_panning import GraSP

    torch.manual_seed(0)
    model = HardGated()
    by_hand = HardGated(ClampHardSigmoid(), ClampHardSwish())
    by_hand.load_state_dict(model.state_dict())
    batch = (torch.randn(6, 3, 8, 8), torch.arange(6) % 3)
    state = copy.deepcopy(model.state_dict())
    scores = GraSP()(ScoringContext(model, prunable_parameters(model), batch=batch, needs_hvp=True))
    expected = GraSP()(ScoringContext(by_hand, prunable_parameters(by_hand), batch=batch, needs_hvp=True))
    assert all(torch.equal(scores[n], expected[n]) for n in scores)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert isinstance(model.gate, nn.Hardsigmoid) and model.act.inplace  # the model is as it was
    assert F.hardsigmoid is torch.nn.functional.hardsigmoid


def test_the_stand_ins_compute_torchs_values() -> None:
    from lightning_panning.core.functional import TWICE_DIFFERENTIABLE

    x = torch.cat([torch.randn(10_000) * 4, torch.linspace(-4, 4, 1001), torch.tensor([-3.0, 3.0, math.inf, -math.inf])])
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        for original, stand_in in TWICE_DIFFERENTIABLE.items():
            expected = original(x.to(dtype))
            torch.testing.assert_close(stand_in(x.to(dtype)), expected, rtol=0, atol=0, equal_nan=True)
            inplace = x.to(dtype).clone()
            stand_in(inplace, inplace=True)
            torch.testing.assert_close(inplace, expected, rtol=0, atol=0, equal_nan=True)


def test_grasp_through_an_op_without_double_backward_is_a_clear_error() -> None:
    class Squares(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.ops.aten.hardsigmoid(self.fc1(x)))  # the aten op itself: no stand-in reaches it

    batch = (torch.randn(6, 4), torch.arange(6) % 3)
    with pytest.raises(ValueError, match=r"GraSP differentiates.*aten::hardsigmoid_backward.*method='snip'"):
        prune(Squares(), batch, 0.5, method="grasp", progress=False)
    assert int(sum(m.sum() for m in prune(Squares(), batch, 0.5, method="snip", progress=False).values())) == 28


def tiny_t5() -> nn.Module:
    t = transformers_or_skip()
    config = t.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                        decoder_start_token_id=0, pad_token_id=0)
    return t.T5ForConditionalGeneration(config)


def test_encoder_decoder_gets_decoder_inputs_in_the_data_free_pass() -> None:
    from lightning_panning.core.probe import with_decoder_inputs

    torch.manual_seed(0)
    t5 = tiny_t5()
    batch = {"input_ids": tokens(4, 8, 64), "attention_mask": torch.ones(4, 8, dtype=torch.long),
             "labels": tokens(4, 6, 64, seed=1)}
    sample = with_decoder_inputs(t5, model_input(t5, batch).first_sample())
    assert sample.kwargs["decoder_input_ids"].shape == (1, 8) and not bool(sample.kwargs["decoder_input_ids"].any())
    masks = prune(t5, None, 0.8, method="synflow", rounds=2, example_input=batch, progress=False)
    scores = SynFlow()(ScoringContext(t5, prunable_parameters(t5), example_input=batch))
    decoder = [n for n in scores if n.startswith("decoder.")]
    assert decoder and all(bool((scores[n] > 0).any()) for n in decoder)  # the decoder was on the signal's path
    assert effective_sparsity(t5, masks, batch).effective < 1.0
    # given decoder inputs are used as they are
    given = ModelInput(kwargs={"input_ids": tokens(1, 8, 64), "decoder_input_ids": tokens(1, 3, 64)})
    assert with_decoder_inputs(t5, given) is given
    with pytest.raises(ValueError, match=r"T5ForConditionalGeneration\.forward takes `decoder_input_ids`.*ModelInput"):
        with_decoder_inputs(t5, ModelInput(kwargs={"inputs_embeds": torch.ones(1, 8, 32)}))
