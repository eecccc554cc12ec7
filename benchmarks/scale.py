"""Scale-out evidence (issue 24): data-parallel scoring across processes, and micro-batched scoring's peak memory.

**Speed** (``--part speed``). The default Panning (SynFlow + SNIP + GraSP with Table 3's weights, exponential schedule,
``T`` = 100 rounds, target 0.98) on one scoring set (``per_class`` samples of each of 10 classes, random images of
the dataset's shape, the same set in every run), pruned three ways, each in a fresh process with one intra-op thread:

* ``1 process``               — the whole set in one pass per round (today's default);
* ``1 process, chunks n/2``   — ``micro_batch = n/2``: the chunks the two ranks take, scored one after the other;
* ``2 processes (gloo)``      — ``torch.distributed`` on the CPU, one thread each: each rank scores its half and the
  sums are all-reduced (no ``micro_batch``: one chunk per rank).

A fourth one-process run on a set of n/2 samples (the shard one rank scores) times what a rank does without
communication, which bounds what two ranks can reach (with and without the machine's own two-process contention).
Reported: each run's wall time per rank (``Panning.prune``, from the start of the scoring set's use to the verified
masks), the speed-up of two ranks over one process, and the agreement of the two ranks' masks with the
single-process masks of the same chunking (the fraction of weights with the same keep/remove decision: near-tied
weights may swap, since the all-reduce sums the chunks in another order). Models: LeNet5 on 1×28×28 and a ResNet
(``--resnet``, ResNet-20 by default) on 3×32×32; ``--speed-models`` picks either.

**Memory** (``--part memory``). The peak memory of one Panning round (``start`` and round 1 of 100) against the
scoring-set size, at a fixed ``micro_batch`` and without it, each point in a fresh process: ResNet-18 (the CIFAR-style
3×3 stem) at 64×64 with a 1,000-class head and 1,000 classes × {1, 2, 5, 10} samples, and the 110M-parameter GPT-style
model of ``benchmarks/transformer_scale.py`` with {256, 512, 1024, 2048} sequences of 128 tokens. Memory is the peak
above the process's memory once the model and the scoring set are built (``transformer_scale.Peak``: CPU peak RSS or
CUDA ``max_memory_allocated``); the set itself is listed beside it. Points without ``micro_batch`` above
``--unchunked-max`` samples are not run (their memory would exceed the machine's).

Usage::

    python benchmarks/scale.py                         # both parts on the CPU → results/scale.{md,json}
    python benchmarks/scale.py --device cuda           # memory on CUDA → results/scale_cuda.{md,json}
    python benchmarks/scale.py --quick --out /tmp/s    # tiny sizes, 2 rounds: checks the script only

The speed part needs ≥ 2 CPU cores free: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `benchmarks`, `examples`

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.98
T = 100
CLASSES = 10

#: speed: (model, input shape); the ResNet is chosen by --resnet
SPEED_INPUTS = {"lenet5": (1, 28, 28), "resnet20": (3, 32, 32), "resnet18": (3, 32, 32)}
#: memory: scoring-set sizes and the fixed micro_batch (full runs / --quick)
MEMORY = {
    "resnet18-64px-1000cls": {"sizes": [1000, 2000, 5000, 10000], "micro_batch": 100, "unchunked_max": 2000},
    "transformer-110M": {"sizes": [256, 512, 1024, 2048], "micro_batch": 8, "unchunked_max": 64},
}
#: --quick: a ResNet-20 at 16×16 with 10 classes and the tiny transformer of transformer_scale.py's quick mode
QUICK_MEMORY = {
    "resnet20-16px-quick": {"sizes": [20, 40], "micro_batch": 10, "unchunked_max": 20},
    "transformer-quick": {"sizes": [8, 16], "micro_batch": 4, "unchunked_max": 8},
}


# ---------------------------------------------------------------------------------------------------------------------
# models and data (the same in every process: seeded)


def speed_model(name: str) -> nn.Module:
    from lightning_panning.models import LeNet5, ResNet18, ResNet20

    torch.manual_seed(0)
    if name == "lenet5":
        return LeNet5()
    return ResNet20(num_classes=CLASSES) if name == "resnet20" else ResNet18(num_classes=CLASSES)


def speed_set(name: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (10·k, *shape), y (10·k,))`` ordered by class, from a fixed seed."""
    g = torch.Generator().manual_seed(1)
    y = torch.arange(CLASSES).repeat_interleave(per_class)
    return torch.randn(len(y), *SPEED_INPUTS[name], generator=g), y


