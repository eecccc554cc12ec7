"""Parity of ``method="px_authors"`` with PX's code (github ``iurada/px-ntk-pruning``), a section of
``authors_parity.py``.

Their ``lib/pruners.py`` ``PX`` (imported at run time from ``--px-repo``, a checkout outside this tree, never copied
here) driven as their ``train_classification.py`` drives it — ``model.eval()``, then for each of ``T`` rounds
``score`` and ``mask(ratio ** ((r + 1) / T), 'global')`` with ``ratio`` the weight-remaining ratio (that loop is
five lines of their file, restated here) — and our ``PX`` scorer, on the same model and batch:

* models: their ``lib/models/lottery_vgg.py`` ``vgg16_bn`` and a LeNet5 (Caffe variant) built from their masked
  ``lib/layers.py`` layers, initialised like their VGG (Kaiming-normal weights); both built under
  ``torch.manual_seed(0)``;
* batch: 100 fixed ``N(0, 1)`` images with labels, their ``CONFIG.dataset = 'ImageNet'`` path (the loader is used
  as given, no class-balanced subset); PX draws nothing at random;
* ours: ``method="px_authors"`` (their name rule ``('bn', 'fc')`` for the untouched parameters and their count and
  tie rule) and ``method="px"`` (untouched by type: normalisation and the output layer; our exact count).

Compared: the first round's scores (bit for bit), the masks after ``T`` rounds.

    python benchmarks/authors_parity.py --px-repo ../authors-px [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
from benchmarks.authors_code import quiet
from benchmarks.parity_common import compare, labelled_noise, lenet5_of, scores_agree
from lightning_panning import get_pruner, prunable_parameters
from lightning_panning.core import PX, ScoringContext, effective_sparsity

SEED = 0
#: model → input shape
SHAPES: dict[str, tuple[int, ...]] = {"lenet5": (1, 28, 28), "vgg16_bn": (3, 32, 32), "vgg19_bn": (3, 32, 32)}
PARITY_MODELS = ("lenet5", "vgg16_bn")


def load_px(repo: Path) -> SimpleNamespace:
    """The pieces of their code the section calls, from the checkout ``repo``."""
    repo = repo.resolve()
    if not (repo / "lib" / "pruners.py").is_file():
        raise SystemExit(f"--px-repo {repo} is not a checkout of iurada/px-ntk-pruning (no lib/pruners.py).")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from lib import generator, layers, pruners
    from lib.models import lottery_vgg

    pruners.CONFIG.dataset = "ImageNet"  # their path that iterates the loader as given
    pruners.CONFIG.device = "cpu"
    return SimpleNamespace(layers=layers, lottery_vgg=lottery_vgg, PX=pruners.PX, generator=generator)


def their_lenet5(their: SimpleNamespace) -> nn.Module:
    """LeNet5 (Caffe variant) from their masked layers, Kaiming-normal weights (their VGG's ``_initialize_weights``)."""
    layers = their.layers

    def initialize_weights(model: nn.Module) -> None:
        for m in model.modules():
            if isinstance(m, (layers.Linear, layers.Conv2d)):
                nn.init.kaiming_normal_(m.weight)

    return lenet5_of(layers.Conv2d, layers.Linear, initialize_weights)


def their_model(their: SimpleNamespace, name: str) -> nn.Module:
    """A model of :data:`SHAPES` built under ``torch.manual_seed(SEED)``, 10 classes."""
    torch.manual_seed(SEED)
    if name == "lenet5":
        return their_lenet5(their)
    model: nn.Module = getattr(their.lottery_vgg, name)(10)
    return model


def _names(model: nn.Module, their: SimpleNamespace) -> dict[int, str]:
    """``id(weight)`` → our parameter name, for their prunable layers."""
    return {id(m.weight): f"{n}.weight" for n, m in model.named_modules()
            if isinstance(m, (their.layers.Conv2d, their.layers.Linear))}


def run_theirs(their: SimpleNamespace, model: nn.Module, batch: tuple[Tensor, Tensor], target: float,
               rounds: int, device: str = "cpu") -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Their masks after ``rounds`` rounds and their last round's scores, keyed by our names."""
    names = _names(model, their)
    pairs = list(their.generator.masked_parameters(model))
    pruner = their.PX(pairs)
    model.eval()  # their train_classification.py, for SynFlow and PX
    ratio = 1.0 - target  # their weight_remaining_ratio
    with quiet(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for r in range(rounds):
            pruner.score(model, None, [batch], device)
            pruner.mask(ratio ** ((r + 1) / rounds), "global")
    masks = {names[id(p)]: m.bool().clone() for m, p in pairs}
    scores = {names[id(p)]: pruner.scores[id(p)].clone() for _, p in pairs}
    return masks, scores


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every case of the section: first-round scores and masks after ``T`` rounds against theirs."""
    their = load_px(args.px_repo)
    if len(args.px_targets) != len(args.px_rounds):
        raise SystemExit(f"--px-targets {args.px_targets} and --px-rounds {args.px_rounds} pair up: give as many "
                         "of each")
    cases = [(args.px_targets[0], 2)] if args.quick else list(zip(args.px_targets, args.px_rounds, strict=True))
    models = ["lenet5"] if args.quick else args.px_models
    rows: list[dict[str, Any]] = []
    for name, (target, rounds) in ((n, c) for n in models for c in cases):
        if name != "lenet5" and args.px_vgg_rounds is not None and not args.quick:
            rounds = args.px_vgg_rounds
        base = their_model(their, name)
        batch = labelled_noise(SHAPES[name], seed=SEED)
        start = time.perf_counter()
        _, their_first = run_theirs(their, copy.deepcopy(base), batch, target, 1)
        ctx = ScoringContext(base, prunable_parameters(base), batch=batch, seed=SEED, resurrect=False)
        first = scores_agree(PX(untouched=("bn", "fc")).scores(ctx).keep, their_first)
        theirs, _ = run_theirs(their, copy.deepcopy(base), batch, target, rounds)
        authors = get_pruner("px_authors", rounds=rounds, seed=SEED, progress=False).prune(base, batch, target).masks
        default = get_pruner("px", rounds=rounds, seed=SEED, progress=False).prune(base, batch, target).masks
        row = {"model": name, "target": target, "rounds": rounds,
               **{f"first_round_{k}": v for k, v in first.items()},
               "px_authors": compare(authors, theirs), "px": compare(default, theirs),
               "effective_sparsity_theirs": effective_sparsity(base, theirs, batch[0][:1]).effective,
               "effective_sparsity_px_authors": effective_sparsity(base, authors, batch[0][:1]).effective,
               "effective_sparsity_px": effective_sparsity(base, default, batch[0][:1]).effective,
               "seconds": time.perf_counter() - start}
        rows.append(row)
        print(f"px {name:8s} {target:g} T={rounds:<3d} first-round scores equal {first['scores_bitwise_equal']} "
              f"(max rel. diff {first['scores_max_rel_diff']:.1e}); differing {row['px_authors']['differing']:,} "
              f"(px_authors), Jaccard {row['px']['jaccard']:.4f} (px)  ({row['seconds']:.0f}s)", flush=True)
    return {
        "what": "PX (github iurada/px-ntk-pruning, lib/pruners.py PX, driven by their train_classification.py loop) "
                "against method='px_authors' and method='px' on the same model and batch",
        "authors_repo": "<px-repo>",  # a checkout of github iurada/px-ntk-pruning; no machine path in results
        "models": {n: ("LeNet5 (Caffe variant) from their lib/layers.py, Kaiming-normal weights"
                       if n == "lenet5" else f"their lib/models/lottery_vgg.py {n}") for n in models},
        "batch": "100 fixed N(0, 1) images of the model's input shape with labels 0..9 (seed 0)",
        "their_config": "CONFIG.dataset='ImageNet' (the loader as given), model.eval() before the rounds, "
                        "exponential schedule ratio ** ((r + 1) / T), global scope",
        "rows": rows,
    }


def markdown(record: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    lines = [
        "## PX: `method=\"px_authors\"` / `\"px\"` vs their `PX`",
        "",
        f"Their code: `{record['authors_repo']}` (github iurada/px-ntk-pruning); {record['their_config']}. Models: "
        + "; ".join(f"**{k}**: {v}" for k, v in record["models"].items()) + f". Batch: {record['batch']}. "
        "`px_authors` keeps their name rule (`'bn'`, `'fc'` stay untouched in the all-ones and squared copies) and "
        "their count and tie rule; `px` keeps normalisation layers and the output layer (found by the forward "
        "pass) untouched and our exact count (docs/differences.md).",
        "",
        "| model | target | T | first-round scores bit for bit | max rel. diff | differing (`px_authors`) "
        "| kept: theirs, `px_authors`, `px` | Jaccard (`px`) | effective sparsity: theirs, `px_authors`, `px` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        lines.append(
            f"| {r['model']} | {r['target']:g} | {r['rounds']} | {r['first_round_scores_bitwise_equal']} | "
            f"{r['first_round_scores_max_rel_diff']:.2e} | **{r['px_authors']['differing']:,}** of "
            f"{r['px_authors']['weights']:,} | {r['px_authors']['kept_theirs']:,}, {r['px_authors']['kept_ours']:,}, "
            f"{r['px']['kept_ours']:,} | {r['px']['jaccard']:.4f} | {r['effective_sparsity_theirs']:.6f}, "
            f"{r['effective_sparsity_px_authors']:.6f}, {r['effective_sparsity_px']:.6f} |"
        )
    lines += ["", "Effective sparsity: the fraction of weights not on any input-output path of the masked network "
              "(1.000000: no path left). Where every score of a round is 0 (the network has collapsed: no path "
              "carries a gradient), their rule removes every weight (kept 0) and ours keeps the exact count, "
              "the lowest-indexed weights, an arbitrary choice it warns about; from then on the masks part."]
    return [*lines, ""]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The section's command-line options."""
    parser.add_argument("--px-repo", type=Path, default=None,
                        help="checkout of github iurada/px-ntk-pruning (runs the PX section)")
    parser.add_argument("--px-targets", type=float, nargs="+", default=[0.98],
                        help="PX's target sparsities, one case each with the matching --px-rounds")
    parser.add_argument("--px-rounds", type=int, nargs="+", default=[100],
                        help="T of each case (their launch scripts: 100; --quick: 2)")
    parser.add_argument("--px-vgg-rounds", type=int, default=None,
                        help="T for the VGG models instead of --px-rounds (a VGG round is ~50× LeNet5's on CPU)")
    parser.add_argument("--px-models", nargs="+", default=list(PARITY_MODELS), choices=list(SHAPES),
                        help="models of the PX section (--quick: lenet5)")
