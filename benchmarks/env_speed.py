"""Seconds per RLPanning environment step on LeNet5/MNIST (100-sample balanced batch, T = 100).

Measures, interleaved step by step so that both see the same machine load:

* ``project``: :class:`lightning_panning.rl.PanningEnv.step` — one shared scoring context per mask (one forward and
  one double backward serve SNIP, GraSP, the next observation's ``L_s``/``ΔL_s``), a float64 SynFlow pass and a
  float64 ones-pass for the effective sparsity;
* ``authors_style``: the same round computed the way the authors' environment does it (each metric on its own:
  SNIP forward+backward; GraSP's two passes, a gradient pass and a ``create_graph`` pass with the double backward;
  SynFlow; then a separate forward+backward of the sparse network for the observation; the effective-sparsity pass),
  re-implemented here with plain autograd, since the authors' code is not available.

Both are compared with the authors' published anchor of 0.12 s/step (LeNet5, 2 CPU threads, their machine). CPU time
(``time.process_time``) is reported next to wall time because the benchmark machine is shared.

Usage::

    python benchmarks/env_speed.py --data-dir /path/to/mnist/root --threads 2 --steps 30
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_panning.core.masks import effective_masks, select_top_k
from lightning_panning.core.schedules import keep_count
from lightning_panning.rl import PanningEnv
from lightning_panning.rl.state import action_to_weights

AUTHORS_SECONDS = 0.12
GOAL_SECONDS = 0.03


def authors_style_round(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], masks: dict[str, torch.Tensor] | None,
    sparsity: float, weights: dict[str, float],
) -> tuple[dict[str, torch.Tensor], float, float]:
    """One round computed metric by metric, with a separate pass for the observation (no sharing)."""
    x, y = batch
    params = {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim > 1}
    total = sum(p.numel() for p in params.values())
    original = {n: p.detach().clone() for n, p in params.items()}

    def set_masked() -> None:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(original[n] * masks[n] if masks is not None else original[n])

    def grads(create_graph: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        loss = F.cross_entropy(model(x) / 200.0, y)
        return loss, list(torch.autograd.grad(loss, list(params.values()), create_graph=create_graph))

    scores: dict[str, dict[str, torch.Tensor]] = {}
    try:
        # SNIP
        set_masked()
        _, g = grads()
        scores["snip"] = {n: (gi * original[n]).abs() for n, gi in zip(params, g, strict=False)}
        # GraSP (two passes: gradient without graph, then Hg via the double backward)
        _, g0 = grads()
        _, g1 = grads(create_graph=True)
        z = sum((a * b.detach()).sum() for a, b in zip(g1, g0, strict=False))
        hg = torch.autograd.grad(z, list(params.values()))
        scores["grasp"] = {n: (h * original[n]).abs() for n, h in zip(params, hg, strict=False)}
        # SynFlow (float64, |w|, all-ones input)
        with torch.no_grad():
            signs = {n: torch.sign(p) for n, p in model.state_dict().items()}
            for p in model.state_dict().values():
                p.abs_()
        model.double()
        ones = torch.ones(1, *x.shape[1:], dtype=torch.float64)
        r = model(ones).sum()
        sg = torch.autograd.grad(r, list(params.values()))
        model.float()
        with torch.no_grad():
            for n, p in model.state_dict().items():
                p.mul_(signs[n])
        scores["synflow"] = {n: (s.float() * original[n].abs()) for n, s in zip(params, sg, strict=False)}
        fused: dict[str, torch.Tensor] = {}
        for key, metric in scores.items():  # S = Σ p_k |S_k| / RMS(S_k)
            rms = torch.sqrt(sum((v.double() ** 2).sum() for v in metric.values()) / total)
            for n, v in metric.items():
                part = weights[key] * v.double() / rms
                fused[n] = fused[n] + part if n in fused else part
        new_masks = select_top_k(fused, keep_count(total, sparsity))
        # observation: a separate forward+backward of the new sparse network
        masks = new_masks
        set_masked()
        loss, g = grads()
        loss_s, grad_s = float(loss), float(sum((gi.double() ** 2).sum() for gi in g))
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(original[n])
    effective_masks(model, new_masks, x)
    return new_masks, loss_s, grad_s


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data-dir", default=os.environ.get("LIGHTNING_PANNING_DATA", "../shared/datasets"))
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    results: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "setup": f"LeNet5/MNIST, 100-sample balanced batch, T=100, target {args.target}, {args.steps} steps "
                 "(rounds 1..steps of an episode, random actions, seed 0)",
        "authors_anchor_s": AUTHORS_SECONDS,
        "goal_s": GOAL_SECONDS,
        "load_average_before": list(os.getloadavg()),
        "runs": [],
    }
    env = PanningEnv(data_dir=args.data_dir)
    for threads in args.threads:
        torch.set_num_threads(threads)
        env.reset(seed=0, options={"target": args.target})
        rng = np.random.default_rng(0)
        session = env.episode.session
        model, batch = session.model, session.batch
        base_masks: dict[str, torch.Tensor] | None = None
        base_round = 0
        wall = {"project": [], "authors_style": []}
        cpu = {"project": [], "authors_style": []}
        for _ in range(args.steps + 2):
            action = rng.uniform(-1, 1, 3).astype(np.float32)
            t0, c0 = time.perf_counter(), time.process_time()
            env.step(action)
            t1, c1 = time.perf_counter(), time.process_time()
            weights = action_to_weights(action, ["synflow", "snip", "grasp"])
            base_masks, _, _ = authors_style_round(model, batch, base_masks, session.schedule[base_round], weights)
            base_round += 1
            t2, c2 = time.perf_counter(), time.process_time()
            wall["project"].append(t1 - t0)
            cpu["project"].append(c1 - c0)
            wall["authors_style"].append(t2 - t1)
            cpu["authors_style"].append(c2 - c1)
        run: dict[str, Any] = {"threads": threads}
        for key in wall:
            w, c = np.array(wall[key][2:]), np.array(cpu[key][2:])  # first 2 steps are warm-up
            run[key] = {"wall_median_s": float(np.median(w)), "wall_mean_s": float(w.mean()),
                        "cpu_median_s": float(np.median(c))}
        run["speedup_vs_authors_style_wall"] = run["authors_style"]["wall_median_s"] / run["project"]["wall_median_s"]
        run["speedup_vs_authors_style_cpu"] = run["authors_style"]["cpu_median_s"] / run["project"]["cpu_median_s"]
        run["speedup_vs_anchor_wall"] = AUTHORS_SECONDS / run["project"]["wall_median_s"]
        results["runs"].append(run)
    results["load_average_after"] = list(os.getloadavg())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "env_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# RLPanning environment speed (LeNet5/MNIST)", "",
        f"- command: `{results['command']}`",
        f"- date: {results['date']}; torch {results['torch']}; Python {results['python']}; "
        f"{results['cpu_count']} CPUs ({results['cpu']})",
        f"- setup: {results['setup']}",
        f"- load average before/after: {results['load_average_before']} / {results['load_average_after']} "
        "(shared machine: other jobs were running; compare the two columns of a row, measured interleaved)",
        f"- authors' anchor: {AUTHORS_SECONDS} s/step (2 CPU threads, their machine); goal ≤ {GOAL_SECONDS} s/step",
        "",
        "| threads | project wall s/step | project CPU s/step | authors-style wall s/step | authors-style CPU s/step "
        "| speed-up (wall) | speed-up (CPU) | vs 0.12 s anchor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        pr, au = run["project"], run["authors_style"]
        lines.append(
            f"| {run['threads']} | {pr['wall_median_s']:.4f} | {pr['cpu_median_s']:.4f} | {au['wall_median_s']:.4f} "
            f"| {au['cpu_median_s']:.4f} | {run['speedup_vs_authors_style_wall']:.2f}× "
            f"| {run['speedup_vs_authors_style_cpu']:.2f}× | {run['speedup_vs_anchor_wall']:.2f}× |"
        )
    lines += ["", "Medians over the measured steps. CPU time sums all threads of the process."]
    (out / "env_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