def memory_model_and_set(name: str, size: int, quick: bool, device: torch.device) -> tuple[nn.Module, Any, Any]:
    """The model, its scoring set of ``size`` samples on ``device`` and its loss function (``None``: the default)."""
    torch.manual_seed(0)
    if name.startswith("resnet"):
        from lightning_panning.models import ResNet18, ResNet20

        classes = 10 if quick else 1000
        model = (ResNet20(num_classes=classes) if quick else ResNet18(num_classes=classes)).to(device)
        side = 16 if quick else 64
        y = torch.arange(size, device=device) % classes
        return model, (torch.randn(size, 3, side, side, device=device), y), None
    from benchmarks.transformer_scale import FULL, QUICK, next_token_loss
    from examples.transformer_lm import TinyGPT

    s = QUICK if quick else FULL
    model = TinyGPT(s["vocab"], s["dim"], s["layers"], s["heads"], s["max_len"], ff=s["ff"]).to(device)
    ids = torch.randint(0, s["vocab"], (size, s["length"] + 1), device=device)
    return model, ids, next_token_loss


def set_mib(batch: Any) -> float:
    tensors = batch if isinstance(batch, tuple) else (batch,)
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


# ---------------------------------------------------------------------------------------------------------------------
# workers (each in a fresh process)


def speed_single(
    model_name: str, per_class: int, rounds: int, micro_batch: int | None, masks_file: str
) -> dict[str, Any]:
    from lightning_panning.core import Panning, pack_masks

    torch.set_num_threads(1)
    model, batch = speed_model(model_name), speed_set(model_name, per_class)
    pruner = Panning(rounds=rounds, progress=False, micro_batch=micro_batch)
    start = time.perf_counter()
    result = pruner.prune(model, batch, TARGET, process_group=None)
    wall = time.perf_counter() - start
    torch.save(pack_masks(result.masks), masks_file)
    return {"rank_wall_seconds": [wall], "scoring": result.scoring}


def _speed_rank(rank: int, world: int, init_file: str, model_name: str, per_class: int, rounds: int,
                out: str) -> None:
    import torch.distributed as dist

    from lightning_panning.core import Panning, pack_masks
    from lightning_panning.core.distributed import mask_digest

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, batch = speed_model(model_name), speed_set(model_name, per_class)
        pruner = Panning(rounds=rounds, progress=False)
        dist.barrier()
        start = time.perf_counter()
        result = pruner.prune(model, batch, TARGET)  # process_group="auto": the default group
        wall = time.perf_counter() - start
        if rank == 0:
            torch.save(pack_masks(result.masks), os.path.join(out, "masks.pt"))
        record = {"wall": wall, "scoring": result.scoring, "digest": mask_digest(result.masks)}
        Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


def speed_parallel(model_name: str, per_class: int, rounds: int, masks_file: str, world: int = 2) -> dict[str, Any]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_speed_rank, args=(world, os.path.join(tmp, "store"), model_name, per_class, rounds, tmp),
                 nprocs=world, join=True)
        ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]
        shutil.move(os.path.join(tmp, "masks.pt"), masks_file)
    return {"rank_wall_seconds": [r["wall"] for r in ranks], "scoring": ranks[0]["scoring"],
            "ranks_identical": len({r["digest"] for r in ranks}) == 1}


