#!/usr/bin/env python
"""LeNet5 cell speed, with the data in memory or through the DataLoader, and the wall time of the full LeNet5 grid.

Everything is measured through the sweep's own cell (:func:`benchmarks.sweep.cell.run_cell`: the ordinary Lightning
Trainer with the project's callbacks) on real MNIST, per device:

1. **Epoch time** of the dense LeNet5 (batch 256, Table 1 recipe), data in device memory and through the
   DataLoader: ``(training time of an E2-epoch cell − that of an E1-epoch cell) / (E2 − E1)``, so set-up, the first
   epoch's warm-up and the test pass cancel out. The fixed cost per cell (set-up, test) is reported too.
2. **Pruning time** of each method of the grid at 99% (T = 100), from the same cells' ``pruning_seconds``.
3. **Sharing the device**: k dense cells at once (``--jobs k``, one process each); each cell's own epoch time gives
   the throughput of k cells against one.
4. **Masked against compacted, per sparsity**: the epoch time of one pruned cell (``--speed-method``, default
   Panning) at each ``--sparsities``, trained masked (``--no-compact``) and compacted (the sweep's default for LeNet
   profiles), each beside its **floor**: a bare loop of forward + backward + SGD step (momentum, weight decay) of the
   same network (the trained masked network, i.e. dense shapes, and the compacted one) on a fixed in-memory batch,
   with no Trainer, no callbacks and no mask enforcement, times the cell's steps per epoch. The gap between a cell's
   epoch and its floor is what the Trainer, the data and the masks cost.
5. **Estimate of the full grid**: the profile's cells (``lenet5-mnist``: dense + methods × 6 sparsities × 3 seeds ×
   80 epochs; the issue's grid is dense + 6 methods) as Σ (pruning + epochs × epoch time + fixed cost), divided by
   the best throughput gain of step 3. It assumes that pruning shares the device as well as training does.

Results go to ``<out>/sweep_speed.json`` and ``.md`` with the machine load (``os.getloadavg``) and thread counts.
Timings from a loaded machine are worthless; run it on a quiet one.

Usage::

    python benchmarks/sweep_speed.py --device cuda --jobs 1 2 4 8 12     # a GPU (the H100 target: grid ≤ 30 min)
    python benchmarks/sweep_speed.py --device cpu --jobs 1 2 --num-threads 1
    python benchmarks/sweep_speed.py --device cpu --num-threads 1 --parts sparsity   # masked vs compacted only
    python benchmarks/sweep_speed.py --quick                             # a check that it runs (tiny, to a temp dir)
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
from benchmarks.sweep.backends import LocalBackend
from benchmarks.sweep.cell import SweepConfig, quiet_lightning, run_cell
from benchmarks.sweep.methods import method_unavailable_reason
from benchmarks.sweep.profiles import PROFILES, Cell, Profile, default_data_dir, format_sparsity, parse_sparsity
from benchmarks.sweep.provenance import git_state, scrub_command
from benchmarks.sweep.records import load_records
from benchmarks.sweep.run import run_sweep

REPO = Path(__file__).resolve().parents[1]
#: What the script can measure (``--parts``).
PARTS = ("sparsity", "epochs", "pruning", "sharing")
#: The issue's grid: dense + these 6 methods × 6 sparsities × 3 seeds × 80 epochs.
ISSUE_METHODS = ("panning", "panning_authors", "rlpanning", "synflow", "snip", "grasp")


class Quiet:
    """A progress display that shows nothing."""

    def start(self, total: int, skipped: int) -> None: ...

    def cell_started(self, cell: Cell) -> None: ...

    def cell_finished(self, cell: Cell, record: Any) -> None: ...

    def close(self) -> None: ...


def _config(profile: Profile, device: str, args: argparse.Namespace, out: Path) -> SweepConfig:
    return SweepConfig(
        profile=profile,
        out_dir=out,
        data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(REPO),
        accelerator="gpu" if device == "cuda" else "cpu",
        num_threads=args.num_threads,
        report_every_cell=False,
    )


def measure_epochs(base: Profile, device: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Epoch time and fixed cost per cell of the dense LeNet5, in memory and through the DataLoader."""
    out: dict[str, Any] = {}
    for in_memory in (True, False):
        runs = {}
        for epochs in (args.short_epochs, args.long_epochs):
            profile = base.override(epochs=epochs, in_memory=in_memory)
            start = time.perf_counter()
            record = run_cell(Cell("dense", 0.0, 0), _config(profile, device, args, tmp))
            runs[epochs] = {**record, "cell_seconds": time.perf_counter() - start}
        short, long = runs[args.short_epochs], runs[args.long_epochs]
        epoch_s = (long["training_seconds"] - short["training_seconds"]) / (args.long_epochs - args.short_epochs)
        fixed = short["cell_seconds"] - args.short_epochs * epoch_s  # set-up, first-epoch warm-up, test
        out["in_memory" if in_memory else "dataloader"] = {
            "epoch_seconds": epoch_s,
            "fixed_seconds_per_cell": fixed,
            "test_seconds": short["test_seconds"],
            "steps_per_epoch": short["optimizer_steps"] // args.short_epochs,
            "test_acc_long": long["test_acc"],
        }
        print(f"[{device}] {'in memory ' if in_memory else 'DataLoader'}: {epoch_s:.3f} s/epoch, fixed {fixed:.1f} s")
    out["speedup_in_memory"] = out["dataloader"]["epoch_seconds"] / out["in_memory"]["epoch_seconds"]
    return out


