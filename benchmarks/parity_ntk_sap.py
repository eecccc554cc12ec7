"""Parity of ``method="ntk_sap"`` with NTK-SAP's code (github ``YiteWang/NTK-SAP``): a section of ``authors_parity.py``.

Their ``Pruners/pruners.py`` ``NTKSAP`` driven by their ``prune.py`` ``prune_loop`` (imported at run time from
``--ntksap-repo``, a checkout outside this tree, never copied here) and our ``NTKSAP`` scorer run on the same model
and the same random draws:

* models: their ``Models/lottery_vgg.py`` ``vgg16_bn`` (the paper's CIFAR VGG) and a LeNet5 (Caffe variant, the
  Panning paper's MNIST net) built from their masked ``Layers/layers.py`` layers, whose ``_initialize_weights`` is
  their lottery VGG's method itself (Kaiming-normal on every Conv2d/Linear weight); both built under
  ``torch.manual_seed(0)``;
* draws: their code draws from the global RNG after ``torch.manual_seed(0)`` — per sample the weights
  (``_initialize_weights``), the inputs (``randn_like``), the perturbation (``randn_like``), continuing from round to
  round; ours draws the same sequence from a generator seeded 0 (the loader they iterate gets its own generator, so
  iterating it draws nothing from the global RNG);
* settings: their defaults ``ε = 0.01``, ``R`` (``--ntksap-samples``, 1 by default), ``prune_train_mode=True``,
  exponential schedule, global scope; ``T`` rounds (``--ntksap-rounds``, their script's 20).

Compared: the first round's scores (bit for bit), and the masks after ``T`` rounds with ``selector="synaptic_flow"``
(their count and tie rule: 0 differing entries expected) and with our default selector (exact
``floor(m (1 − ρ_i) + 1e-6)``, as information).

    python benchmarks/authors_parity.py --ntksap-repo ../authors-ntksap [--quick]
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
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
from benchmarks.authors_code import quiet
from benchmarks.parity_common import compare, labelled_noise, lenet5_of, scores_agree
from lightning_panning import get_pruner, prunable_parameters
from lightning_panning.core import NTKSAP, ScoringContext, effective_sparsity

SEED = 0
#: model → input shape: the LeNet5 of their layers, or a VGG of their ``Models/lottery_vgg.py``
SHAPES: dict[str, tuple[int, ...]] = {"lenet5": (1, 28, 28), "vgg16_bn": (3, 32, 32), "vgg19_bn": (3, 32, 32)}
#: the section's models (VGG16-BN: the paper's CIFAR VGG)
PARITY_MODELS = ("lenet5", "vgg16_bn")


def load_ntksap(repo: Path) -> SimpleNamespace:
    """The pieces of their code the section calls, from the checkout ``repo``."""
    repo = repo.resolve()
    if not (repo / "Pruners" / "pruners.py").is_file():
        raise SystemExit(f"--ntksap-repo {repo} is not a checkout of YiteWang/NTK-SAP (no Pruners/pruners.py).")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from Layers import layers
    from Models import lottery_vgg
    from prune import prune_loop
    from Pruners.pruners import NTKSAP as TheirNTKSAP
    from Utils import generator

    return SimpleNamespace(layers=layers, lottery_vgg=lottery_vgg, prune_loop=prune_loop, NTKSAP=TheirNTKSAP,
                           generator=generator)


def their_lenet5(their: SimpleNamespace) -> nn.Module:
    """LeNet5 (Caffe variant) from their masked layers, initialised by their lottery VGG's ``_initialize_weights``."""
    return lenet5_of(their.layers.Conv2d, their.layers.Linear, their.lottery_vgg.VGG._initialize_weights)


def their_model(their: SimpleNamespace, name: str) -> nn.Module:
    """A model of :data:`SHAPES` built under ``torch.manual_seed(SEED)``, 10 classes."""
    torch.manual_seed(SEED)
    if name == "lenet5":
        return their_lenet5(their)
    model: nn.Module = getattr(their.lottery_vgg, name)(SHAPES[name], 10)
    return model


def _names(model: nn.Module, their: SimpleNamespace) -> dict[int, str]:
    """``id(weight)`` → our parameter name, for their prunable layers."""
    return {id(m.weight): f"{n}.weight" for n, m in model.named_modules()
            if isinstance(m, (their.layers.Conv2d, their.layers.Linear))}


class TheirCodeStopped(RuntimeError):
    """Their ``prune_loop`` quit (``quit()`` after its own sparsity check failed); the message is what it printed."""


