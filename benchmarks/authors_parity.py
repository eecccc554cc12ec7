"""Mask parity of the ``*_authors`` presets with the authors' own code (github ``kangxiatao/RLPanning``).

Builds the authors' LeNet5 (Caffe variant) and VGG19-BN *from their code* with their initialisation
(``models/base/init_utils.weights_init``, applied as their ``main.py`` does), feeds both sides the same fixed
class-balanced batch, runs their pruner functions and ours, and counts the mask entries that differ:

=================== ============================================================ ====================
ours                theirs                                                       their config
=================== ============================================================ ====================
``panning_authors`` ``pruner/panning.py`` ``Panning``                            ``num_iters_prune=T``
``snip_authors``    ``pruner/pruning.py`` ``Single_ranking_pruning(reinit=True)`` ``rank_algo=snip``
``grasp_authors``   the same                                                     ``rank_algo=grasp``
``synflow_authors`` ``pruner/pruning.py`` ``SynFlow``                            ``dynamic=0``
=================== ============================================================ ====================

As information (expected to differ, clearly labelled in the output) it also compares our defaults — ``panning``
(Algorithm 1 as written), ``snip``, ``grasp``, ``synflow`` — with the same functions of theirs (Jaccard index of
the kept sets).

Batches: LeNet5 gets the first 10 images of each class of the real MNIST training set (index order, class-major,
their MNIST normalisation ``(x - 0.5) / 0.5``); VGG19 gets a fixed random ``N(0, 1)`` batch of shape
``(100, 3, 32, 32)`` with labels ``0..9`` ten times each (no CIFAR-10 on this machine). Their code reads the batch
through a non-shuffled ``DataLoader`` whose class-balanced draw (``fetch_data``) returns exactly this batch.

Their code is imported from ``--authors-repo`` at run time (never copied here) and needs ``easydict``,
``tensorboardX`` and ``matplotlib``. Everything runs on CPU in one process with ``--threads`` threads (1 by default,
so that reductions are identical on both sides). This is a correctness check, not a timing.

    python benchmarks/authors_parity.py --authors-repo /path/to/RLPanning
    python benchmarks/authors_parity.py --authors-repo /path/to/RLPanning --quick   # LeNet5 0.98, T=10: a smoke test

Writes ``benchmarks/results/authors_parity.{json,md}`` (``--quick``: ``authors_parity_quick.*``).

Later methods have a section each, in a module of its own, run when their authors' checkout is given (with or
without ``--authors-repo``) and written to ``authors_parity_<section>[_quick].{json,md}``:
``--prospr-repo`` (:mod:`benchmarks.parity_prospr`, ProsPr), ``--ntksap-repo`` (:mod:`benchmarks.parity_ntk_sap`,
NTK-SAP) and ``--px-repo`` (:mod:`benchmarks.parity_px`, PX).

**Layer-wise random and PHEW** (separate sections, their own repositories; either flag alone runs only these and
writes ``authors_parity_random_phew.{json,md}``):

* ``--random-pruning-repo`` (github ``VITA-Group/Random_Pruning``, Liu et al. 2022): their ``Masking.init`` ERK, ER
  and uniform layer densities (``CIFAR/sparselearning/core.py``, run on CPU with ``Tensor.cuda`` as the identity)
  against our :func:`~lightning_panning.core.selection.layer_quotas` on the same layer shapes (LeNet5, VGG19-BN,
  ResNet-20): the same dense layers, and every quota within one weight of their real density × size.
* ``--phew-repo`` (github ``ShreyasMalakarjunPatil/PHEW``): their ``PHEW/phew.py`` ``phew_masks`` with ``random`` and
  ``np.random`` seeded, and our walks with the same seed and their final count, on our LeNet5 (a chain) and, with
  ``--phew-models vgg19``, our VGG19-BN at 98%: differing mask entries (0 expected); and, as information,
  ``method="phew"`` at the exact keep count (Jaccard) and the seconds of one call of each.

    python benchmarks/authors_parity.py --random-pruning-repo /path/to/Random_Pruning --phew-repo /path/to/PHEW
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
import lightning_panning
from benchmarks import parity_ntk_sap, parity_prospr, parity_px
from benchmarks.authors_code import load_authors, quiet, their_config, their_model
from benchmarks.parity_common import compare
from benchmarks.sweep.provenance import git_state, scrub_command
from lightning_panning import get_pruner
from lightning_panning.models import VGG19, LeNet5, authors_init

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 0

#: our preset → (their function, the config keys it reads)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "panning_authors": ("pruner/panning.py Panning", {}),
    "snip_authors": ("pruner/pruning.py Single_ranking_pruning(reinit=True), rank_algo=snip", {"grad_mode": 3}),
    "grasp_authors": ("pruner/pruning.py Single_ranking_pruning(reinit=True), rank_algo=grasp", {"grad_mode": 0}),
    "synflow_authors": ("pruner/pruning.py SynFlow(dynamic=0)", {}),
}
#: our default method compared (as information) with the authors' function of the preset
DEFAULTS: dict[str, str] = {"panning": "panning_authors", "snip": "snip_authors", "grasp": "grasp_authors",
                            "synflow": "synflow_authors"}


# -- the authors' code ----------------------------------------------------------------------------------------------
def run_theirs(authors: SimpleNamespace, preset: str, model: nn.Module, loader: DataLoader, target: float,
               rounds: int) -> dict[str, Tensor]:
    """Their masks for ``preset``'s function, keyed by our parameter names (``{name}.weight``)."""
    names = {m: f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    config = their_config(authors, target, rounds, **PRESETS[preset][1])
    torch.manual_seed(SEED)  # their one-shot scorers re-initialise the Linear layers from the global RNG
    with quiet():
        if preset == "panning_authors":
            masks, _ = authors.Panning(model, loader, "cpu", config)
        elif preset in ("snip_authors", "grasp_authors"):
            masks, _ = authors.Single_ranking_pruning(model, target, loader, "cpu", config, reinit=True, retrun_inf=1)
        else:
            masks, _ = authors.SynFlow(model, target, loader, "cpu", rounds, dynamic=False)
    return {names[m]: mask.bool() for m, mask in masks.items()}


def run_ours(method: str, model: nn.Module, batch: tuple[Tensor, Tensor], target: float,
             rounds: int) -> dict[str, Tensor]:
    """Our masks for ``method`` (seed 0: the Xavier draws equal theirs after ``torch.manual_seed(0)``)."""
    return get_pruner(method, rounds=rounds, seed=SEED, progress=False).prune(model, batch, target).masks


# -- data ---------------------------------------------------------------------------------------------------------
def mnist_batch(data_dir: Path) -> tuple[Tensor, Tensor]:
    """The first 10 training images of each digit (index order), class-major, normalised as their code does."""
    from torchvision.datasets import MNIST

    train = MNIST(str(data_dir), train=True, download=False)
    index = torch.cat([torch.nonzero(train.targets == c).squeeze(1)[:10] for c in range(10)])
    x = (train.data[index].float().div(255.0) - 0.5) / 0.5
    return x.unsqueeze(1), train.targets[index].clone()


def random_batch() -> tuple[Tensor, Tensor]:
    """A fixed N(0, 1) batch (100, 3, 32, 32) with labels 0..9 ten times each, class-major."""
    g = torch.Generator().manual_seed(SEED)
    return torch.randn(100, 3, 32, 32, generator=g), torch.arange(10).repeat_interleave(10)


# -- comparison ---------------------------------------------------------------------------------------------------
def init_parity(authors: SimpleNamespace, name: str) -> dict[str, Any]:
    """Do our models with ``init="authors"`` equal theirs bit for bit from the same seed?"""
    theirs = their_model(authors, name, SEED)
    torch.manual_seed(SEED)
    if name == "lenet5":
        ours: nn.Module = LeNet5()
        note = "LeNet5() after torch.manual_seed(0) vs their lenet('mnist') + weights_init"
    else:
        ours = VGG19()
        authors_init(ours)  # their VGG applies weights_init in its constructor and main.py applies it again
        note = "VGG19() + a second authors_init (their constructor and main.py both apply it) vs their VGG"
    pairs = list(zip(ours.parameters(), theirs.parameters(), strict=True))
    equal = all(a.shape == b.shape and torch.equal(a, b) for a, b in pairs)
    return {"model": name, "tensors": len(pairs), "bitwise_equal": equal, "note": note}


# -- driver -------------------------------------------------------------------------------------------------------
def cases(args: argparse.Namespace) -> list[tuple[str, float, int]]:
    """(model, target, rounds) to run."""
    out = [("lenet5", t, args.rounds) for t in args.targets]
    out += [("vgg19", t, args.vgg_rounds) for t in args.vgg_targets]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    authors = load_authors(args.authors_repo)
    batches: dict[str, tuple[Tensor, Tensor]] = {}
    rows: list[dict[str, Any]] = []
    info: list[dict[str, Any]] = []
    models = sorted({m for m, _, _ in cases(args)})
    for model_name in models:
        batches[model_name] = mnist_batch(args.data_dir) if model_name == "lenet5" else random_batch()
    for model_name, target, rounds in cases(args):
        batch = batches[model_name]
        loader = DataLoader(TensorDataset(*batch), batch_size=len(batch[1]), shuffle=False)
        base = their_model(authors, model_name, SEED)
        theirs: dict[str, dict[str, Tensor]] = {}  # each of their functions runs once per case
        for preset in args.methods:
            start = time.perf_counter()
            theirs[preset] = run_theirs(authors, preset, copy.deepcopy(base), loader, target, rounds)
            result = compare(run_ours(preset, copy.deepcopy(base), batch, target, rounds), theirs[preset])
            one_shot = preset in ("snip_authors", "grasp_authors")
            rows.append({"model": model_name, "method": preset, "authors_function": PRESETS[preset][0],
                         "target": target, "rounds": 1 if one_shot else rounds, **result})
            print(f"{model_name:7s} {preset:16s} {target:<7g} T={rows[-1]['rounds']:<3d} differing "
                  f"{result['differing']:>8,d} of {result['weights']:,}  ({time.perf_counter() - start:.0f}s)",
                  flush=True)
        for default, preset in DEFAULTS.items():
            if preset not in args.methods or default not in args.defaults:
                continue
            result = compare(run_ours(default, copy.deepcopy(base), batch, target, rounds), theirs[preset])
            info.append({"model": model_name, "ours": default, "authors_function": PRESETS[preset][0],
                         "target": target, "rounds": 1 if default in ("snip", "grasp") else rounds, **result})
            print(f"{model_name:7s} (info) {default:9s} {target:<7g} Jaccard {result['jaccard']:.4f}", flush=True)
    return {
        "command": scrub_command(" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])), **git_state(),
        "what": "mask entries that differ between our *_authors presets and the authors' own functions, same model "
        "(theirs, their init) and batch",
        "batches": {
            "lenet5": "real MNIST training set, first 10 images of each digit (index order), class-major, "
            "(x/255 - 0.5) / 0.5",
            "vgg19": "fixed random N(0,1) batch (100, 3, 32, 32), seed 0, labels 0..9 ten times each (no CIFAR-10 "
            "on this machine)",
        },
        "models": {"lenet5": "their models/base/lenet.py LeNet_5_Caffe + weights_init",
                   "vgg19": "their models/base/vgg.py VGG(depth=19, batchnorm=True) + weights_init (as main.py)"},
        "init_parity": [init_parity(authors, m) for m in models],
        "parity": rows,
        "information_defaults_vs_authors": info,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "lightning_panning": lightning_panning.__version__},
        "authors_repo": str(args.authors_repo),
        "loadavg": os.getloadavg(),
    }


# -- layer-wise random (VITA-Group/Random_Pruning) and PHEW (ShreyasMalakarjunPatil/PHEW) -------------------------
#: Densities of the ERK/ER/uniform comparison (their ``--density``).
LAYERWISE_DENSITIES = (0.2, 0.1, 0.05, 0.02, 0.01, 0.001)
#: PHEW parity: (their ``prune_perc``, seed).
PHEW_CASES = ((98.0, 0), (99.0, 0), (99.0, 1), (99.9, 0))


def _layerwise_models() -> dict[str, nn.Module]:
    from lightning_panning.models import ResNet20

    torch.manual_seed(SEED)
    return {"lenet5": LeNet5(), "vgg19": VGG19(), "resnet20": ResNet20()}


def their_masking(repo: Path, model: nn.Module, mode: str, density: float) -> tuple[Any, str]:
    """Their ``Masking.add_module(model, density, sparse_init=mode)`` on a copy of ``model``, on the CPU.

    Returns their ``Masking`` (``.masks``: ``{param name: float 0/1 mask}``, the weights' shapes) and what it printed.
    """
    sys.path.insert(0, str(Path(repo).resolve() / "CIFAR"))
    from sparselearning.core import Masking  # type: ignore[import-not-found]

    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]  # their code calls .cuda()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            masking = Masking(None, args=SimpleNamespace(fix=True, update_frequency=100))
            masking.add_module(copy.deepcopy(model), density=density, sparse_init=mode)
    finally:
        torch.Tensor.cuda = cuda  # type: ignore[method-assign]
    return masking, out.getvalue()


