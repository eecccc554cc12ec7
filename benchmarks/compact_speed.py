"""Does compaction make a pruned network really faster? Dense vs masked vs compacted, inference and training.

Networks: LeNet5 (1×28×28, 10 classes) and VGG19-BN (3×32×32, 10 classes), at 90%, 99% and 99.9% sparsity, freshly
initialised (timings do not depend on the weight values).

Masks: LeNet5 — our Panning (``prune(method="panning")``) on a class-balanced batch of real MNIST (10 per class), T
rounds (default 100, the paper's T; LeNet5 rounds take ~0.1 s). VGG19-BN — iterative SynFlow
(``prune(method="synflow")``, data-free), T rounds: Panning needs CIFAR-10 for its data scores and CIFAR is not on
the benchmark machine. The method used is recorded per row. Seed 0 everywhere.

Variants:

* ``dense``      — the unpruned network as built (contiguous NCHW tensors);
* ``dense_cl``   — the same in channels-last memory format (a layout change that also speeds up the dense network;
  reported so that the speed-up from compaction can be told apart from the one from the layout);
* ``masked``     — the dense network with the pruned weights zeroed (what pruning-before-training gives you);
* ``compacted``  — :func:`lightning_panning.compact` of the masked network for inference: channels with no
  input-to-output path removed (constants folded), CSR ``Linear`` layers and channels-last only where timed faster,
  compacted separately for each batch size (``example_input`` of that batch);
* training (one SGD step with momentum: forward, backward, step): ``dense``, ``masked`` (+ the
  :class:`~lightning_panning.callbacks.MaskEnforcer` re-zeroing after the step) and ``compacted`` (compacted with
  ``mode="training"``: only the channels that reach no output, exact for training, + the enforcer).

Costs beside the times: parameters (stored values), multiply-accumulates (MACs) per sample as computed, and the
*ideal*: the MACs of the compacted network's kept weights only, i.e. what a perfect unstructured-sparse kernel would
compute. ``FLOP ratio`` = dense MACs / compacted MACs; ``ideal ratio`` = dense MACs / ideal MACs is the limit of any
exact speed-up from the mask; ``gap`` = ideal ratio / measured speed-up.

Timing: the variants of one measurement are run round-robin (order rotated every repeat) so that load from other
processes hits all of them alike; each repeat runs ~``--budget`` seconds of calls; the median over repeats is
reported (and the minimum in the JSON). ``os.getloadavg()`` is recorded around every measurement.

Usage::

    python benchmarks/compact_speed.py            # full run: CPU (2 threads), GPU when available (~20 min, 2 cores)
    python benchmarks/compact_speed.py --quick    # a check of the script: few rounds/repeats, small batches (~3 min)
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_panning import MaskEnforcer, apply_masks, prune
from lightning_panning.compaction import compaction, model_cost
from lightning_panning.models import VGG19, LeNet5

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
NETWORKS: dict[str, tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = {
    "lenet5": ("LeNet5", LeNet5, (1, 28, 28)),
    "vgg19": ("VGG19-BN", lambda: VGG19(num_classes=10), (3, 32, 32)),
}


def load() -> float:
    return os.getloadavg()[0]


def mnist(data_dir: Path) -> Any:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    return datasets.MNIST(str(data_dir), train=True, download=False, transform=transform)


def make_masks(key: str, model: nn.Module, target: float, args: argparse.Namespace) -> tuple[dict, dict[str, Any]]:
    shape = NETWORKS[key][2]
    example = torch.zeros(1, *shape)
    method = args.vgg19_method if key == "vgg19" else "panning"
    data = None
    if method == "panning":
        try:
            data = mnist(args.data_dir) if key == "lenet5" else None
        except (RuntimeError, OSError) as err:
            print(f"MNIST not found at {args.data_dir} ({err}); using SynFlow masks for {key}", file=sys.stderr)
        if data is None:
            method = "synflow"
    start = time.perf_counter()
    masks = prune(model, data, target, method=method, rounds=args.rounds, example_input=example, seed=0,
                  progress=False)
    info = {"method": method, "rounds": args.rounds, "data": "MNIST, 10 per class" if data is not None else None,
            "seconds": time.perf_counter() - start}
    return masks, info


def timed(fns: dict[str, Callable[[], Any]], repeats: int, budget: float, device: torch.device) -> dict[str, Any]:
    """Seconds per call of each function, round-robin, order rotated every repeat."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    calls: dict[str, int] = {}
    for name, fn in fns.items():
        fn()
        sync()
        start = time.perf_counter()
        fn()
        sync()
        calls[name] = max(1, int(budget / max(time.perf_counter() - start, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    loads = [load()]
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            for _ in range(calls[name]):
                fns[name]()
            sync()
            samples[name].append((time.perf_counter() - start) / calls[name])
        loads.append(load())
    return {
        "median_s": {n: statistics.median(v) for n, v in samples.items()},
        "min_s": {n: min(v) for n, v in samples.items()},
        "calls_per_repeat": calls,
        "load": {"min": min(loads), "mean": statistics.mean(loads), "max": max(loads)},
    }


def inference(model: nn.Module, masks: dict, shape: tuple[int, ...], batch: int, device: torch.device,
              args: argparse.Namespace) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=g).to(device)
    dense = copy.deepcopy(model).to(device).eval()
    dense_cl = copy.deepcopy(dense).to(memory_format=torch.channels_last)
    masked = apply_masks(copy.deepcopy(dense), masks)
    start = time.perf_counter()
    result = compaction(masked, masks, example_input=x)
    compaction_s = time.perf_counter() - start
    small = result.model.eval()
    with torch.inference_mode():
        fns = {
            "dense": lambda: dense(x),
            "dense_cl": lambda: dense_cl(x),
            "masked": lambda: masked(x),
            "compacted": lambda: small(x),
        }
        timing = timed(fns, args.repeats, args.budget, device)
    assert result.after is not None
    return {
        **timing,
        "compaction_seconds": compaction_s,
        "sparse_layers": [n for n, v in result.layers.items() if v.get("sparse")],
        "memory_format": result.memory_format,
        "compacted_macs": result.after.macs,
        "max_abs_error": result.max_abs_error,
    }


def training(model: nn.Module, masks: dict, shape: tuple[int, ...], batch: int, device: torch.device,
             args: argparse.Namespace) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=g).to(device)
    y = (torch.arange(batch) % 10).to(device)
    dense = copy.deepcopy(model).to(device).train()
    masked = apply_masks(copy.deepcopy(dense), masks)
    result = compaction(masked, masks, example_input=x, mode="training")
    small = result.model.train()
    steps = {}
    enforcers = []
    for name, net, net_masks in (("dense", dense, None), ("masked", masked, masks), ("compacted", small,
                                                                                      result.masks)):
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        if net_masks is not None:
            enforcer = MaskEnforcer(net, net_masks)
            enforcer.attach([opt])
            enforcers.append(enforcer)

        def step(net: nn.Module = net, opt: torch.optim.Optimizer = opt) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

        steps[name] = step
    timing = timed(steps, args.repeats, args.budget, device)
    for enforcer in enforcers:
        enforcer.detach()
    assert result.after is not None
    return {**timing, "removed_channels": result.removed_channels, "compacted_macs": result.after.macs}


def run(args: argparse.Namespace) -> dict[str, Any]:
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    rows: list[dict[str, Any]] = []
    for key in args.networks:
        label, build, shape = NETWORKS[key]
        for target in args.sparsities:
            torch.manual_seed(0)
            model = build().eval()
            masks, mask_info = make_masks(key, model, target, args)
            x1 = torch.zeros(1, *shape)
            probe = compaction(model, masks, example_input=x1, sparse="never", memory_format="preserve")
            dense_cost = model_cost(model, x1)
            assert probe.before is not None and probe.after is not None
            row: dict[str, Any] = {
                "network": label,
                "sparsity": target,
                "masks": mask_info,
                "parameters": {"dense": dense_cost.parameters, "masked_nonzero": probe.before.nonzero_parameters,
                               "compacted": probe.after.parameters},
                "macs": {"dense": dense_cost.macs, "compacted": probe.after.macs, "ideal": probe.after.nonzero_macs},
                "removed_channels": probe.removed_channels,
                "folded_channels": probe.folded_channels,
                "layers": {n: {"before": v["before"], "after": v["after"]} for n, v in probe.layers.items()},
                "inference": {},
                "training": {},
            }
            for device in devices:
                for batch in args.batches:
                    print(f"{label} {target} {device.type} inference batch {batch}", file=sys.stderr)
                    row["inference"][f"{device.type}/{batch}"] = inference(model, masks, shape, batch, device, args)
                batch = args.train_batch if device.type == "cpu" else args.gpu_train_batch
                print(f"{label} {target} {device.type} training batch {batch}", file=sys.stderr)
                row["training"][f"{device.type}/{batch}"] = training(model, masks, shape, batch, device, args)
            rows.append(row)
    return {"rows": rows}


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 1 else f"{seconds * 1e3:.0f}"


def write(data: dict[str, Any], out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    meta = data["meta"]
    lines = [
        "# Compaction speed: dense vs masked vs compacted",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}; torch {meta['torch']}; {meta['cpu']}; {meta['cpus']} CPUs; threads {meta['threads']}"
        f"; GPU: {meta['gpu'] or 'none'}",
        f"- load average (1 min) over the whole run: start {meta['load_start']:.2f}, end {meta['load_end']:.2f}; per "
        "measurement in the tables (mean)",
        f"- masks: LeNet5 {meta['masks']['lenet5']}; VGG19-BN {meta['masks']['vgg19']}; seed 0",
        f"- repeats {meta['repeats']} of ~{meta['budget']} s each, round-robin; median reported",
        "- speed-up = dense time / compacted time; `vs best dense` uses the faster of dense and dense_cl; "
        "FLOP ratio = dense MACs / compacted MACs; ideal = dense MACs / MACs of the compacted network's kept weights; "
        "gap = ideal / speed-up",
        "",
        "## Size and arithmetic (per sample)",
        "",
        "| network | sparsity | masks | params dense | nonzero (masked) | params compacted | MACs dense | MACs "
        "compacted | MACs ideal | FLOP ratio | ideal ratio | channels removed (+ folded) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        p, m = row["parameters"], row["macs"]
        lines.append(
            f"| {row['network']} | {row['sparsity']:g} | {row['masks']['method']} T={row['masks']['rounds']} | "
            f"{p['dense']:,} | {p['masked_nonzero']:,} | {p['compacted']:,} | {m['dense']:,} | {m['compacted']:,} | "
            f"{m['ideal']:,} | {m['dense'] / m['compacted']:.2f}× | {m['dense'] / max(m['ideal'], 1):.1f}× | "
            f"{row['removed_channels']} (+{row['folded_channels']}) |"
        )
    lines += [
        "",
        "## Inference (ms per batch)",
        "",
        "| network | sparsity | device/batch | dense | dense_cl | masked | compacted | speed-up | vs best dense | "
        "FLOP ratio | ideal | gap | compacted as | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        m = row["macs"]
        for where, r in row["inference"].items():
            t = r["median_s"]
            speed = t["dense"] / t["compacted"]
            best = min(t["dense"], t["dense_cl"]) / t["compacted"]
            ideal = m["dense"] / max(m["ideal"], 1)
            how = r["memory_format"].get("chosen", "preserve")
            if r["sparse_layers"]:
                how += ", CSR " + ", ".join(r["sparse_layers"])
            lines.append(
                f"| {row['network']} | {row['sparsity']:g} | {where} | {_ms(t['dense'])} | {_ms(t['dense_cl'])} | "
                f"{_ms(t['masked'])} | {_ms(t['compacted'])} | {speed:.2f}× | {best:.2f}× | "
                f"{m['dense'] / m['compacted']:.2f}× | {ideal:.1f}× | {ideal / speed:.1f}× | {how} | "
                f"{r['load']['mean']:.2f} |"
            )
    lines += [
        "",
        "## Training step (ms: forward + backward + SGD step; masked and compacted re-zero pruned weights after it)",
        "",
        "| network | sparsity | device/batch | dense | masked | compacted | speed-up vs dense | vs masked | "
        "channels removed | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        for where, r in row["training"].items():
            t = r["median_s"]
            lines.append(
                f"| {row['network']} | {row['sparsity']:g} | {where} | {_ms(t['dense'])} | {_ms(t['masked'])} | "
                f"{_ms(t['compacted'])} | {t['dense'] / t['compacted']:.2f}× | {t['masked'] / t['compacted']:.2f}× | "
                f"{r['removed_channels']} | {r['load']['mean']:.2f} |"
            )
    lines.append("")
    (out / f"{stem}.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="check the script: T=2, 2 repeats, small batches")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.99, 0.999])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 256])
    parser.add_argument("--train-batch", type=int, default=64, help="training batch on the CPU")
    parser.add_argument("--gpu-train-batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=100, help="pruning rounds T")
    parser.add_argument("--vgg19-method", default="synflow", help="VGG19 masks (no CIFAR-10 here for panning)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of calls per repeat and variant")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=DATASETS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.repeats, args.budget = 2, 2, 0.05
        args.batches, args.train_batch, args.gpu_train_batch = [1, 8], 4, 8
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    meta: dict[str, Any] = {
        "command": "python benchmarks/compact_speed.py" + ("".join(" " + a for a in sys.argv[1:]) if argv is None
                                                          else "".join(" " + a for a in argv)),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.cpu_only else None,
        "repeats": args.repeats,
        "budget": args.budget,
        "masks": {
            "lenet5": f"panning on MNIST (10 per class), T={args.rounds}",
            "vgg19": f"{args.vgg19_method}, T={args.rounds}",
        },
        "load_start": load(),
    }
    data = run(args)
    meta["load_end"] = load()
    meta["wall_seconds"] = time.perf_counter() - start
    data = {"meta": meta, **data}
    stem = "compact_speed_quick" if args.quick else "compact_speed"
    write(data, args.out, stem)
    print(f"wrote {args.out}/{stem}.md ({meta['wall_seconds']:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
