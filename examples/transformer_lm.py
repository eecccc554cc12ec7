"""Prune a small Transformer language model before training with the default Panning, then train it sparse.

Offline: the text is this library's own installed source code (character level, bundled with the package), or random
tokens with ``--random-tokens``; nothing is downloaded. The model is a GPT-style causal language model
(``nn.TransformerEncoder``, pre-norm, learned positions, output head tied to the token embedding); with ``--hf`` it is
a Hugging Face ``GPT2LMHeadModel`` built from a small config instead (needs ``transformers``).

    python examples/transformer_lm.py                  # dense vs. Panning at 80%, a few minutes on a CPU
    python examples/transformer_lm.py --target 0.9 --steps 600
    python examples/transformer_lm.py --hf --random-tokens --steps 50

The integration is the same one line as for any LightningModule: ``callbacks=[PanningCallback(target=0.8)]``. The
batches are ``{"input_ids", "attention_mask"}`` dicts and ``forward`` takes them as keyword arguments; SynFlow and
effective sparsity feed their all-ones signal at the token embedding (the model's input layer), SNIP and GraSP score
with the module's own ``training_step`` loss. By default every attention and feed-forward matrix is pruned, and the
tied head/embedding once; ``--exclude-head`` keeps it dense, ``--embeddings`` prunes the position embedding too
(``options={"predicate": DefaultRule(embeddings=True)}``).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import lightning_panning
from lightning_panning.callbacks import PanningCallback
from lightning_panning.core import DefaultRule


class TinyGPT(nn.Module):
    """Causal Transformer language model: token + position embeddings, pre-norm encoder layers, tied output head.

    ``ff`` is the feed-forward width (default ``4 * dim``). Input ``(N, L)`` token ids, output ``(N, L, vocab)`` logits.
    ``benchmarks/transformer_scale.py`` builds it at GPT-2-small size.
    """

    def __init__(self, vocab: int, dim: int = 64, layers: int = 2, heads: int = 4, max_len: int = 256,
                 ff: int | None = None) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim if ff is None else ff, dropout=0.1, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        h = self.tok(input_ids) + self.pos(torch.arange(length, device=input_ids.device))[None]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=input_ids.device)
        return self.head(self.norm(self.blocks(h, mask=mask, is_causal=True)))


class LanguageModel(pl.LightningModule):
    """Next-token cross-entropy on ``{"input_ids", "attention_mask"}`` batches."""

    def __init__(self, net: nn.Module, hugging_face: bool = False, lr: float = 3e-3) -> None:
        super().__init__()
        self.net = net
        self.hugging_face = hugging_face
        self.lr = lr

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.hugging_face:
            return self.net(input_ids=input_ids, attention_mask=attention_mask).logits
        return self.net(input_ids)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])[:, :-1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["input_ids"][:, 1:].reshape(-1))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.loss(batch)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self.loss(batch), prog_bar=False)

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.01)


class Blocks(Dataset):
    """Fixed-length blocks of token ids as ``{"input_ids", "attention_mask"}`` samples."""

    def __init__(self, ids: torch.Tensor, block: int) -> None:
        self.ids = ids[: len(ids) // block * block].view(-1, block)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i])}


def corpus(random_tokens: bool, vocab_size: int, seed: int) -> tuple[torch.Tensor, int]:
    """Token ids and vocabulary size: characters of the installed library's source, or uniform random tokens."""
    if random_tokens:
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(0, vocab_size, (200_000,), generator=generator), vocab_size
    root = Path(lightning_panning.__file__).parent
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py")))
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    return torch.tensor([index[c] for c in text], dtype=torch.long), len(chars)


def build(vocab: int, block: int, hf: bool) -> LanguageModel:
    if not hf:
        return LanguageModel(TinyGPT(vocab, max_len=block))
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab, n_positions=block, n_embd=64, n_layer=2, n_head=4, bos_token_id=0,
                        eos_token_id=0)
    return LanguageModel(GPT2LMHeadModel(config), hugging_face=True)