def their_layer_densities(repo: Path, model: nn.Module, mode: str, density: float) -> dict[str, float]:
    """Their ``Masking.add_module(model, density, sparse_init=mode)`` per-layer densities (``{param name: d}``)."""
    import re

    masking, printed = their_masking(repo, model, mode, density)
    if mode == "uniform":
        return dict.fromkeys(masking.masks, density)
    found = dict(re.findall(r"layer: (\S+), shape: .*?, density: (\S+)", printed))
    return {name: float(found[name]) for name in masking.masks}


def erk_parity(repo: Path) -> list[dict[str, Any]]:
    """Their ERK/ER/uniform layer densities against our quotas, on the same shapes."""
    from lightning_panning.core import layer_quotas, prunable_parameters
    from lightning_panning.core.schedules import keep_count

    rows = []
    for model_name, model in _layerwise_models().items():
        params = prunable_parameters(model)
        shapes = {n: tuple(p.shape) for n, p in params.items()}
        total = sum(p.numel() for p in params.values())
        for mode, ours_mode in (("ERK", "erk"), ("ER", "er"), ("uniform", "uniform")):
            for density in LAYERWISE_DENSITIES:
                theirs = their_layer_densities(repo, model, mode, density)
                quotas = layer_quotas(shapes, keep_count(total, 1 - density), ours_mode)
                off = {n: quotas[n] - theirs[n] * params[n].numel() for n in params if n in theirs}
                rows.append({
                    "model": model_name, "mode": mode, "density": density, "layers": len(params),
                    "same_layers": sorted(theirs) == sorted(params),
                    "dense_ours": sorted(n for n in params if quotas[n] == params[n].numel()),
                    "dense_theirs": sorted(n for n, d in theirs.items() if d >= 1.0),
                    "max_weights_off": max(abs(v) for v in off.values()),
                    "max_density_off": max(abs(quotas[n] / params[n].numel() - theirs[n]) for n in off),
                    "kept_ours": sum(quotas.values()),
                    "kept_theirs_expected": sum(theirs[n] * params[n].numel() for n in theirs),
                })
                r = rows[-1]
                print(f"{model_name:8s} {mode:7s} d={density:<6g} dense ours/theirs {len(r['dense_ours'])}/"
                      f"{len(r['dense_theirs'])}  max off {r['max_weights_off']:.3f} weights", flush=True)
    return rows


