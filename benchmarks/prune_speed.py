"""Seconds per pruning round and peak memory: ``lightning_panning`` against the authors' own code, in one process.

The authors' code (github ``kangxiatao/RLPanning``, given with ``--authors-repo``; imported at run time, never
copied) and ours run side by side in the same process on the same model — theirs, LeNet5 (Caffe variant) or
VGG19-BN, with their initialisation — and the same 100-sample batch (10 per class, fixed random images), target
0.98. Variants, by group:

* ``panning``: ``theirs`` = their ``pruner/panning.py`` ``Panning``; ``ours_authors`` = ``panning_authors`` (the
  same masks bit for bit; SNIP/GraSP of the unmasked network are computed once, in round 1, and reused);
  ``ours_default`` = ``panning``, Algorithm 1 as written (SNIP/GraSP of the *masked* network every round, so one
  forward + double backward + SynFlow pass per round, more work than theirs per round).
* ``synflow``: ``theirs`` = their iterative ``SynFlow``; ``ours_authors`` = ``synflow_authors``;
  ``ours_default`` = ``synflow``.
* ``oneshot``: one round of ``Single_ranking_pruning`` (SNIP, GraSP) against ``snip_authors`` / ``grasp_authors``.
* ``prospr`` (needs ``--prospr-repo``, github ``mil-ad/prospr``): their ``prospr.prune`` (one shot, their defaults)
  against ``prospr`` with their count (``ours_authors``, ``selector="top_k_ceil"``) and ours (``ours_default``), on
  our LeNet5 / VGG19-BN (``lightning_panning.models``).
* ``ntk_sap`` (needs ``--ntksap-repo``, github ``YiteWang/NTK-SAP``): their ``NTKSAP`` + ``prune_loop`` against
  ``ntk_sap`` with their selection rule (``ours_authors``, ``selector="synaptic_flow"``) and ours, on a LeNet5 of their
  masked layers and their ``lottery_vgg.vgg19_bn`` (their code runs only on such models).
* ``phew`` (needs ``--phew-repo``, github ``ShreyasMalakarjunPatil/PHEW``): their ``PHEW/phew.py`` ``phew_masks``
  (``random`` and ``np.random`` seeded) against ``phew`` (``ours_default``, our exact keep count and our seeded
  walks), on our LeNet5 / VGG19-BN. Data-free and one shot.
* ``random_erk`` (needs ``--random-pruning-repo``, github ``VITA-Group/Random_Pruning``): their ``Masking.add_module``
  with ``sparse_init="ERK"`` against ``random_erk`` (``ours_default``), on our LeNet5 / VGG19-BN. Data-free.
* ``px`` (needs ``--px-repo``, github ``iurada/px-ntk-pruning``): their ``PX`` driven by their training script's
  loop against ``px_authors`` (their name and count rule, ``ours_authors``) and ``px`` (``ours_default``), on a LeNet5
  of their masked layers and their ``lottery_vgg.vgg19_bn``.

These two groups have no bit-for-bit preset: their masks are compared with ``ours_default``'s, which keeps the exact
count and draws its own random numbers, so entries differ by design. Parity with the same draws and their count is
``benchmarks/authors_parity.py --phew-repo/--random-pruning-repo``.

Each measurement prunes a fresh deep copy of the model with ``R`` rounds (``--rounds``; the cost of a round does not
depend on its index or the schedule). s/round: theirs = wall time of the call ÷ R (their setup included); ours =
per-round times of a session (round 1 includes ``start``). For ``ours_authors`` in the panning group the reported
s/round is the amortised mean over the paper's T = 100 rounds, ``(round 1 + 99 × median later round) / 100``.
Memory: each variant's call is run once more on its own in a fresh (spawned) process, and the peak RSS during the
call minus the RSS just before it is reported (Linux ``VmHWM`` reset through ``/proc/self/clear_refs``; a 2 ms
sampler where that is unavailable), with ``torch.cuda.max_memory_allocated`` on a GPU. A fresh process is needed:
in the timing process the allocator keeps the pages of earlier calls resident, so later calls show no increase.
Variants alternate in a rotating order for ``--repeats`` repeats, so load from other processes hits all of them
alike; medians are reported, and each speed-up is also tested paired by repeat (:func:`paired_speedup`:
geometric mean of the per-repeat ratios, 95% CI, t-test of the log ratios). Masks of ``ours_authors``
(``ours_default`` where a group has no preset) and ``theirs`` after the same R rounds are compared (differing
entries). The record carries the git commit of the code that ran.

    python benchmarks/prune_speed.py --authors-repo /path/to/RLPanning                  # both models, 2 threads
    python benchmarks/prune_speed.py --authors-repo /path/to/RLPanning --quick --out /tmp/speed   # a smoke test
    python benchmarks/prune_speed.py --prospr-repo ../authors-prospr --ntksap-repo ../authors-ntksap \
        --phew-repo ../authors-phew --random-pruning-repo ../authors-randompruning \
        --groups prospr ntk_sap phew random_erk                                   # the later methods alone

Writes ``prune_speed.json`` and ``prune_speed.md`` to ``--out`` (default ``benchmarks/results``), with the machine
load (``os.getloadavg``) and the thread count. Timings are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import math
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable
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
from benchmarks.authors_parity import load_phew, their_masking, their_phew_masks
from benchmarks.sweep.provenance import git_state
from lightning_panning import get_pruner
from lightning_panning.models import VGG19, LeNet5

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.98
T = 100
SEED = 0
MODELS = {"lenet5": ("LeNet5", (1, 28, 28)), "vgg19": ("VGG19-BN", (3, 32, 32))}
#: group → {variant: ours method or the authors' function}
GROUPS: dict[str, dict[str, str]] = {
    "panning": {"theirs": "Panning", "ours_authors": "panning_authors", "ours_default": "panning"},
    "synflow": {"theirs": "SynFlow", "ours_authors": "synflow_authors", "ours_default": "synflow"},
    "oneshot_snip": {"theirs": "Single_ranking_pruning/snip", "ours_authors": "snip_authors", "ours_default": "snip"},
    "oneshot_grasp": {"theirs": "Single_ranking_pruning/grasp", "ours_authors": "grasp_authors",
                      "ours_default": "grasp"},
}
ONE_SHOT = {"oneshot_snip", "oneshot_grasp", "prospr", "phew", "random_erk"}
GROUPS["prospr"] = {"theirs": "prospr.prune", "ours_authors": "prospr", "ours_default": "prospr"}
GROUPS["ntk_sap"] = {"theirs": "NTKSAP", "ours_authors": "ntk_sap", "ours_default": "ntk_sap"}
GROUPS["phew"] = {"theirs": "PHEW.phew_masks", "ours_default": "phew"}  # no bit-for-bit preset (see above)
GROUPS["random_erk"] = {"theirs": "Masking.add_module(ERK)", "ours_default": "random_erk"}
GROUPS["px"] = {"theirs": "PX", "ours_authors": "px_authors", "ours_default": "px"}
#: settings over the method's preset for a (group, variant): their count / selection rule
SETTINGS: dict[tuple[str, str], dict[str, Any]] = {("prospr", "ours_authors"): {"selector": "top_k_ceil"},
                                                   ("ntk_sap", "ours_authors"): {"selector": "synaptic_flow"}}
#: group → the checkout it needs (``--<repo>``); the others need ``--authors-repo`` (RLPanning)
REPOS: dict[str, str] = {"prospr": "prospr_repo", "ntk_sap": "ntksap_repo", "phew": "phew_repo",
                         "random_erk": "random_pruning_repo", "px": "px_repo"}
#: (model, group) where the authors' function is slow, and why: without ``--slow-theirs`` ours alone is timed there
THEIRS_NOT_RUN: dict[tuple[str, str], str] = {
    ("vgg19", "phew"): "their `phew_masks` builds its probabilities and walks entry by entry in Python, so its time "
                       "grows with the kept weights (LeNet5 above); VGG19-BN keeps 46× LeNet5's count at 0.98 "
                       "(about 5 minutes per call here); `--slow-theirs` runs it",
}
#: groups run on our models (``lightning_panning.models``) rather than on one of the authors'
OUR_MODELS = {"prospr", "phew", "random_erk"}
#: NTK-SAP's model for each key (their code needs their masked layers)
NTK_SAP_MODELS = {"lenet5": "lenet5", "vgg19": "vgg19_bn"}
#: PX's model for each key (their LeNet5 of masked layers, their lottery VGG19-BN)
PX_MODELS = {"lenet5": "lenet5", "vgg19": "vgg19_bn"}


def load_sources(repos: dict[str, Path | None]) -> SimpleNamespace:
    """Every authors' code given: ``authors`` (RLPanning), ``prospr``, ``ntksap``, ``phew`` (their ``PHEW.phew``
    module), ``random_pruning`` (the checkout); ``None`` where not given."""
    rl, prospr, ntksap = repos.get("authors_repo"), repos.get("prospr_repo"), repos.get("ntksap_repo")
    phew = repos.get("phew_repo")
    return SimpleNamespace(
        repos=repos,
        authors=None if rl is None else load_authors(rl),
        prospr=None if prospr is None else parity_prospr.load_prospr(prospr),
        ntksap=None if ntksap is None else parity_ntk_sap.load_ntksap(ntksap),
        phew=None if phew is None else load_phew(phew),
        px=None if repos.get("px_repo") is None else parity_px.load_px(repos["px_repo"]),  # type: ignore[arg-type]
        random_pruning=repos.get("random_pruning_repo"),
    )


# -- the authors' code ----------------------------------------------------------------------------------------------
def run_theirs(sources: SimpleNamespace, function: str, model: nn.Module, loader: DataLoader, rounds: int,
               device: str) -> dict[str, Tensor]:
    """One call of their pruner; masks keyed by parameter name."""
    if function == "prospr.prune":
        batch = next(iter(loader))
        scores = parity_prospr.their_scores(sources.prospr, model, batch, TARGET, "full")
        return parity_prospr.their_masks(sources.prospr, scores, TARGET)
    if function == "NTKSAP":
        return parity_ntk_sap.run_theirs(sources.ntksap, model, next(iter(loader)), TARGET, rounds, 1)[0]
    if function == "PX":
        return parity_px.run_theirs(sources.px, model, next(iter(loader)), TARGET, rounds, device)[0]
    if function == "PHEW.phew_masks":
        return their_phew_masks(sources.phew, model, 100.0 * TARGET, SEED)
    if function == "Masking.add_module(ERK)":
        torch.manual_seed(SEED)
        masking, _ = their_masking(sources.random_pruning, model, "ERK", 1.0 - TARGET)
        return {n: m.bool() for n, m in masking.masks.items()}
    authors = sources.authors
    names = {m: f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    config = their_config(authors, TARGET, rounds, grad_mode=3 if function.endswith("snip") else 0)
    torch.manual_seed(SEED)
    with quiet():
        if function == "Panning":
            masks, _ = authors.Panning(model, loader, device, config)
        elif function == "SynFlow":
            masks, _ = authors.SynFlow(model, TARGET, loader, device, rounds, dynamic=False)
        else:
            masks, _ = authors.Single_ranking_pruning(model, TARGET, loader, device, config, reinit=True,
                                                      retrun_inf=1)
    return {names[m]: c.bool() for m, c in masks.items()}


# -- measurement --------------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak RSS (and CUDA memory) during a block, above the RSS just before it."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_kb = 0
        self.base_kb = 0
        self.cuda_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hwm = self._can_reset()

    @staticmethod
    def _can_reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            return True
        except OSError:
            return False

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))

    def __enter__(self) -> PeakMemory:
        self.base_kb = _status_kb("VmRSS")
        self.peak_kb = self.base_kb
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if self._hwm:
            self._can_reset()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.cuda_bytes = torch.cuda.max_memory_allocated()
        if self._hwm:
            self.peak_kb = max(_status_kb("VmHWM"), self.base_kb)
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()

    @property
    def increment_gb(self) -> float:
        return (self.peak_kb - self.base_kb) / 2**20

    def report(self) -> dict[str, float]:
        """``rss_increment_gb``, ``peak_rss_gb`` and, on a GPU, ``cuda_peak_gb``."""
        out = {"rss_increment_gb": self.increment_gb, "peak_rss_gb": self.peak_kb / 2**20}
        if self.cuda_bytes is not None:
            out["cuda_peak_gb"] = self.cuda_bytes / 2**30
        return out


def measure(variant: str, group: str, sources: SimpleNamespace, base: nn.Module, batch: tuple[Tensor, Tensor],
            loader: DataLoader, rounds: int, device: str, track_memory: bool = False) -> dict[str, Any]:
    """Prune a fresh copy of ``base`` with ``rounds`` rounds: per-round seconds and masks.

    With ``track_memory`` also the call's peak memory (:meth:`PeakMemory.report`); the timing runs leave it off.
    """
    method = GROUPS[group][variant]
    rounds = 1 if group in ONE_SHOT else rounds
    model = copy.deepcopy(base)
    sync: Callable[[], None] = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    memory = PeakMemory(device) if track_memory else None
    with memory if memory is not None else contextlib.nullcontext():
        sync()
        start = time.perf_counter()
        if variant == "theirs":
            masks = run_theirs(sources, method, model, loader, rounds, device)
            sync()
            per_round = [(time.perf_counter() - start) / rounds] * rounds
        else:
            pruner = get_pruner(method, rounds=rounds, seed=SEED, progress=False, **SETTINGS.get((group, variant), {}))
            session = pruner.start(model, batch, TARGET)
            per_round = []
            while not session.done:
                session.step()
                sync()
                per_round.append(time.perf_counter() - start)
                start = time.perf_counter()
            masks = session.result().masks
    out: dict[str, Any] = {"round_seconds": per_round, "masks": masks}
    if memory is not None:
        out.update(memory.report())
    return out


#: (group, variant) whose s/round is amortised over ``T``: SNIP/GraSP once, in round 1, then reused
AMORTISED = ("panning", "ours_authors")


def amortised(first: float, later: float) -> float:
    """Seconds per round over the paper's ``T`` rounds: round 1 once, then ``T - 1`` later rounds."""
    return (first + (T - 1) * later) / T