def memory_point(name: str, size: int, micro_batch: int | None, quick: bool, device: torch.device,
                 threads: int) -> dict[str, Any]:
    from benchmarks.transformer_scale import Peak
    from lightning_panning.core import Panning

    torch.set_num_threads(threads)
    model, batch, loss_fn = memory_model_and_set(name, size, quick, device)
    kwargs = {} if loss_fn is None else {"loss_fn": loss_fn}
    pruner = Panning(rounds=T, progress=False, micro_batch=micro_batch, **kwargs)
    peak = Peak(device)
    peak.start()
    start = time.perf_counter()
    session = pruner.start(model, batch, TARGET, process_group=None)
    session.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"peak_mib": peak.peak_mib(), "set_mib": set_mib(batch), "seconds": time.perf_counter() - start}


def run_worker(args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    return run_workers_at_once(args, [extra])[0]


def run_workers_at_once(args: argparse.Namespace, extras: list[tuple[str, ...]]) -> list[dict[str, Any]]:
    """Several workers started together, each in its own process (no communication between them)."""
    common = [sys.executable, __file__, "--device", args.device, "--threads", str(args.threads),
              "--per-class", str(args.per_class), "--rounds", str(args.rounds), "--resnet", args.resnet,
              *(["--quick"] if args.quick else [])]
    env = dict(os.environ)
    if args.malloc_mmap_threshold is not None:  # glibc reads it at start: each worker is a fresh process
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    procs = [subprocess.Popen([*common, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for extra in extras]
    found = []
    for extra, proc in zip(extras, procs, strict=True):
        out, err = proc.communicate()
        if proc.returncode != 0:
            for other in procs:
                other.kill()  # no worker outlives the failure
            raise RuntimeError(f"worker {extra} failed:\n{err[-4000:]}")
        found.append(json.loads(out.strip().splitlines()[-1]))
    return found


# ---------------------------------------------------------------------------------------------------------------------
# the two parts


def agreement(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float | int]:
    """Fraction of weights with the same decision, and weights kept by one run only."""
    same = sum(int((a[n] == b[n]).sum()) for n in a)
    total = sum(m.numel() for m in a.values())
    only = sum(int((a[n] & ~b[n]).sum()) for n in a)
    return {"same_decision": same / total, "kept_by_one_only": only, "weights": total}


def speed_part(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    from lightning_panning.core import unpack_masks

    rows = []
    n = CLASSES * args.per_class
    for model_name in [m if m == "lenet5" else args.resnet for m in args.speed_models]:
        files = {k: str(tmp / f"{model_name}-{k}.pt") for k in ("whole", "half", "ranks")}
        whole = run_worker(args, "--worker", "speed-single", "--model", model_name, "--masks", files["whole"])
        half = run_worker(args, "--worker", "speed-single", "--model", model_name, "--micro-batch",
                          str(math.ceil(n / 2)), "--masks", files["half"])
        ranks = run_worker(args, "--worker", "speed-parallel", "--model", model_name, "--masks", files["ranks"])
        # the machine's own ceiling: two one-process runs at once, no communication, nothing shared
        pair = run_workers_at_once(args, [("--worker", "speed-single", "--model", model_name, "--masks",
                                           str(tmp / f"{model_name}-pair{i}.pt")) for i in range(2)])
        pair_seconds = [p["rank_wall_seconds"][0] for p in pair]
        one = max(whole["rank_wall_seconds"])
        # what one rank does, without the communication: a one-process round on a set of its shard's size
        # (n/2, class-balanced: the same passes, SynFlow and selection included)
        half_set = None
        if args.per_class % 2 == 0:
            half_set = run_worker(args, "--worker", "speed-single", "--model", model_name, "--per-class",
                                  str(args.per_class // 2), "--masks",
                                  str(tmp / f"{model_name}-half-set.pt"))["rank_wall_seconds"][0]
        ceiling = 2 * one / max(pair_seconds)
        masks = {k: unpack_masks(torch.load(f)) for k, f in files.items()}
        rows.append({
            "model": model_name, "set_size": n, "rounds": args.rounds,
            "one_process": whole, "one_process_chunks_n_2": half, "two_processes": ranks,
            "speedup": one / max(ranks["rank_wall_seconds"]),
            "speedup_vs_same_chunks": max(half["rank_wall_seconds"]) / max(ranks["rank_wall_seconds"]),
            "two_independent_at_once_seconds": pair_seconds,
            "machine_ceiling": ceiling,
            "one_process_half_set_seconds": half_set,
            "bound": None if half_set is None else one / half_set,
            "bound_with_contention": None if half_set is None else one / half_set * ceiling / 2,
            "agreement_same_chunks": agreement(masks["ranks"], masks["half"]),
            "agreement_whole_set": agreement(masks["ranks"], masks["whole"]),
        })
    return rows


def memory_part(args: argparse.Namespace,
                on_row: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Every memory point, one worker process each; ``on_row(rows so far)`` after each (a run cut short keeps them)."""
    rows: list[dict[str, Any]] = []
    specs = QUICK_MEMORY if args.quick else MEMORY
    for name in args.models or list(specs):
        spec = specs[name]
        cap = spec["unchunked_max"] if args.unchunked_max is None else args.unchunked_max
        for size in args.sizes or spec["sizes"]:
            for micro in (spec["micro_batch"], None):
                row: dict[str, Any] = {"model": name, "set_size": size, "micro_batch": micro}
                if micro is None and size > cap:
                    row["skipped"] = f"without micro_batch above --unchunked-max {cap}"
                else:
                    try:
                        row.update(run_worker(args, "--worker", "memory", "--model", name, "--set-size", str(size),
                                              *(["--micro-batch", str(micro)] if micro is not None else [])))
                    except RuntimeError as error:  # e.g. out of memory without micro_batch: recorded, not fatal
                        last = [line for line in str(error).splitlines() if line.strip()]
                        row["failed"] = last[-1][:300] if last else "worker failed"
                rows.append(row)
                _vs_smallest(rows)
                if on_row is not None:
                    on_row(rows)
    return rows


def _vs_smallest(rows: list[dict[str, Any]]) -> None:
    """Each measured row's peak over the peak of its model's smallest chunked set (in place)."""
    for name in {r["model"] for r in rows}:
        chunked = [r for r in rows if r["model"] == name and r["micro_batch"] is not None and "peak_mib" in r]
        if not chunked:
            continue
        smallest = min(chunked, key=lambda r: r["set_size"])["peak_mib"]
        for r in rows:
            if r["model"] == name and "peak_mib" in r:
                r["vs_smallest_chunked"] = r["peak_mib"] / smallest if smallest > 0 else None


# ---------------------------------------------------------------------------------------------------------------------
# report


def results_stem(device: str) -> str:
    return "scale" if device == "cpu" else f"scale_{device.split(':')[0]}"


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


def write_results(record: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = results_stem(record["device"])
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Scale-out: data-parallel scoring and micro-batched scoring" + (" (quick mode: checks the script only)"
                                                                          if record["quick"] else ""),
        "",
        f"Written by `{record['command']}` on {record['date']} ({record['machine']}, device {record['device']}, "
        f"torch {record['torch']}; load average at start {record['load_start']}, at end {record['load_end']}). "
        f"Code: commit `{record.get('git_commit') or 'not recorded'}`"
        + (" (tree with uncommitted changes)" if record.get("git_dirty") else "") + ".",
        "",
    ]
    if record.get("speed"):
        lines += [
            f"## Speed: default Panning, {record['speed'][0]['rounds']} rounds, target {TARGET}, one thread per "
            "process",
            "",
            "| model | set | 1 process (s) | 1 process, chunks n/2 (s) | 2 processes, per rank (s) | speed-up | "
            "2 independent 1-process runs at once (s) | machine ceiling | "
            "ranks identical | agreement with 1 process, same chunks | with 1 process, whole set |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in record["speed"]:
            two = r["two_processes"]
            lines.append(
                f"| {r['model']} | {r['set_size']} | {r['one_process']['rank_wall_seconds'][0]:.2f} | "
                f"{r['one_process_chunks_n_2']['rank_wall_seconds'][0]:.2f} | "
                f"{', '.join(f'{s:.2f}' for s in two['rank_wall_seconds'])} | {r['speedup']:.2f}× | "
                + (f"{', '.join(f'{s:.2f}' for s in r['two_independent_at_once_seconds'])} | "
                   f"{r['machine_ceiling']:.2f}× | " if "machine_ceiling" in r else "– | – | ")
                + f"{'yes' if two['ranks_identical'] else 'NO'} | "
                f"{r['agreement_same_chunks']['same_decision']:.6f} "
                f"({r['agreement_same_chunks']['kept_by_one_only']} swapped) | "
                f"{r['agreement_whole_set']['same_decision']:.6f} |"
            )
        bounds = [r for r in record["speed"] if r.get("bound") is not None]
        if bounds:
            lines += [
                "",
                "What two ranks can reach at most: a rank makes the passes of a whole round on its shard of n/2 "
                "samples and repeats what does not shrink with the data (SynFlow's data-free pass, each pass's "
                "fixed cost, normalisation, fusion, selection), so a one-process run on a set of n/2 samples (the "
                "same class balance) takes what a rank takes without its communication: bound = `T₁(n)` / "
                "`T₁(n/2)`. On this machine each of two processes also runs at the pace of the two independent runs "
                "(the contention the machine ceiling measures): bound with contention = bound × `T₁(n)` / slower "
                "independent run. The rest of the gap to the measured speed-up is the all-reduces and the ranks "
                "waiting for each other.",
                "",
                "| model | 1 process `T₁(n)` (s) | 1 process, n/2 samples `T₁(n/2)` (s) | bound | "
                "bound with contention | measured speed-up |",
                "|---|---|---|---|---|---|",
            ]
            for r in bounds:
                lines.append(
                    f"| {r['model']} | {r['one_process']['rank_wall_seconds'][0]:.2f} | "
                    f"{r['one_process_half_set_seconds']:.2f} | {r['bound']:.2f}× | "
                    f"{r['bound_with_contention']:.2f}× | {r['speedup']:.2f}× |"
                )
        lines += ["", "Speed-up: one process on the whole set over the slower rank. Machine ceiling: what two "
                  "processes get on this machine at all — twice the one-process time over the slower of two "
                  "independent one-process runs started together (no communication, each the whole work): data-"
                  "parallel scoring cannot beat it. Agreement: fraction of weights with the same keep/remove "
                  "decision (near-tied weights may swap: the all-reduce adds the chunks in another order).", ""]
    if record.get("memory"):
        lines += [
            "## Memory: one Panning round against the scoring-set size",
            "",
            "| model | set (samples) | set itself (MiB) | micro_batch | peak above model + set (MiB) | "
            "× smallest set's (chunked) | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in record["memory"]:
            if "skipped" in r or "failed" in r:
                why = f"not run ({r['skipped']})" if "skipped" in r else f"failed: {r['failed']}"
                lines.append(f"| {r['model']} | {r['set_size']} | | {r['micro_batch'] or 'none'} | {why} | | |")
                continue
            lines.append(
                f"| {r['model']} | {r['set_size']} | {r['set_mib']:.1f} | {r['micro_batch'] or 'none'} | "
                f"{r['peak_mib']:.0f} | {_fmt(r.get('vs_smallest_chunked'))} | {r['seconds']:.1f} |"
            )
        lines += ["", "Goal: flat with micro_batch (≤ 1.2× the smallest set's peak).", ""]
    (out / f"{stem}.md").write_text("\n".join(lines))
    return out / f"{stem}.md"


def command_line(args: argparse.Namespace) -> str:
    from benchmarks.sweep.provenance import portable_path

    words = ["python", "benchmarks/scale.py", "--part", args.part, "--device", args.device, "--threads",
             str(args.threads), "--per-class", str(args.per_class), "--rounds", str(args.rounds), "--resnet",
             args.resnet]
    if args.unchunked_max is not None:
        words += ["--unchunked-max", str(args.unchunked_max)]
    if args.malloc_mmap_threshold is not None:
        words += ["--malloc-mmap-threshold", str(args.malloc_mmap_threshold)]
    if args.models:
        words += ["--models", *args.models]
    if args.sizes:
        words += ["--sizes", *map(str, args.sizes)]
    if args.speed_models != ["lenet5", "resnet"]:
        words += ["--speed-models", *args.speed_models]
    if args.quick:
        words.append("--quick")
    if Path(args.out).resolve() != RESULTS.resolve():
        words += ["--out", portable_path(args.out)]
    return " ".join(words)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "speed", "memory"], default="all")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the memory part (speed runs on CPU only)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of the memory workers")
    parser.add_argument("--per-class", type=int, default=None, help="speed: samples per class (default 10)")
    parser.add_argument("--rounds", type=int, default=None, help="speed: rounds T (default 100)")
    parser.add_argument("--resnet", choices=["resnet20", "resnet18"], default="resnet20", help="speed: the ResNet")
    parser.add_argument("--speed-models", nargs="+", choices=["lenet5", "resnet"], default=["lenet5", "resnet"],
                        help="speed: the models to measure (default both; 'resnet' is the --resnet one)")
    parser.add_argument("--unchunked-max", type=int, default=None,
                        help="memory: largest set run without micro_batch (default per model)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="memory: the models to measure (default all; see MEMORY, or QUICK_MEMORY with --quick)")
    parser.add_argument("--malloc-mmap-threshold", type=int, default=None, metavar="BYTES",
                        help="CPU: glibc's MALLOC_MMAP_THRESHOLD_ in the workers (a fixed threshold: large blocks are "
                        "mapped and returned when freed, so the heap does not fragment across chunks)")
    parser.add_argument("--sizes", nargs="+", type=int, default=None,
                        help="memory: scoring-set sizes instead of each model's own list (e.g. one missing point)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 2 rounds: checks the script only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=["speed-single", "speed-parallel", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--micro-batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--set-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--masks", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available; use --device cpu")
    allowed = sorted(QUICK_MEMORY if args.quick else MEMORY)
    for name in args.models or []:
        if name not in allowed:
            parser.error(f"--models {name}: not a memory model; allowed: {', '.join(allowed)}")
    if args.malloc_mmap_threshold is not None and args.malloc_mmap_threshold < 0:
        parser.error(f"--malloc-mmap-threshold {args.malloc_mmap_threshold}: must be a number of bytes >= 0")
    for size in args.sizes or []:
        if size < 1:
            parser.error(f"--sizes {size}: a scoring-set size must be a positive number of samples")
    if args.per_class is None:
        args.per_class = 2 if args.quick else 10
    if args.rounds is None:
        args.rounds = 2 if args.quick else T
    if args.worker == "speed-single":
        print(json.dumps(speed_single(args.model, args.per_class, args.rounds, args.micro_batch, args.masks)))
        return
    if args.worker == "speed-parallel":
        print(json.dumps(speed_parallel(args.model, args.per_class, args.rounds, args.masks)))
        return
    if args.worker == "memory":
        print(json.dumps(memory_point(args.model, args.set_size, args.micro_batch, args.quick,
                                      torch.device(args.device), args.threads)))
        return
    from benchmarks.sweep.provenance import git_state

    load_start = [round(x, 2) for x in os.getloadavg()]
    record: dict[str, Any] = {"command": command_line(args), **git_state(),
                              "date": dt.datetime.now().isoformat(timespec="seconds"),
                              "machine": f"{platform.node()} ({os.cpu_count()} CPUs)", "device": args.device,
                              "torch": torch.__version__, "quick": args.quick, "load_start": load_start}
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "speed") and args.device == "cpu":
            record["speed"] = speed_part(args, Path(tmp))
        elif args.part in ("all", "speed"):
            record["speed_skipped"] = "the speed part runs CPU processes (gloo) only; run it with --device cpu"
        if args.part in ("all", "memory"):

            def partial(rows: list[dict[str, Any]]) -> None:  # written after each point: a cut run keeps them
                write_results({**record, "memory": rows, "load_end": "(run cut short: written after each point)"},
                              args.out)

            record["memory"] = memory_part(args, partial)
    record["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print(write_results(record, args.out).read_text())


if __name__ == "__main__":
    main()