def run_theirs(their: SimpleNamespace, model: nn.Module, batch: tuple[Tensor, Tensor], target: float, rounds: int,
               samples: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Their masks after ``rounds`` rounds and their last round's scores, keyed by our names.

    Raises:
        TheirCodeStopped: where their loop's final check (remaining weights within 5 of the target count) fails.
    """
    names = _names(model, their)
    loader = DataLoader(TensorDataset(*batch), batch_size=256, shuffle=False,
                        generator=torch.Generator().manual_seed(SEED))  # iterating it leaves the global RNG alone
    pairs = list(their.generator.masked_parameters(model, False, False, False))
    pruner = their.NTKSAP(pairs, ntksap_epsilon=0.01, ntksap_R=samples)
    torch.manual_seed(SEED)
    printed = io.StringIO()
    try:
        with quiet(), contextlib.redirect_stdout(printed):
            their.prune_loop(model, nn.CrossEntropyLoss(), pruner, loader, "cpu", 1.0 - target, "exponential",
                             "global", rounds, train_mode=True)
    except SystemExit as stop:
        raise TheirCodeStopped(printed.getvalue().strip() or f"exit {stop.code}") from None
    masks = {names[id(p)]: m.bool().clone() for m, p in pairs}
    scores = {names[id(p)]: pruner.scores[id(p)].clone() for _, p in pairs}
    return masks, scores


def _effective(model: nn.Module, masks: dict[str, Tensor], batch: tuple[Tensor, Tensor]) -> float:
    """Effective sparsity of ``masks`` on ``model`` (their masked layers' ``weight_mask`` buffers enter as they are:
    all ones on a fresh model)."""
    return effective_sparsity(model, masks, batch[0][:1]).effective


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every case of the section: first-round scores and masks after ``T`` rounds against theirs."""
    their = load_ntksap(args.ntksap_repo)
    if len(args.ntksap_targets) != len(args.ntksap_rounds):
        raise SystemExit(f"--ntksap-targets {args.ntksap_targets} and --ntksap-rounds {args.ntksap_rounds} pair up: "
                         "give as many of each")
    pairs = list(zip(args.ntksap_targets, args.ntksap_rounds, strict=True))
    cases = [(args.ntksap_targets[0], 2)] if args.quick else pairs
    models = ["lenet5"] if args.quick else args.ntksap_models
    rows: list[dict[str, Any]] = []
    for name, (target, rounds) in ((n, c) for n in models for c in cases):
        base = their_model(their, name)
        batch = labelled_noise(SHAPES[name], seed=SEED)
        start = time.perf_counter()
        _, their_first = run_theirs(their, copy.deepcopy(base), batch, target, 1, args.ntksap_samples)
        ctx = ScoringContext(base, prunable_parameters(base), batch=batch, seed=SEED)
        first = scores_agree(NTKSAP(samples=args.ntksap_samples).scores(ctx).keep, their_first)
        pruner = get_pruner("ntk_sap", rounds=rounds, seed=SEED, progress=False,
                            scorers=(NTKSAP(samples=args.ntksap_samples),))
        ours = pruner.prune(base, batch, target).masks
        row = {"model": name, "target": target, "rounds": rounds, "samples": args.ntksap_samples,
               **{f"first_round_{k}": v for k, v in first.items()},
               # whether input-output paths survive: 1.0 = none left (the network can only output a constant)
               "effective_sparsity_ours": _effective(base, ours, batch)}
        try:
            theirs, _ = run_theirs(their, copy.deepcopy(base), batch, target, rounds, args.ntksap_samples)
        except TheirCodeStopped as stop:
            row["their_code_stopped"] = str(stop)
            rows.append(row)
            print(f"ntk_sap {name:8s} {target:g} T={rounds:<3d}: their code stopped: {stop}", flush=True)
            continue
        row.update({
            "their_rule": compare(pruner.replace(selector="synaptic_flow").prune(base, batch, target).masks, theirs),
            "our_rule": compare(ours, theirs),
            # context for the Jaccard: their rule with other draws (seed 1; ours equals theirs given the draws)
            "other_seed": compare(pruner.replace(selector="synaptic_flow", seed=SEED + 1).prune(
                base, batch, target).masks, theirs),
            "effective_sparsity_theirs": _effective(base, theirs, batch),
        })
        rows.append(row)
        print(f"ntk_sap {name:8s} {target:g} T={rounds:<3d} R={args.ntksap_samples} first-round scores equal "
              f"{first['scores_bitwise_equal']}  differing {row['their_rule']['differing']:,} (their rule), "
              f"Jaccard {row['our_rule']['jaccard']:.4f} (our rule), {row['other_seed']['jaccard']:.4f} (seed 1)  "
              f"({time.perf_counter() - start:.0f}s)",
              flush=True)
    return {
        "what": "NTK-SAP (github YiteWang/NTK-SAP, Pruners/pruners.py NTKSAP + prune.py prune_loop) against "
                "method='ntk_sap' on the same model and random draws",
        "authors_repo": "<ntksap-repo>",  # a checkout of github YiteWang/NTK-SAP; no machine path in results
        "models": {n: ("LeNet5 (Caffe variant) from their Layers/layers.py, their lottery VGG's _initialize_weights"
                       if n == "lenet5" else f"their Models/lottery_vgg.py {n}") for n in models},
        "batch": "their code reads only its shape: (100, C, H, W)",
        "their_config": "ntksap_epsilon=0.01, prune_train_mode=True, exponential schedule, global scope, "
                        "torch.manual_seed(0)",
        "rows": rows,
    }


def markdown(record: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    lines = [
        "## NTK-SAP: `method=\"ntk_sap\"` vs their `NTKSAP` + `prune_loop`",
        "",
        f"Their code: `{record['authors_repo']}` (github YiteWang/NTK-SAP); {record['their_config']}. Models: "
        + "; ".join(f"**{k}**: {v}" for k, v in record["models"].items()) + ". Same random draws (seed 0) on both "
        "sides. `selector=\"synaptic_flow\"` is their count and tie rule; our default keeps exactly "
        "`floor(m (1 − ρ_i) + 1e-6)`, one weight fewer in some rounds, so later rounds score another mask and the "
        "masks part (Jaccard). For scale, the last column is the Jaccard of their rule with other draws (seed 1) "
        "against seed 0: NTK-SAP's ranking near the threshold is set by its random draws.",
        "",
        "| model | target | T | R | first-round scores bit for bit | max rel. diff | differing (their rule) "
        "| Jaccard (our rule) | Jaccard (their rule, seed 1) | effective sparsity: theirs, ours |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        if "their_code_stopped" in r:
            ours = f"—, {r['effective_sparsity_ours']:.6f}"
            lines.append(
                f"| {r['model']} | {r['target']:g} | {r['rounds']} | {r['samples']} | "
                f"{r['first_round_scores_bitwise_equal']} | {r['first_round_scores_max_rel_diff']:.2e} | their "
                f"`prune_loop` stopped: \"{r['their_code_stopped']}\" | — | — | {ours} |"
            )
            continue
        effective = "—"
        if r.get("effective_sparsity_theirs") is not None:
            effective = f"{r['effective_sparsity_theirs']:.6f}, {r['effective_sparsity_ours']:.6f}"
        lines.append(
            f"| {r['model']} | {r['target']:g} | {r['rounds']} | {r['samples']} | "
            f"{r['first_round_scores_bitwise_equal']} | {r['first_round_scores_max_rel_diff']:.2e} | "
            f"**{r['their_rule']['differing']:,}** of {r['their_rule']['weights']:,} | {r['our_rule']['jaccard']:.4f} "
            f"| {r['other_seed']['jaccard']:.4f} | {effective} |"
        )
    lines += ["", "Effective sparsity: the fraction of weights not on any input-output path of the masked network "
              "(1.000000: no path left, the network outputs a constant); their `prune_loop` stops with the error "
              "quoted where its own final count check fails."]
    return [*lines, ""]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The section's command-line options."""
    parser.add_argument("--ntksap-repo", type=Path, default=None,
                        help="checkout of github YiteWang/NTK-SAP (runs the NTK-SAP section)")
    parser.add_argument("--ntksap-targets", type=float, nargs="+", default=[0.98],
                        help="NTK-SAP's target sparsities, one case each with the matching --ntksap-rounds")
    parser.add_argument("--ntksap-rounds", type=int, nargs="+", default=[20],
                        help="T of each case (their script: 20; --quick: 2)")
    parser.add_argument("--ntksap-samples", type=int, default=1, help="R, weight draws per round (theirs: 1)")
    parser.add_argument("--ntksap-models", nargs="+", default=list(PARITY_MODELS), choices=list(SHAPES),
                        help="models of the NTK-SAP section (--quick: lenet5)")