def run_seconds_per_round(variant: str, group: str, run: dict[str, Any]) -> float:
    """One call's seconds per round; for ``ours_authors``/panning amortised over ``T`` (SNIP/GraSP once, round 1)."""
    seconds = run["round_seconds"]
    if (group, variant) == AMORTISED and len(seconds) > 1:
        return amortised(seconds[0], statistics.median(seconds[1:]))
    return statistics.fmean(seconds)


def summarise(variant: str, group: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = statistics.median(r["round_seconds"][0] for r in runs)
    later = [s for r in runs for s in r["round_seconds"][1:]]
    steady = statistics.median(later) if later else first
    entry: dict[str, Any] = {
        "method": GROUPS[group][variant],
        "round1_seconds": first,
        "steady_seconds": steady,
        "seconds_per_round": statistics.median(statistics.fmean(r["round_seconds"]) for r in runs),
        "repeat_seconds_per_round": [run_seconds_per_round(variant, group, r) for r in runs],
        "repeats": len(runs),
    }
    if (group, variant) == AMORTISED:
        entry["seconds_per_round"] = amortised(first, steady)
        entry["amortised_over"] = T
    return entry


def paired_speedup(theirs: list[float], ours: list[float]) -> dict[str, Any]:
    """Their seconds over ours, paired by repeat (a repeat runs every variant once, one after the other).

    Args:
        theirs: their seconds per round in each repeat, length ``n``.
        ours: ours in the same repeats, length ``n``.

    Returns:
        ``geomean`` (the geometric mean of the per-repeat ratios), ``ci95`` (its 95% confidence interval, from the
        t distribution of the log ratios; ``None`` below two repeats or without spread), ``p`` (two-sided t-test of
        the mean log ratio against 0, i.e. a t-test of the log times paired by repeat), ``n`` and ``reading``:
        *faster* or *slower* where p < 0.05, else *on par* (not shown faster or slower).
    """
    if len(theirs) != len(ours) or not theirs:
        raise ValueError(f"paired_speedup: {len(theirs)} repeats of theirs against {len(ours)} of ours.")
    logs = [math.log(t / o) for t, o in zip(theirs, ours, strict=True)]
    n, mean = len(logs), statistics.fmean(logs)
    out: dict[str, Any] = {"geomean": math.exp(mean), "n": n, "ci95": None, "p": None}
    spread = statistics.stdev(logs) if n > 1 else 0.0
    if n < 2 or spread <= 1e-12:  # ratios equal up to float rounding: no test
        out["reading"] = "not testable (fewer than 2 repeats, or no spread)"
        return out
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1)) * spread / math.sqrt(n)
    out["ci95"] = [math.exp(mean - half), math.exp(mean + half)]
    out["p"] = float(stats.ttest_1samp(logs, 0.0).pvalue)
    if out["p"] < 0.05:
        out["reading"] = "faster" if mean > 0 else "slower"
    else:
        out["reading"] = "on par (not shown faster or slower)"
    return out