@contextlib.contextmanager
def numpy2_choice() -> Iterator[None]:
    """``np.random.choice(..., 1, p)`` returning a 0-d array, so their ``int(choice(...))`` runs on NumPy ≥ 2.3.

    NumPy 2.3 removed ``int()`` of a one-element 1-d array, which their code relies on; the draw is the same one
    (``choice`` with ``size=1`` draws one uniform number), only its container changes.
    """
    import numpy as np

    original = np.random.choice

    def choice(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        return out.reshape(()) if isinstance(out, np.ndarray) and out.shape == (1,) else out

    np.random.choice = choice
    try:
        yield
    finally:
        np.random.choice = original


def load_phew(repo: Path) -> Any:
    """Their ``PHEW/phew.py`` module from a checkout of github ``ShreyasMalakarjunPatil/PHEW``."""
    sys.path.insert(0, str(Path(repo).resolve()))
    from PHEW import phew as their_phew  # type: ignore[import-not-found]

    return their_phew


def their_phew_masks(their_phew: Any, model: nn.Module, prune_perc: float, seed: int) -> dict[str, Tensor]:
    """Their ``phew_masks(model, prune_perc)`` with ``random`` and ``np.random`` seeded with ``seed``.

    Returns:
        ``{param name: bool mask}`` for every parameter of more than one dimension (their order); ``model`` is
        not modified (their function works on a deep copy of it).
    """
    import random

    import numpy as np

    names = [n for n, p in model.named_parameters() if p.dim() > 1]
    random.seed(seed)
    np.random.seed(seed)
    with quiet(), numpy2_choice():
        masks, _ = their_phew.phew_masks(model, prune_perc, verbose=False)
    return {n: m.bool() for n, m in zip(names, masks, strict=True)}


#: PHEW cases per model: (prune %, seed). VGG19-BN gets the speed benchmark's target only: their walk is Python per
#: entry and grows with the kept weights (46× LeNet5's at 98%).
PHEW_MODEL_CASES = {"lenet5": PHEW_CASES, "vgg19": ((98.0, 0),)}


def _phew_model(name: str) -> tuple[nn.Module, Tensor]:
    """Our LeNet5 or VGG19-BN (CIFAR-10 shapes) under ``torch.manual_seed(SEED)``, and a one-sample example input."""
    from lightning_panning.models import VGG19

    torch.manual_seed(SEED)
    if name == "lenet5":
        return LeNet5(), torch.zeros(1, 1, 28, 28)
    return VGG19(num_classes=10), torch.zeros(1, 3, 32, 32)


def phew_parity(repo: Path, quick: bool = False, models: Sequence[str] = ("lenet5",)) -> dict[str, Any]:
    """Their ``phew_masks`` against our walks on our LeNet5 and/or VGG19-BN (same init, same seeds).

    Each row also records the seconds of their call and of ours (the walk at their count; ``method="phew"`` at the
    exact count) and the machine's load average, as information: one call each, not a timing benchmark.
    """
    from lightning_panning.core import prunable_parameters
    from lightning_panning.core.phew import layer_graph, phew_order

    their_phew = load_phew(repo)
    rows, info = [], []
    for name in models:
        model, example = _phew_model(name)
        params = prunable_parameters(model)
        graph = layer_graph(model, params, example)
        cases = PHEW_MODEL_CASES[name]
        for perc, seed in cases[:1] if quick else cases:
            load = os.getloadavg()[0]
            start = time.perf_counter()
            theirs = their_phew_masks(their_phew, model, perc, seed)
            their_seconds = time.perf_counter() - start
            kept = sum(int(m.sum()) for m in theirs.values())
            start = time.perf_counter()
            order = phew_order(graph, kept, seed)
            walk_seconds = time.perf_counter() - start
            ours = {n: torch.from_numpy(order[n] > 0) for n in params}
            rows.append({"model": name, "prune_perc": perc, "seed": seed, **compare(ours, theirs),
                         "their_target_count": int((1 - perc / 100.0) * sum(p.numel() for p in params.values())),
                         "their_seconds": their_seconds, "our_walk_seconds": walk_seconds, "load_before": load})
            print(f"phew {name} {perc}% seed {seed}: kept {kept}, differing {rows[-1]['differing']} "
                  f"(theirs {their_seconds:.0f}s, our walk {walk_seconds:.1f}s)", flush=True)
            start = time.perf_counter()
            masks_default = get_pruner("phew", seed=seed, progress=False).prune(model, None, perc / 100.0,
                                                                               example_input=example).masks
            info.append({"model": name, "prune_perc": perc, "seed": seed, **compare(masks_default, theirs),
                         "our_seconds": time.perf_counter() - start,
                         "density_ours": {n: float(m.float().mean()) for n, m in masks_default.items()},
                         "density_theirs": {n: float(m.float().mean()) for n, m in theirs.items()}})
    described = {"lenet5": "our LeNet5 (lightning_panning.models.LeNet5)",
                 "vgg19": "our VGG19-BN (lightning_panning.models.VGG19, 10 classes, 32×32)"}
    return {"model": ", ".join(described[m] for m in models) + f", torch.manual_seed({SEED}), in both",
            "parity": rows, "information_exact_count": info}


def layerwise_markdown(record: dict[str, Any]) -> list[str]:
    """The Markdown sections of the ERK/ER/uniform and PHEW comparisons (empty when neither ran)."""
    lines: list[str] = []
    if record.get("erk_parity"):
        lines += [
            "## Layer-wise densities vs VITA-Group/Random_Pruning (`Masking.init`: ERK, ER, uniform)",
            "",
            "Theirs: the real density of each layer (their masks are then Bernoulli draws at it). Ours: exact quotas",
            "(`layer_quotas`, the keep count floor(m·d + 1e-6) shared out by largest remainders). Agreement means",
            "the same dense layers and every quota within one weight of their density × size.",
            "",
            "| model | mode | density | same layers | dense (ours / theirs) | same dense | max quota − theirs |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in record["erk_parity"]:
            lines.append(
                f"| {r['model']} | {r['mode']} | {r['density']:g} | {r['same_layers']} | {len(r['dense_ours'])} / "
                f"{len(r['dense_theirs'])} | {r['dense_ours'] == r['dense_theirs']} | {r['max_weights_off']:.3f} |"
            )
        lines.append("")
    if record.get("phew_parity"):
        phew = record["phew_parity"]
        lines += [
            "## PHEW vs ShreyasMalakarjunPatil/PHEW (`PHEW/phew.py` `phew_masks`)",
            "",
            f"Model: {phew['model']}. Their `random` and `np.random` seeded with the seed; ours walk with the same",
            "seed until their final count (their walks finish the walk that reaches the target, ours stop at it).",
            "",
            "| model | prune % | seed | their target | kept (theirs) | kept (ours) | differing entries | "
            "their call (s) | our walk (s) | load before |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in phew["parity"]:
            secs = (f"{r['their_seconds']:.1f} | {r['our_walk_seconds']:.2f} | {r['load_before']:.2f}"
                    if "their_seconds" in r else "– | – | –")
            lines.append(f"| {r['model']} | {r['prune_perc']:g} | {r['seed']} | {r['their_target_count']:,} | "
                         f"{r['kept_theirs']:,} | {r['kept_ours']:,} | **{r['differing']:,}** | {secs} |")
        lines += ["", "Information: `method=\"phew\"` at our exact keep count against their masks:", "",
                  "| model | prune % | seed | kept (ours) | kept (theirs) | Jaccard | ours (s) |",
                  "|---|---|---|---|---|---|---|"]
        for r in phew["information_exact_count"]:
            ours_s = f"{r['our_seconds']:.2f}" if "our_seconds" in r else "–"
            lines.append(f"| {r.get('model', 'lenet5')} | {r['prune_perc']:g} | {r['seed']} | {r['kept_ours']:,} | "
                         f"{r['kept_theirs']:,} | {r['jaccard']:.4f} | {ours_s} |")
        lines += ["", "Seconds: one call each on a machine that may be busy (the load average before the call is "
                  "given); information, not a timing benchmark (`prune_speed.py` is).", ""]
    return lines


def markdown(record: dict[str, Any]) -> str:
    lines = [
        "# Mask parity with the authors' code",
        "",
        "Written by `benchmarks/authors_parity.py`; reproduce with:",
        "",
        "```bash",
        record["command"],
        "```",
        "",
        f"Their code: `{record['authors_repo']}` (github kangxiatao/RLPanning), imported at run time. CPU, "
        f"{record['threads']} thread(s), torch {record['versions']['torch']}.",
        "",
        "Batches: " + "; ".join(f"**{k}**: {v}" for k, v in record["batches"].items()) + ".",
        "",
        "Models: " + "; ".join(f"**{k}**: {v}" for k, v in record["models"].items()) + ".",
        "",
        "## Our presets vs their functions (same model, same batch)",
        "",
        "| model | ours | theirs | target | rounds | weights | kept (ours) | kept (theirs) | differing entries |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["parity"]:
        lines.append(
            f"| {r['model']} | `{r['method']}` | {r['authors_function']} | {r['target']:g} | {r['rounds']} | "
            f"{r['weights']:,} | {r['kept_ours']:,} | {r['kept_theirs']:,} | **{r['differing']:,}** |"
        )
    total = sum(r["differing"] for r in record["parity"])
    lines += ["", f"Differing entries in all: **{total:,}**."]
    short = sorted({r["rounds"] for r in record["parity"] if r["model"] == "vgg19" and r["rounds"] > 1})
    if short and max(short) < 100:
        lines += ["", f"VGG19's iterative runs use T = {max(short)} rounds instead of the paper's 100, to keep the run "
                  "short: their Panning recomputes SNIP and GraSP every round (about half a minute per VGG19 round "
                  "on a shared CPU with 1 thread). The schedule still crosses Table 3's rows, so the stage rule is "
                  "exercised."]
    if any(r["kept_theirs"] == 0 for r in record["parity"]):
        lines += ["", "Where their function kept no weight, its network lost every input-output path in an earlier "
                  "round; SynFlow is then 0 everywhere, their normalisation divides 0 by 0 and every fused score is "
                  "NaN, so nothing is kept (the preset does the same and logs a warning)."]
    lines.append("")
    lines += ["## Initialisation", "", "| model | tensors | bit-for-bit equal | how |", "|---|---|---|---|"]
    for r in record["init_parity"]:
        lines.append(f"| {r['model']} | {r['tensors']} | {r['bitwise_equal']} | {r['note']} |")
    if record["information_defaults_vs_authors"]:
        lines += [
            "",
            "## Information only: our defaults vs their functions (these are meant to differ)",
            "",
            "Our defaults follow the paper (Algorithm 1 scores the *masked* network every round, order-preserving",
            "`rms` normalisation, Table 3 rows by the round's sparsity, exact keep counts) and leave out their",
            "defects (the Linear re-initialisation of one-shot SNIP/GraSP); see `docs/differences.md`.",
            "",
            "| model | ours (default) | theirs | target | rounds | kept (ours) | kept (theirs) | differing | Jaccard |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in record["information_defaults_vs_authors"]:
            lines.append(
                f"| {r['model']} | `{r['ours']}` | {r['authors_function']} | {r['target']:g} | {r['rounds']} | "
                f"{r['kept_ours']:,} | {r['kept_theirs']:,} | {r['differing']:,} | {r['jaccard']:.4f} |"
            )
    lines += ["", *layerwise_markdown(record)]
    lines += ["", f"Machine load average at the end: {', '.join(f'{x:.2f}' for x in record['loadavg'])}.", ""]
    return "\n".join(lines)


def layerwise_only_markdown(record: dict[str, Any]) -> str:
    """The report of a run with only ``--random-pruning-repo`` / ``--phew-repo``."""
    lines = ["# Parity of layer-wise random pruning and PHEW with the authors' code", "",
             "Written by `benchmarks/authors_parity.py`; reproduce with:", "", "```bash", record["command"], "```",
             "", f"CPU, {record['threads']} thread(s), torch {record['versions']['torch']}.", "",
             *layerwise_markdown(record)]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--authors-repo", type=Path, default=None, help="checkout of github kangxiatao/RLPanning (required)")
    p.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets",
                   help="torchvision root holding MNIST/raw (default ../shared/datasets)")
    p.add_argument("--targets", type=float, nargs="+", default=[0.98, 0.999, 0.9999], help="LeNet5 targets")
    p.add_argument("--rounds", type=int, default=100, help="T for LeNet5 (default 100, the paper's)")
    p.add_argument("--vgg-targets", type=float, nargs="*", default=[0.98], help="VGG19 targets (none: skip VGG19)")
    p.add_argument("--vgg-rounds", type=int, default=100, help="T for VGG19")
    p.add_argument("--methods", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--defaults", nargs="*", default=list(DEFAULTS), choices=list(DEFAULTS),
                   help="our defaults to compare as information (none: skip)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="LeNet5 at 0.98 with T=10 only (a smoke test)")
    p.add_argument("--random-pruning-repo", type=Path, default=None,
                   help="checkout of github VITA-Group/Random_Pruning: compare ERK/ER/uniform layer densities")
    p.add_argument("--phew-repo", type=Path, default=None,
                   help="checkout of github ShreyasMalakarjunPatil/PHEW: compare PHEW masks")
    p.add_argument("--phew-models", nargs="+", default=["lenet5"], choices=list(PHEW_MODEL_CASES),
                   help="PHEW: the models (vgg19: 98%% only; their walk takes tens of minutes there)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--markdown-only", action="store_true",
                   help="rewrite the Markdown from the JSON already in --out (no pruning)")
    for section in SECTIONS.values():
        section.add_arguments(p)
    args = p.parse_args(argv)
    if args.quick:
        args.targets, args.rounds, args.vgg_targets = [0.98], 10, []
    sections = [name for name in SECTIONS if getattr(args, f"{name}_repo") is not None]
    if args.random_pruning_repo or args.phew_repo:
        sections += ["random_pruning/phew"]
    if args.authors_repo is None and not sections and not args.markdown_only:
        p.error("give --authors-repo (a checkout of github kangxiatao/RLPanning) and/or a section's checkout: "
                + ", ".join(f"--{name.replace('_', '')}-repo" for name in SECTIONS)
                + ", --random-pruning-repo, --phew-repo")
    return args


#: Sections of later methods: name → module with ``add_arguments``, ``run`` and ``markdown``; each runs when its
#: ``--<name>-repo`` is given.
SECTIONS = {"prospr": parity_prospr, "ntksap": parity_ntk_sap, "px": parity_px}


def run_sections(args: argparse.Namespace) -> dict[str, Any]:
    """Run every section whose checkout is given; write ``authors_parity_<section>[_quick].{json,md}``."""
    torch.set_num_threads(args.threads)
    records: dict[str, Any] = {}
    for name, section in SECTIONS.items():
        if getattr(args, f"{name}_repo") is None:
            continue
        record = {"command": scrub_command(" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])),
                  **git_state(), **section.run(args), "threads": torch.get_num_threads(), "device": "cpu",
                  "versions": {"python": platform.python_version(), "torch": torch.__version__,
                               "lightning_panning": lightning_panning.__version__}}
        stem = f"authors_parity_{name}" + ("_quick" if args.quick else "")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text("\n".join(["# Mask parity with the authors' code", "",
                                                        f"Reproduce with `{record['command']}`.", "",
                                                        *section.markdown(record)]))
        print(f"wrote {args.out / stem}.json and .md")
        records[name] = record
    return records


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    layerwise_only = args.authors_repo is None and bool(args.random_pruning_repo or args.phew_repo)
    stem = "authors_parity_quick" if args.quick else "authors_parity"
    if layerwise_only:
        stem = stem.replace("authors_parity", "authors_parity_random_phew")
    render = layerwise_only_markdown if layerwise_only else markdown
    requested = [name for name in SECTIONS if getattr(args, f"{name}_repo") is not None]
    if args.markdown_only and requested:  # the sections named by their --<name>-repo, from their JSON
        written = {}
        for name in requested:
            section_stem = f"authors_parity_{name}" + ("_quick" if args.quick else "")
            record = json.loads((args.out / f"{section_stem}.json").read_text())
            (args.out / f"{section_stem}.md").write_text("\n".join([
                "# Mask parity with the authors' code", "", f"Reproduce with `{record['command']}`.", "",
                *SECTIONS[name].markdown(record)]))
            written[name] = record
        return written
    if args.markdown_only:
        record = json.loads((args.out / f"{stem}.json").read_text())
        (args.out / f"{stem}.md").write_text(render(record))
        return record
    sections = run_sections(args)
    if layerwise_only:
        torch.set_num_threads(args.threads)
        record = {"command": scrub_command(" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])),
                  **git_state(), "threads": torch.get_num_threads(), "device": "cpu",
                  "versions": {"python": platform.python_version(), "torch": torch.__version__,
                               "lightning_panning": lightning_panning.__version__},
                  "loadavg": os.getloadavg()}
    elif args.authors_repo is None:
        return sections
    else:
        record = run(args)
    if args.random_pruning_repo is not None:
        record["erk_parity"] = erk_parity(args.random_pruning_repo)
    if args.phew_repo is not None:
        record["phew_parity"] = phew_parity(args.phew_repo, quick=args.quick, models=args.phew_models)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(render(record))
    print(f"wrote {args.out / stem}.json and .md")
    return {**record, **({"sections": sections} if sections else {})}


if __name__ == "__main__":
    main()