def train(args: argparse.Namespace, callbacks: list[pl.Callback]) -> tuple[LanguageModel, float, float]:
    """Train with the given callbacks; return (module, validation loss, wall seconds)."""
    pl.seed_everything(args.seed, verbose=False)
    ids, vocab = corpus(args.random_tokens, args.vocab, args.seed)
    split = int(0.9 * len(ids))
    train_data, val_data = Blocks(ids[:split], args.block), Blocks(ids[split:], args.block)
    module = build(vocab, args.block, args.hf)
    trainer = pl.Trainer(
        max_steps=args.steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=False, callbacks=callbacks, limit_val_batches=20,
    )
    start = time.perf_counter()
    trainer.fit(module, DataLoader(train_data, batch_size=32, shuffle=True))
    seconds = time.perf_counter() - start
    val = trainer.validate(module, DataLoader(val_data, batch_size=32), verbose=False)[0]["val_loss"]
    return module, float(val), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.8, help="sparsity to prune to (default 0.8)")
    parser.add_argument("--rounds", type=int, default=100, help="Panning rounds (default 100, as the paper)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of each run (default 300)")
    parser.add_argument("--block", type=int, default=64, help="tokens per sequence (default 64)")
    parser.add_argument("--random-tokens", action="store_true", help="random tokens instead of the bundled text")
    parser.add_argument("--vocab", type=int, default=256, help="vocabulary of --random-tokens (default 256)")
    parser.add_argument("--hf", action="store_true", help="a Hugging Face GPT-2 from a small config")
    parser.add_argument("--exclude-head", action="store_true", help="keep the tied head/embedding dense")
    parser.add_argument("--embeddings", action="store_true", help="prune the position embedding too")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*`validation_step` but have no `val_dataloader`.*")  # validated at the end
    warnings.filterwarnings("ignore", ".*large weight tensor.*")  # the position embedding stays dense: said below

    _, dense_loss, dense_s = train(args, [])
    options: dict[str, Any] = {"rounds": args.rounds, "seed": args.seed}
    if args.exclude_head:
        options["exclude"] = ["*head*"]
    if args.embeddings:
        options["predicate"] = DefaultRule(embeddings=True)
    pruner = PanningCallback(target=args.target, options=options, verbose=False, log_figure=False)
    _, sparse_loss, sparse_s = train(args, [pruner])

    s = pruner.summary
    text = "random tokens" if args.random_tokens else "the library's own source (characters)"
    model = "Hugging Face GPT-2" if args.hf else "TinyGPT (nn.TransformerEncoder)"
    print(f"\n{model} on {text}, {args.steps} steps, Panning with {args.rounds} rounds\n")
    print(f"| {'':<26} | {'dense':>10} | {'Panning':>10} |")
    print(f"|{'-' * 28}|{'-' * 12}|{'-' * 12}|")
    print(f"| {'validation loss':<26} | {dense_loss:>10.4f} | {sparse_loss:>10.4f} |")
    print(f"| {'validation perplexity':<26} | {math.exp(dense_loss):>10.2f} | {math.exp(sparse_loss):>10.2f} |")
    print(f"| {'nominal sparsity':<26} | {0.0:>10.4f} | {s['nominal_sparsity']:>10.4f} |")
    effective = "n/a" if s["effective_sparsity"] is None else f"{s['effective_sparsity']:.4f}"
    print(f"| {'effective sparsity':<26} | {0.0:>10.4f} | {effective:>10} |")
    print(f"| {'pruning seconds':<26} | {'-':>10} | {s['pruning_seconds']:>10.2f} |")
    print(f"| {'fit seconds (w/ pruning)':<26} | {dense_s:>10.1f} | {sparse_s:>10.1f} |")
    print("\nPer-layer density after pruning:")
    for layer, density in s["layer_density"].items():
        print(f"  {layer:<48} {density:8.4f}")
    if s.get("left_dense"):
        print("Left dense (2+ dimensions):", ", ".join(f"{n} ({k:,})" for n, k in s["left_dense"].items()))


if __name__ == "__main__":
    main()