def setup(key: str, group: str, sources: SimpleNamespace,
          device: str) -> tuple[tuple[Tensor, Tensor], DataLoader, nn.Module]:
    """The fixed batch ``(x (100, C, H, W), y (100,))``, a loader over it, and the group's model.

    Their model with their init (RLPanning's; NTK-SAP's own for ``ntk_sap``), or ours for :data:`OUR_MODELS`.
    """
    _, shape = MODELS[key]
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(100, *shape, generator=g).to(device), torch.arange(10).repeat_interleave(10).to(device))
    loader = DataLoader(TensorDataset(*batch), batch_size=100, shuffle=False,
                        generator=torch.Generator().manual_seed(SEED))  # iterating it leaves the global RNG alone
    if group in OUR_MODELS:
        torch.manual_seed(SEED)
        model: nn.Module = LeNet5() if key == "lenet5" else VGG19()
    elif group == "ntk_sap":
        model = parity_ntk_sap.their_model(sources.ntksap, NTK_SAP_MODELS[key])
    elif group == "px":
        model = parity_px.their_model(sources.px, PX_MODELS[key])
    else:
        model = their_model(sources.authors, key, SEED)
    return batch, loader, model.to(device)


def _memory_child(conn: Any, repos: dict[str, Path | None], key: str, group: str, variant: str, rounds: int,
                  device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    sources = load_sources(repos)
    batch, loader, base = setup(key, group, sources, device)
    out = measure(variant, group, sources, base, batch, loader, rounds, device, track_memory=True)
    conn.send({k: v for k, v in out.items() if k not in ("round_seconds", "masks")})
    conn.close()


def isolated_memory(repos: dict[str, Path | None], key: str, group: str, variant: str, rounds: int,
                    device: str) -> dict[str, float]:
    """Peak memory of one call of ``variant`` in a fresh spawned process (see the module docstring)."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_memory_child,
                          args=(send, repos, key, group, variant, rounds, device, torch.get_num_threads()))
    process.start()
    send.close()
    try:
        result: dict[str, float] = receive.recv()
    except EOFError as err:
        raise RuntimeError(f"The memory measurement of {key}/{group}/{variant} failed (exit code "
                           f"{process.exitcode}).") from err
    finally:
        process.join()
    return result


def bench(key: str, groups: list[str], sources: SimpleNamespace, rounds: int, repeats: int, device: str,
          load: list[float], slow_theirs: bool = False) -> dict[str, Any]:
    label, _ = MODELS[key]
    results: dict[str, Any] = {}
    for group in groups:
        batch, loader, base = setup(key, group, sources, device)
        variants = [v for v in GROUPS[group]
                    if v != "theirs" or slow_theirs or (key, group) not in THEIRS_NOT_RUN]
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        order = list(variants)
        for repeat in range(repeats):
            for v in order:
                load.append(os.getloadavg()[0])
                runs[v].append(measure(v, group, sources, base, batch, loader, rounds, device))
                if len(runs[v]) > 1:
                    runs[v][-2].pop("masks")  # only the last masks are compared
                print(f"  {label}/{group} repeat {repeat + 1}: {v} "
                      f"{statistics.fmean(runs[v][-1]['round_seconds']):.3f} s/round", file=sys.stderr, flush=True)
            order = order[1:] + order[:1]
        entries = {v: summarise(v, group, runs[v]) for v in variants}
        for v in variants:
            entries[v].update(isolated_memory(sources.repos, key, group, v, rounds, device))
        if "theirs" not in variants:
            results[group] = entries
            continue
        compared = "ours_authors" if "ours_authors" in variants else "ours_default"
        ours, theirs = runs[compared][-1]["masks"], runs["theirs"][-1]["masks"]
        if sorted(ours) != sorted(theirs):
            raise RuntimeError(f"{label}/{group}: their masks cover {sorted(theirs)}, ours {sorted(ours)}.")
        differing = sum(int((ours[n] != theirs[n]).sum()) for n in ours)
        for v in variants:
            if v == "theirs":
                continue
            entries[v]["speedup_vs_theirs"] = entries["theirs"]["seconds_per_round"] / entries[v]["seconds_per_round"]
            entries[v]["paired_speedup_vs_theirs"] = paired_speedup(entries["theirs"]["repeat_seconds_per_round"],
                                                                    entries[v]["repeat_seconds_per_round"])
            entries[v]["memory_ratio_vs_theirs"] = (entries[v]["rss_increment_gb"]
                                                    / max(entries["theirs"]["rss_increment_gb"], 1e-9))
        entries[compared]["differing_mask_entries_vs_theirs"] = differing
        entries[compared]["weights"] = sum(m.numel() for m in ours.values())
        entries[compared]["kept"] = {"ours": sum(int(m.sum()) for m in ours.values()),
                                     "theirs": sum(int(m.sum()) for m in theirs.values())}
        results[group] = entries
    return {"label": label, "groups": results}


# -- report -------------------------------------------------------------------------------------------------------
def markdown(data: dict[str, Any]) -> str:
    meta = data["meta"]
    lines = [
        "# Seconds per pruning round and peak memory: ours vs the authors' code, one process",
        "",
        f"- command: `{meta['command']}`",
        f"- date {meta['date']}; torch {meta['torch']}; device {meta['device']}; {meta['threads']} thread(s); "
        f"{meta['platform']}",
        ("- code: git commit not recorded (run before the record had the field)" if not meta.get("git_commit")
         else f"- code: git commit `{meta['git_commit']}`" + (" with uncommitted changes" if meta.get("git_dirty")
                                                              else "")),
        f"- load average (1 min) during the runs: min {meta['load_min']:.2f}, mean {meta['load_mean']:.2f}, "
        f"max {meta['load_max']:.2f} on {meta['cpus']} CPUs",
        f"- target {TARGET}, {meta['rounds']} measured rounds per call, {meta['repeats']} repeats (rotating order, "
        "medians); the model with its init: the authors' (RLPanning's; NTK-SAP's own for ntk_sap), ours "
        f"(`lightning_panning.models`) for {', '.join(sorted(OUR_MODELS))}; 100-sample batch, 10 per class, fixed "
        "random images",
        "- `theirs`: the authors' function from `" + meta["authors_repo"] + "`; `ours_authors`: the bit-for-bit "
        "preset; `ours_default`: the paper's semantics. `ours_authors`/panning s/round is amortised over T = 100 "
        "(`(round 1 + 99 × later round) / 100`: it computes SNIP/GraSP once)",
        "- memory: peak RSS during one call minus the RSS before it, each variant in a fresh process (in the timing "
        "process the allocator keeps earlier calls' pages resident and hides the increase)",
        "",
        "| model | group | variant | method | round 1 s | later round s | s/round | speed-up vs theirs "
        "| RSS increment GB | of theirs | masks vs theirs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in data["results"].values():
        for group, entries in model["groups"].items():
            for v, e in entries.items():
                speed = f"{e['speedup_vs_theirs']:.2f}×" if "speedup_vs_theirs" in e else "—"
                ratio = f"{e['memory_ratio_vs_theirs']:.2f}" if "memory_ratio_vs_theirs" in e else "—"
                masks = "—"
                if "differing_mask_entries_vs_theirs" in e:
                    masks = f"{e['differing_mask_entries_vs_theirs']:,} of {e['weights']:,} differ"
                    if v == "ours_default":  # no preset: our own count and draws (see the module docstring)
                        masks += f" (kept {e['kept']['ours']:,} vs {e['kept']['theirs']:,})"
                mem = f"{e['rss_increment_gb']:.2f}"
                if "cuda_peak_gb" in e:
                    mem += f" (CUDA {e['cuda_peak_gb']:.2f})"
                lines.append(
                    f"| {model['label']} | {group} | {v} | `{e['method']}` | {e['round1_seconds']:.3f} | "
                    f"{e['steady_seconds']:.3f} | {e['seconds_per_round']:.3f} | {speed} | {mem} | {ratio} | {masks} |"
                )
    paired = [(model["label"], group, v, e["paired_speedup_vs_theirs"])
              for model in data["results"].values() for group, entries in model["groups"].items()
              for v, e in entries.items() if "paired_speedup_vs_theirs" in e]
    if paired:
        lines += [
            "",
            "Speed-up paired by repeat: each repeat runs every variant once, one after the other in a rotating "
            "order, so the ratio of their time to ours is taken within each repeat; geometric mean of the ratios, "
            "its 95% confidence interval (t distribution of the log ratios) and the two-sided t-test of the log "
            "ratios against 0 (a t-test of the log times paired by repeat); *faster* / *slower* where p < 0.05, "
            "*on par* (not shown faster or slower) otherwise.",
            "",
            "| model | group | variant | speed-up vs theirs (geometric mean) | 95% CI | p | repeats | reading |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, group, v, r in paired:
            ci = "n/a" if r["ci95"] is None else f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}×"
            p = "n/a" if r["p"] is None else f"{r['p']:.3g}"
            lines.append(f"| {label} | {group} | {v} | {r['geomean']:.3f}× | {ci} | {p} | {r['n']} | {r['reading']} |")
    skipped = [(key, group) for key, group in THEIRS_NOT_RUN
               if key in data["results"] and group in data["results"][key]["groups"]
               and "theirs" not in data["results"][key]["groups"][group]]
    if skipped:
        lines += [""] + [f"- {MODELS[key][0]}/{group}: the authors' code was not run: {THEIRS_NOT_RUN[key, group]}."
                         for key, group in skipped]
    lines += ["", "Timings are only comparable within this run; they are meaningful only on an otherwise idle "
              "machine (see the load above).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors-repo", type=Path, default=None, help="checkout of github kangxiatao/RLPanning "
                        "(the panning, synflow and oneshot groups)")
    parser.add_argument("--prospr-repo", type=Path, default=None, help="checkout of github mil-ad/prospr (prospr)")
    parser.add_argument("--ntksap-repo", type=Path, default=None,
                        help="checkout of github YiteWang/NTK-SAP (ntk_sap)")
    parser.add_argument("--px-repo", type=Path, default=None,
                        help="checkout of github iurada/px-ntk-pruning (px)")
    parser.add_argument("--phew-repo", type=Path, default=None,
                        help="checkout of github ShreyasMalakarjunPatil/PHEW (phew)")
    parser.add_argument("--slow-theirs", action="store_true",
                        help="also run the authors' functions skipped as slow (PHEW on VGG19-BN, ~5 min per call)")
    parser.add_argument("--random-pruning-repo", type=Path, default=None,
                        help="checkout of github VITA-Group/Random_Pruning (random_erk)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--groups", nargs="+", default=None, choices=list(GROUPS),
                        help="default: every group whose checkout is given")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per call (default: 6 LeNet5, 3 VGG19)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="LeNet5, 2 rounds, 1 repeat (checks the script runs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--rewrite-markdown", action="store_true",
                        help="rewrite prune_speed.md from the prune_speed.json already in --out (no timing)")
    args = parser.parse_args(argv)
    if args.rewrite_markdown:
        data = json.loads((args.out / "prune_speed.json").read_text())
        (args.out / "prune_speed.md").write_text(markdown(data))
        return data
    if args.quick:
        args.models, args.rounds, args.repeats = ["lenet5"], 2, 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    repos = {"authors_repo": args.authors_repo, "prospr_repo": args.prospr_repo, "ntksap_repo": args.ntksap_repo,
             "phew_repo": args.phew_repo, "random_pruning_repo": args.random_pruning_repo, "px_repo": args.px_repo}
    if args.groups is None:
        args.groups = [g for g in GROUPS if repos[REPOS.get(g, "authors_repo")] is not None]
    missing = sorted({f"--{REPOS.get(g, 'authors_repo').replace('_', '-')}" for g in args.groups
                      if repos[REPOS.get(g, "authors_repo")] is None})
    if missing or not args.groups:
        parser.error(f"give the authors' checkouts the groups need: {', '.join(missing) or '--authors-repo'}")
    torch.set_num_threads(args.threads)
    sources = load_sources(repos)
    started = time.perf_counter()
    load = [os.getloadavg()[0]]
    results = {}
    for key in args.models:
        rounds = args.rounds if args.rounds is not None else (6 if key == "lenet5" else 3)
        results[key] = bench(key, args.groups, sources, rounds, args.repeats, args.device, load, args.slow_theirs)
    meta = {
        "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/prune_speed.py",
                                                       *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "lightning_panning": lightning_panning.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "cpus": os.cpu_count(),
        "platform": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
        "authors_repo": ", ".join(str(r) for r in repos.values() if r is not None),
        "rounds": args.rounds if args.rounds is not None else "6 (LeNet5), 3 (VGG19)",
        "repeats": args.repeats,
        "load_samples": load,
        "load_min": min(load),
        "load_mean": statistics.fmean(load),
        "load_max": max(load),
        "wall_seconds": time.perf_counter() - started,
        **git_state(),
    }
    data = {"meta": meta, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prune_speed.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / "prune_speed.md").write_text(markdown(data))
    print(f"wrote {args.out}/prune_speed.md ({meta['wall_seconds']:.0f} s)", file=sys.stderr)
    return data


if __name__ == "__main__":
    main()