class KeepNetwork:
    """A Lightning callback that keeps a copy of the trained backbone (compacted or not) at the end of training."""

    def __init__(self) -> None:
        from lightning.pytorch import Callback

        outer = self
        self.network: Any = None

        class _Keep(Callback):
            def on_train_end(self, trainer: Any, pl_module: Any) -> None:
                outer.network = copy.deepcopy(pl_module.backbone)

        self.callback = _Keep()


def floor_epoch_seconds(network: Any, profile: Profile, device: str, steps_per_epoch: int, steps: int) -> float:
    """Seconds per epoch of a bare forward + backward + SGD step loop of ``network`` (its floor).

    A fixed batch ``(batch_size, 1, 28, 28)`` of random images in device memory; SGD with the profile's momentum and
    weight decay; 10 warm-up steps, then ``steps`` timed steps, times ``steps_per_epoch``.
    """
    import torch
    import torch.nn.functional as F

    dev = torch.device("cuda" if device == "cuda" else "cpu")
    net = copy.deepcopy(network).to(dev).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=profile.momentum, weight_decay=profile.weight_decay)
    x = torch.randn(profile.batch_size, 1, 28, 28, device=dev)
    y = torch.randint(0, profile.num_classes(), (profile.batch_size,), device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(10):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps * steps_per_epoch


def _secs(value: float) -> str:
    """A per-epoch difference for the table: ``noise`` when the longer run was not slower than the shorter one."""
    return f"{value:.3f}" if value > 0 else f"{value:.3f} (noise)"


def _ratio(num: float, den: float) -> str:
    """``num / den`` as ``1.23x``; ``n/a`` where either is a difference that came out zero or negative."""
    return f"{num / den:.2f}x" if num > 0 and den > 0 else "n/a"


def measure_sparsity(base: Profile, device: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Seconds per epoch at each sparsity, masked and compacted, each beside the bare step loop of its network."""
    out: dict[str, Any] = {}
    for sparsity in args.sparsities:
        row: dict[str, Any] = {"method": args.speed_method}
        for name, compact in (("masked", False), ("compacted", True)):
            runs = {}
            for epochs in (args.short_epochs, args.long_epochs):
                profile = base.override(epochs=epochs, in_memory=True, compact=compact)
                keep = KeepNetwork()
                config = _config(profile, device, args, tmp)
                runs[epochs] = (
                    run_cell(Cell(args.speed_method, sparsity, 0), config, extra_callbacks=[keep.callback]),
                    keep,
                )
            short, (long, keep) = runs[args.short_epochs][0], runs[args.long_epochs]
            epoch_s = (long["training_seconds"] - short["training_seconds"]) / (args.long_epochs - args.short_epochs)
            steps_per_epoch = short["optimizer_steps"] // args.short_epochs
            floor = floor_epoch_seconds(keep.network, base, device, steps_per_epoch, args.floor_steps)
            row[name] = {
                "epoch_seconds": epoch_s,
                "floor_epoch_seconds": floor,
                "over_floor": epoch_s / floor,
                "parameters": sum(p.numel() for p in keep.network.parameters()),
                "test_acc_long": long["test_acc"],
                "steps_per_epoch": steps_per_epoch,
            }
            print(
                f"[{device}] {args.speed_method} {format_sparsity(sparsity)} {name}: {epoch_s:.3f} s/epoch, "
                f"floor {floor:.3f} s/epoch ({epoch_s / floor:.2f}x)"
            )
        row["speedup"] = row["masked"]["epoch_seconds"] / row["compacted"]["epoch_seconds"]
        out[format_sparsity(sparsity)] = row
    return out


def measure_pruning(base: Profile, device: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """Seconds of pruning per method at 99% (one cell each, 1 short epoch on a small subset)."""
    seconds = {}
    profile = base.override(epochs=1, train_subset=2048, in_memory=True)
    for method in args.methods:
        reason = method_unavailable_reason(method)
        if reason is not None:
            print(f"[{device}] pruning {method}: skipped ({reason})")
            continue
        record = run_cell(Cell(method, 0.99, 0), _config(profile, device, args, tmp))
        seconds[method] = float(record["pruning_seconds"])
        print(f"[{device}] pruning {method} at 99%, T = {profile.rounds}: {seconds[method]:.2f} s")
    return seconds


def measure_sharing(base: Profile, device: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """k dense cells at once (one process each): each cell's epoch time and the throughput gain over one cell."""
    out: dict[str, Any] = {}
    for k in args.jobs:
        profile = base.override(methods=("dense",), seeds=tuple(range(k)), epochs=args.long_epochs, in_memory=True)
        folder = tmp / f"jobs{k}-{device}"
        start = time.perf_counter()
        run_sweep(_config(profile, device, args, folder), progress=Quiet(), backend=LocalBackend(jobs=k))
        wall = time.perf_counter() - start
        rows = [r for r in load_records(folder / "runs.jsonl") if r.get("status") == "ok"]
        per_epoch = statistics.fmean(float(r["training_seconds"]) for r in rows) / args.long_epochs
        out[str(k)] = {"cells": len(rows), "wall_seconds": wall, "epoch_seconds_per_cell": per_epoch}
        print(f"[{device}] {k} cell(s) at once: {per_epoch:.3f} s/epoch each, wall {wall:.0f} s")
    k0 = args.jobs[0]
    reference = k0 / out[str(k0)]["epoch_seconds_per_cell"]  # epochs per second with k0 cells at once
    for k, row in out.items():
        row["throughput_gain"] = int(k) / row["epoch_seconds_per_cell"] / reference
    return out


def estimate(profile: Profile, methods: tuple[str, ...], measured: dict[str, Any]) -> dict[str, Any]:
    """Wall time of ``profile``'s grid restricted to ``methods`` (+ dense), from the measurements."""
    epoch = measured["epochs"]["in_memory"]["epoch_seconds"]
    fixed = measured["epochs"]["in_memory"]["fixed_seconds_per_cell"]
    pruning = measured["pruning"]
    missing = [m for m in methods if m not in pruning]
    known = [m for m in methods if m in pruning]
    prune_mean = statistics.fmean(pruning[m] for m in known) if known else 0.0
    cells = len(profile.seeds) * (1 + len(methods) * len(profile.sparsities))
    serial = len(profile.seeds) * (profile.epochs * epoch + fixed)  # dense
    for m in methods:
        serial += (
            len(profile.seeds) * len(profile.sparsities) * (pruning.get(m, prune_mean) + profile.epochs * epoch + fixed)
        )
    best_k, best = max(((k, row["throughput_gain"]) for k, row in measured["sharing"].items()), key=lambda kv: kv[1])
    return {
        "profile": profile.name,
        "methods": ["dense", *methods],
        "cells": cells,
        "epochs": profile.epochs,
        "serial_minutes": serial / 60.0,
        "best_jobs": int(best_k),
        "throughput_gain": best,
        "wall_minutes": serial / best / 60.0,
        "pruning_assumed_mean_for": missing,
    }


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep_speed.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    lines = [
        "# LeNet5 sweep speed",
        "",
        f"_Written by `benchmarks/sweep_speed.py` on {results['date']}; command: `{results['command']}`._",
        "",
        f"Machine: {results['machine']['cpu_count']} CPU cores, load average {results['machine']['load_before']:.2f}"
        f" before and {results['machine']['load_after']:.2f} after, torch threads {results['machine']['torch_threads']}"
        f"; torch {results['machine']['torch']}, lightning {results['machine']['lightning']}.",
        "",
    ]
    for device, m in results["devices"].items():
        lines += [f"## {device}: {m['name']}", ""]
        if m.get("sparsity"):
            lines += [
                f"Seconds per epoch of one `{results['settings']['speed_method']}` cell (in memory, batch 256), "
                "masked and compacted, each beside its floor (bare forward + backward + SGD step of the same "
                "network, no Trainer, no masks):",
                "",
                "| Sparsity | masked s/epoch | floor (dense shapes) | compacted s/epoch | floor (compacted) | "
                "speed-up | compacted / its floor | 80 epochs compacted (min, training only) | parameters compacted | "
                f"test acc after {results['settings']['long_epochs']} epochs, masked / compacted |",
                "|---|---|---|---|---|---|---|---|---|---|",
                *[
                    f"| {s} | {_secs(r['masked']['epoch_seconds'])} | {r['masked']['floor_epoch_seconds']:.3f} | "
                    f"{_secs(r['compacted']['epoch_seconds'])} | {r['compacted']['floor_epoch_seconds']:.3f} | "
                    f"{_ratio(r['masked']['epoch_seconds'], r['compacted']['epoch_seconds'])} | "
                    f"{_ratio(r['compacted']['epoch_seconds'], r['compacted']['floor_epoch_seconds'])} | "
                    + (f"{80 * r['compacted']['epoch_seconds'] / 60:.1f}" if r['compacted']['epoch_seconds'] > 0
                       else "n/a")
                    + f" | {r['compacted']['parameters']:,} | "
                    f"{r['masked']['test_acc_long']:.2f} / {r['compacted']['test_acc_long']:.2f} |"
                    for s, r in m["sparsity"].items()
                ],
                "",
                *(
                    [
                        "A s/epoch marked *noise* is the difference of a longer and a shorter run that came out "
                        "zero or negative: the machine's noise exceeded an epoch's time, so that row measures "
                        "nothing; its ratios are n/a.",
                        "",
                    ]
                    if any(min(r[k]["epoch_seconds"] for k in ("masked", "compacted")) <= 0
                           for r in m["sparsity"].values())
                    else []
                ),
                "The two runs of a sparsity train the same network from the same weights, masks and data order; "
                "their losses agree to float round-off at first and drift apart as training amplifies the "
                "round-off of the different shapes' sums (`benchmarks/results/compact_exact.md`: the step where "
                "they first differ by more than 1e-5), so test accuracies after several epochs are two samples of "
                "the same run's round-off noise, not equal numbers.",
                "",
            ]
        if "epochs" not in m:
            continue
        e = m["epochs"]
        lines += [
            "| Data | s/epoch | fixed s/cell | steps/epoch |",
            "|---|---|---|---|",
            *[
                f"| {k} | {e[k]['epoch_seconds']:.3f} | {e[k]['fixed_seconds_per_cell']:.1f} | "
                f"{e[k]['steps_per_epoch']} |"
                for k in ("in_memory", "dataloader")
            ],
            "",
            f"In memory is {e['speedup_in_memory']:.2f}x the DataLoader's speed.",
            "",
        ]
        if m.get("pruning"):
            lines += ["Pruning at 99% (s): " + ", ".join(f"{k} {v:.2f}" for k, v in m["pruning"].items()) + ".", ""]
        if m.get("sharing"):
            lines += [
                "| Cells at once | s/epoch per cell | throughput gain | wall (s) |",
                "|---|---|---|---|",
                *[
                    f"| {k} | {r['epoch_seconds_per_cell']:.3f} | {r['throughput_gain']:.2f}x | "
                    f"{r['wall_seconds']:.0f} |"
                    for k, r in m["sharing"].items()
                ],
                "",
            ]
        for est in m.get("estimates", []):
            lines.append(
                f"Estimated wall time of `{est['profile']}` with {', '.join(est['methods'])} ({est['cells']} cells, "
                f"{est['epochs']} epochs): **{est['wall_minutes']:.1f} min** at {est['best_jobs']} cells at once "
                f"({est['serial_minutes']:.1f} min one after another)"
                + (
                    f"; pruning of {est['pruning_assumed_mean_for']} not measured, mean assumed"
                    if est["pruning_assumed_mean_for"]
                    else ""
                )
                + "."
            )
        lines.append("")
    if results["settings"]["quick"]:
        lines += ["**Quick mode**: tiny settings; these numbers check that the script runs and estimate nothing.", ""]
    (out / "sweep_speed.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"Wrote {out / 'sweep_speed.json'} and {out / 'sweep_speed.md'}")


def main(argv: list[str] | None = None) -> int:
    import lightning
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", nargs="+", choices=("cpu", "cuda"), help="devices (default: cuda if any, else cpu)")
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 2, 4], help="cells at once to try")
    parser.add_argument("--methods", nargs="+", default=list(PROFILES["lenet5-mnist"].methods[1:]), help="pruning")
    parser.add_argument("--short-epochs", type=int, default=1)
    parser.add_argument("--long-epochs", type=int, default=3)
    parser.add_argument("--train-subset", type=int, help="train on this many images (default: all 60,000)")
    parser.add_argument("--rounds", type=int, default=100, help="T of iterative methods (paper: 100)")
    parser.add_argument("--num-threads", type=int, help="torch threads per process")
    parser.add_argument("--data-dir", help="dataset root (default as in the sweep)")
    parser.add_argument("--out", help="results folder (default: benchmarks/results; --quick: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="tiny settings to check that the script runs")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="what to measure (default: all; the grid estimate needs epochs, pruning and sharing)",
    )
    parser.add_argument(
        "--sparsities",
        nargs="+",
        default=["99", "99.9", "99.99"],
        help="sparsity part: sparsities (default 99 99.9 99.99)",
    )
    parser.add_argument("--speed-method", default="panning", help="sparsity part: the pruning method of the cells")
    parser.add_argument("--floor-steps", type=int, default=200, help="sparsity part: timed steps of the floor loop")
    parser.add_argument(
        "--rewrite-markdown",
        action="store_true",
        help="only rewrite sweep_speed.md from the sweep_speed.json in --out (measures nothing)",
    )
    args = parser.parse_args(argv)
    if args.rewrite_markdown:
        folder = Path(args.out) if args.out else REPO / "benchmarks" / "results"
        write(json.loads((folder / "sweep_speed.json").read_text(encoding="utf-8")), folder)
        return 0
    args.sparsities = [parse_sparsity(s) for s in args.sparsities]
    if args.quick:
        args.train_subset, args.rounds, args.long_epochs, args.jobs = 2048, 5, 2, [1, 2]
        args.methods = ["panning", "snip"]
        args.sparsities, args.floor_steps = [0.99], 20
    devices = args.device or (["cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available here.")
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    quiet_lightning()
    out = (
        Path(args.out)
        if args.out
        else (Path(tempfile.mkdtemp(prefix="sweep_speed-")) if args.quick else REPO / "benchmarks" / "results")
    )
    base = PROFILES["lenet5-mnist"].override(train_subset=args.train_subset, rounds=args.rounds)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": scrub_command(
            "python benchmarks/sweep_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        ),
        **git_state(),
        "settings": {
            "train_subset": args.train_subset,
            "rounds": args.rounds,
            "short_epochs": args.short_epochs,
            "long_epochs": args.long_epochs,
            "jobs": args.jobs,
            "quick": args.quick,
            "parts": args.parts,
            "sparsities": args.sparsities,
            "speed_method": args.speed_method,
            "floor_steps": args.floor_steps,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_before": os.getloadavg()[0],
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
        },
        "devices": {},
    }
    with tempfile.TemporaryDirectory(prefix="sweep_speed-cells-") as scratch:
        for device in devices:
            tmp = Path(scratch) / device
            name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or platform.machine()
            measured: dict[str, Any] = {"name": name}
            if "sparsity" in args.parts:
                measured["sparsity"] = measure_sparsity(base, device, args, tmp)
            if "epochs" in args.parts:
                measured["epochs"] = measure_epochs(base, device, args, tmp)
            if "pruning" in args.parts:
                measured["pruning"] = measure_pruning(base, device, args, tmp)
            if "sharing" in args.parts:
                measured["sharing"] = measure_sharing(base, device, args, tmp)
            if {"epochs", "pruning", "sharing"} <= set(args.parts):
                full = PROFILES["lenet5-mnist"]
                measured["estimates"] = [
                    estimate(full, ISSUE_METHODS, measured),
                    estimate(full, tuple(m for m in full.methods if m != "dense"), measured),
                ]
                if device == "cpu":
                    cpu = PROFILES["lenet5-mnist-cpu"]
                    methods = tuple(m for m in cpu.methods if m != "dense")
                    measured["estimates"].append(estimate(cpu, methods, measured))
            results["devices"][device] = measured
    results["machine"]["load_after"] = os.getloadavg()[0]
    write(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
