"""Parity of ``method="prospr"`` with ProsPr's own code (github ``mil-ad/prospr``), a section of ``authors_parity.py``.

Their ``prospr.prune`` (imported at run time from ``--prospr-repo``, a checkout outside this tree, never copied here)
and our ``ProsPr`` scorer run on the same model — our LeNet5 and VGG19-BN (``lightning_panning.models``, built
under ``torch.manual_seed(0)``) — and the same fixed batch (``N(0, 1)`` images, 10 per class, labels class-major),
with their ``cli.py`` defaults (3 inner steps, inner lr 0.1, no momentum, the same batch in every step), in both
their meta-gradient modes (``full``, the default, and ``first_order``). ProsPr draws nothing at random, so scores
and masks should agree exactly:

* **scores**: their ``return_scores=True`` against our scorer's keep-scores, bit for bit;
* **masks**: their ``keep_mask_from_scores`` (``ceil(m (1 − ρ))`` kept) against ``method="prospr"`` with
  ``selector="top_k_ceil"`` (their count, 0 differing entries expected), and against our default count
  ``floor(m (1 − ρ) + 1e-6)`` (one weight fewer whenever ``m (1 − ρ)`` is not an integer; the kept sets nest).

    python benchmarks/authors_parity.py --prospr-repo ../authors-prospr [--quick]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
from benchmarks.authors_code import quiet
from benchmarks.parity_common import compare, labelled_noise, scores_agree
from lightning_panning import get_pruner, prunable_parameters
from lightning_panning.core import ClassificationLoss, ProsPr, ScoringContext
from lightning_panning.models import VGG19, LeNet5

SEED = 0
#: model → (constructor, input shape)
MODELS: dict[str, tuple[type[nn.Module], tuple[int, ...]]] = {"lenet5": (LeNet5, (1, 28, 28)),
                                                              "vgg19": (VGG19, (3, 32, 32))}
MODES = ("full", "first_order")


def load_prospr(repo: Path) -> ModuleType:
    """Their ``prospr`` package from the checkout ``repo``."""
    repo = repo.resolve()
    if not (repo / "prospr" / "prospr.py").is_file():
        raise SystemExit(f"--prospr-repo {repo} is not a checkout of mil-ad/prospr (no prospr/prospr.py).")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    import prospr
    import prospr.utils

    return prospr


def their_scores(prospr: ModuleType, model: nn.Module, batch: tuple[Tensor, Tensor], target: float,
                 mode: str) -> dict[str, Tensor]:
    """Their ``|meta-gradient|`` per Conv2d/Linear weight, keyed by our parameter names."""
    names = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    loader = DataLoader(TensorDataset(*batch), batch_size=len(batch[1]), shuffle=False)
    filter_fn = prospr.utils.pruning_filter_factory(10, False)
    with quiet():
        scores = prospr.prune(copy.deepcopy(model), target, loader, filter_fn, num_steps=3, inner_lr=0.1,
                              inner_momentum=0.0, method=mode, structured=False, new_data_in_inner=False,
                              return_scores=True)
    return dict(zip(names, scores, strict=True))


def their_masks(prospr: ModuleType, scores: dict[str, Tensor], target: float) -> dict[str, Tensor]:
    """Their ``keep_mask_from_scores`` (``ceil(m (1 − ρ))`` largest kept)."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    masks = prospr.utils.keep_mask_from_scores(flat, 1 - target, list(scores.values()))
    return {n: m.bool() for n, m in zip(scores, masks, strict=True)}


def our_scores(model: nn.Module, batch: tuple[Tensor, Tensor], mode: str) -> dict[str, Tensor]:
    """Our ``ProsPr`` keep-scores on the dense network with the plain cross-entropy."""
    params = prunable_parameters(model)
    ctx = ScoringContext(model, params, batch=batch, loss_fn=ClassificationLoss(1.0), seed=SEED)
    return ProsPr(first_order=mode == "first_order").scores(ctx).keep


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every (model, mode) of the section: scores and masks against theirs."""
    prospr = load_prospr(args.prospr_repo)
    rows: list[dict[str, Any]] = []
    models = ["lenet5"] if args.quick else args.prospr_models
    for name in models:
        build, shape = MODELS[name]
        torch.manual_seed(SEED)
        model = build()
        batch = labelled_noise(shape, seed=SEED)
        for mode in MODES:
            start = time.perf_counter()
            theirs = their_scores(prospr, model, batch, args.prospr_target, mode)
            row: dict[str, Any] = {"model": name, "mode": mode, "target": args.prospr_target,
                                   **scores_agree(our_scores(model, batch, mode), theirs)}
            their = their_masks(prospr, theirs, args.prospr_target)
            pruner = get_pruner("prospr", seed=SEED, progress=False)
            if mode == "first_order":
                pruner = pruner.replace(scorers=(ProsPr(first_order=True),))
            row["their_count"] = compare(pruner.replace(selector="top_k_ceil").prune(
                model, batch, args.prospr_target).masks, their)
            row["our_count"] = compare(pruner.prune(model, batch, args.prospr_target).masks, their)
            rows.append(row)
            print(f"prospr  {name:7s} {mode:11s} scores equal {row['scores_bitwise_equal']}  differing "
                  f"{row['their_count']['differing']:,} (their count), {row['our_count']['differing']:,} (ours)  "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
    return {
        "what": "ProsPr (github mil-ad/prospr, prospr.prune) against method='prospr' on the same model and batch",
        "authors_repo": "<prospr-repo>",  # a checkout of github mil-ad/prospr; no machine path in results
        "models": {n: f"lightning_panning.models.{MODELS[n][0].__name__}() after torch.manual_seed({SEED})"
                   for n in models},
        "batch": "fixed N(0,1) images, 10 per class, labels 0..9 class-major (seed 0)",
        "their_config": "num_steps=3, inner_lr=0.1, inner_momentum=0, new_data_in_inner=False (their cli.py "
                        "defaults), unstructured, every Conv2d/Linear",
        "rows": rows,
    }


def markdown(record: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    lines = [
        "## ProsPr: `method=\"prospr\"` vs their `prospr.prune`",
        "",
        f"Their code: `{record['authors_repo']}` (github mil-ad/prospr). {record['their_config']}. Batch: "
        f"{record['batch']}. ProsPr draws nothing at random, so the scores must agree bit for bit; their count "
        "keeps `ceil(m (1 − ρ))` (`selector=\"top_k_ceil\"`), ours `floor(m (1 − ρ) + 1e-6)`.",
        "",
        "| model | meta-gradient | target | scores bit for bit | max rel. diff | differing (their count) "
        "| differing (our count) | kept ours / theirs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['target']:g} | {r['scores_bitwise_equal']} | "
            f"{r['scores_max_rel_diff']:.2e} | **{r['their_count']['differing']:,}** | "
            f"{r['our_count']['differing']:,} | {r['our_count']['kept_ours']:,} / {r['our_count']['kept_theirs']:,} |"
        )
    return [*lines, ""]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The section's command-line options."""
    parser.add_argument("--prospr-repo", type=Path, default=None,
                        help="checkout of github mil-ad/prospr (runs the ProsPr section)")
    parser.add_argument("--prospr-target", type=float, default=0.98, help="ProsPr's target sparsity")
    parser.add_argument("--prospr-models", nargs="+", default=list(MODELS), choices=list(MODELS),
                        help="models of the ProsPr section (--quick: lenet5)")
