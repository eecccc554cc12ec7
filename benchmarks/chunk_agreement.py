"""How far chunked scoring (``micro_batch``) moves the masks, with BatchNorm in train mode and without.

With train-mode BatchNorm (how the paper and the authors score) each chunk is normalised by its own statistics, so
the chunked scores are not the whole batch's; on networks whose layers treat samples independently they are, up to
summation order. This measures the mask agreement of chunked against whole-batch Panning (SNIP, GraSP and fused
default Panning) on LeNet5, VGG19-BN and ResNet-18 at a few chunk sizes, and writes
``benchmarks/results/chunk_agreement.{md,json}`` with the command, the git commit and the machine load.

    python benchmarks/chunk_agreement.py                      # the committed run
    python benchmarks/chunk_agreement.py --models lenet5 --chunks 50 --rounds 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
from benchmarks.sweep.provenance import code_label
from lightning_panning.core import get_pruner
from lightning_panning.models import VGG19, LeNet5, ResNet18

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {
    "lenet5": (lambda: LeNet5(), (1, 28, 28)),
    "vgg19_bn": (lambda: VGG19(num_classes=10), (3, 32, 32)),
    "resnet18": (lambda: ResNet18(num_classes=10), (3, 32, 32)),
}


def agreement(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(share of entries equal, Jaccard of the kept sets)."""
    same = sum(int((a[n] == b[n]).sum()) for n in a)
    total = sum(a[n].numel() for n in a)
    inter = sum(int((a[n] & b[n]).sum()) for n in a)
    union = sum(int((a[n] | b[n]).sum()) for n in a)
    return same / total, inter / union




def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=["snip", "grasp", "panning"])
    parser.add_argument("--chunks", nargs="+", type=int, default=[50, 20, 10])
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "chunk_agreement")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for model_name in args.models:
        build, shape = MODELS[model_name]
        g = torch.Generator().manual_seed(0)
        n = 10 * args.per_class
        batch = (torch.randn(n, *shape, generator=g), torch.arange(10).repeat(args.per_class))
        for method in args.methods:
            torch.manual_seed(0)
            model = build()
            whole = get_pruner(method, rounds=args.rounds, progress=False).prune(model, batch, args.target).masks
            for chunk in args.chunks:
                start = time.perf_counter()
                pruner = get_pruner(method, rounds=args.rounds, progress=False, micro_batch=chunk)
                chunked = pruner.prune(model, batch, args.target).masks
                equal, jaccard = agreement(chunked, whole)
                row = {"model": model_name, "method": method, "samples": n, "micro_batch": chunk,
                       "target": args.target, "rounds": args.rounds, "entries_equal": equal,
                       "jaccard_kept": jaccard, "seconds": time.perf_counter() - start}
                rows.append(row)
                print(json.dumps(row), flush=True)
    command = "python benchmarks/chunk_agreement.py " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {"command": command.strip(), "git_commit": code_label(), "load_before": os.getloadavg()[0],
            "threads": args.threads, "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [
        "# Chunked scoring against the whole batch (`micro_batch`)",
        "",
        f"Command: `{meta['command']}`; code: `{meta['git_commit']}`; torch {meta['torch']}, {args.threads} thread(s);",
        f"load average when written: {meta['load_before']:.2f}. Written by `benchmarks/chunk_agreement.py`.",
        "",
        "LeNet5 has no BatchNorm: its chunked scores equal the whole batch's up to summation order. VGG19-BN and",
        "ResNet-18 score with BatchNorm in train mode, which normalises each chunk by its own statistics.",
        "",
        "| model | method | samples | micro_batch | entries equal | Jaccard of kept |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['model']} | {r['method']} | {r['samples']} | {r['micro_batch']} | {r['entries_equal']:.6f} | "
              f"{r['jaccard_kept']:.4f} |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
