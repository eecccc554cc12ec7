"""Training-step cost of keeping a pruned network sparse, on CPU.

Three variants of the same model, timed side by side in one process with the repeats interleaved (round-robin, the
order rotated every repeat) so that load from other processes hits all of them alike:

* ``dense``: plain training step (forward, backward, SGD with momentum and weight decay);
* ``ours``: the same plus :class:`lightning_panning.callbacks.MaskEnforcer`'s post-step hook (one fused
  ``_foreach_mul_`` of every pruned weight by its mask after ``optimizer.step()``), what ``PanningCallback`` installs;
* ``torch_prune``: ``torch.nn.utils.prune.custom_from_mask`` forward pre-hooks (``weight = weight_orig * weight_mask``
  recomputed in every forward and differentiated through), what Lightning's ``ModelPruning`` uses.

Reported: the median time of one training step per variant and its ratio to dense.

Usage::

    python benchmarks/overhead.py            # LeNet5 (batch 256) and VGG19-BN (batch 64), 2 threads, ~4 min
    python benchmarks/overhead.py --quick    # smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from lightning_panning import MaskEnforcer
from lightning_panning.core import prunable_parameters
from lightning_panning.models import VGG19, LeNet5

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("dense", "ours", "torch_prune")


def random_masks(model: nn.Module, sparsity: float, seed: int) -> dict[str, torch.Tensor]:
    """Per-layer random masks at ``sparsity`` (the enforcement cost does not depend on which weights are kept)."""
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) >= sparsity for n, p in prunable_parameters(model).items()}


def build(variant: str, make: Any, masks: dict[str, torch.Tensor]) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = make()
    if variant == "torch_prune":
        modules = dict(model.named_modules())
        for name, mask in masks.items():
            torch_prune.custom_from_mask(modules[name.rsplit(".", 1)[0]], "weight", mask)
    else:
        with torch.no_grad():
            for name, mask in masks.items():
                model.get_parameter(name).mul_(mask)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    if variant == "ours":
        enforcer = MaskEnforcer(model, masks)
        enforcer.attach([optimizer])
        enforcer.apply()
        model._enforcer = enforcer  # type: ignore[assignment]  # keep it alive with the model
    return model, optimizer


def step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()


def bench_model(name: str, make: Any, shape: tuple[int, ...], batch: int, repeats: int, steps: int,
                sparsity: float, warmup: int = 2) -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *shape, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    masks = random_masks(make(), sparsity, seed=0)
    runs = {v: build(v, make, masks) for v in VARIANTS}
    for model, optimizer in runs.values():  # warm-up (allocator, autograd graph caches)
        for _ in range(warmup):
            step(model, optimizer, x, y)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    order = list(VARIANTS)
    for r in range(repeats):
        for v in order:
            model, optimizer = runs[v]
            start = time.perf_counter()
            for _ in range(steps):
                step(model, optimizer, x, y)
            times[v].append((time.perf_counter() - start) / steps)
        order = order[1:] + order[:1]
        print(f"  {name} repeat {r + 1}/{repeats}: " + ", ".join(f"{v} {times[v][-1] * 1e3:.1f} ms" for v in VARIANTS),
              file=sys.stderr)
    # sanity: pruned weights are zero after training in the enforced variants
    for v in ("ours", "torch_prune"):
        model = runs[v][0]
        for n, mask in masks.items():
            w = model.get_parameter(n) if v == "ours" else model.get_submodule(n.rsplit(".", 1)[0]).weight
            assert bool((w.detach()[~mask] == 0).all()), (v, n)
    # the enforcement alone, timed in isolation (immune to load drifting between variants): one hook call
    enforcer: MaskEnforcer = runs["ours"][0]._enforcer  # type: ignore[assignment]
    hook_times = []
    for _ in range(20):
        start = time.perf_counter()
        enforcer.apply()
        hook_times.append(time.perf_counter() - start)
    median = {v: statistics.median(times[v]) for v in VARIANTS}
    quartiles = {v: statistics.quantiles(times[v], n=4) if len(times[v]) > 1 else [times[v][0]] * 3 for v in VARIANTS}
    return {
        "model": name,
        "input_shape": list(shape),
        "batch_size": batch,
        "repeats": repeats,
        "steps_per_repeat": steps,
        "sparsity": sparsity,
        "prunable_weights": sum(m.numel() for m in masks.values()),
        "median_step_ms": {v: median[v] * 1e3 for v in VARIANTS},
        "iqr_step_ms": {v: [quartiles[v][0] * 1e3, quartiles[v][2] * 1e3] for v in VARIANTS},
        "ratio_to_dense": {v: median[v] / median["dense"] for v in VARIANTS},
        "ours_hook_ms": statistics.median(hook_times) * 1e3,
        "ours_hook_fraction_of_dense_step": statistics.median(hook_times) / median["dense"],
        # the paired per-repeat ratio is less sensitive to load drifting between repeats
        "median_paired_ratio": {
            v: statistics.median(t / d for t, d in zip(times[v], times["dense"], strict=True)) for v in VARIANTS
        },
    }


def write(results: list[dict[str, Any]], meta: dict[str, Any], stem: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    lines = [
        "# Mask-enforcement overhead during training (CPU)",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}; torch {meta['torch']}; threads {meta['threads']}; {meta['platform']}",
        f"- sparsity {meta['sparsity']}, random per-layer masks; SGD (momentum 0.9, weight decay 5e-4); random data",
        "- variants: **dense**; **ours** = `MaskEnforcer` post-step `_foreach_mul_` (what `PanningCallback` uses);",
        "  **torch_prune** = `torch.nn.utils.prune` forward pre-hooks (what Lightning's `ModelPruning` uses).",
        "- repeats interleaved round-robin; median time per training step; ratio = median / dense median;",
        "  paired = median over repeats of (variant / dense) in the same repeat.",
        "",
        "| model | batch | dense ms/step | ours ms/step | torch_prune ms/step | ours / dense | torch_prune / dense "
        "| ours / dense (paired) | torch_prune / dense (paired) | ours: hook alone, ms (% of dense step) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m, q, p = r["median_step_ms"], r["ratio_to_dense"], r["median_paired_ratio"]
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {m['dense']:.1f} | {m['ours']:.1f} | {m['torch_prune']:.1f} "
            f"| {q['ours']:.3f}x | {q['torch_prune']:.3f}x | {p['ours']:.3f}x | {p['torch_prune']:.3f}x "
            f"| {r['ours_hook_ms']:.2f} ({100 * r['ours_hook_fraction_of_dense_step']:.2f}%) |"
        )
    lines += [
        "",
        "Goal: ours <= 1.03x dense and below torch_prune. The end-to-end ratios carry the noise of a shared machine;",
        "the isolated hook time is the enforcement's actual cost per step (it is all that `ours` adds to `dense`).",
        "",
    ]
    for r in results:
        ours, theirs = r["median_step_ms"]["ours"], r["median_step_ms"]["torch_prune"]
        end_to_end = r["median_paired_ratio"]["ours"] <= 1.03 and ours < theirs
        isolated = r["ours_hook_fraction_of_dense_step"] <= 0.03
        lines.append(
            f"- {r['model']}: isolated cost {'met' if isolated else 'NOT met'} "
            f"({100 * r['ours_hook_fraction_of_dense_step']:.2f}% of a dense step); end-to-end "
            f"{'met' if end_to_end else 'NOT met'} (paired ratio {r['median_paired_ratio']['ours']:.3f}x, "
            f"torch_prune {r['median_paired_ratio']['torch_prune']:.3f}x)."
        )
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=0.98)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test); writes no files")
    parser.add_argument("--lenet-repeats", type=int, default=9)
    parser.add_argument("--vgg-repeats", type=int, default=3)
    parser.add_argument("--vgg-batch", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = args.quick
    results = [
        bench_model("LeNet5", LeNet5, (1, 28, 28), 256, 3 if quick else args.lenet_repeats, 2,
                    args.sparsity),
        bench_model("VGG19-BN", lambda: VGG19(num_classes=10), (3, 32, 32), 8 if quick else args.vgg_batch,
                    2 if quick else args.vgg_repeats, 1, args.sparsity, warmup=1),
    ]
    meta = {
        "command": "python " + " ".join(["benchmarks/overhead.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
        "sparsity": args.sparsity,
    }
    if not quick:  # a smoke run does not overwrite the committed results
        write(results, meta, "overhead")
    print(json.dumps({r["model"]: r["median_paired_ratio"] for r in results}, indent=2))


if __name__ == "__main__":
    main()
