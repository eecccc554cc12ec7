"""The paper's Figure 4 for a trained RLPanning policy: actions a1..a3 and reward over the rounds, at several targets.

For each target, a fresh LeNet5 (or ``--model``) is pruned with :func:`lightning_panning.rl.agent.rl_prune` (T = 100
rounds, a class-balanced batch of 10 samples per class from the training set) with the policy's deterministic
actions; the same network and batch are also pruned with Table 3's fixed weights, whose per-round reward is drawn for
comparison. Writes ``figure4.png`` (one column per target: actions and reward on top, remaining ratio below),
``figure4.json`` (every round's action, weights, reward terms and sparsities) and ``figure4.md`` (episode rewards and
final effective sparsities, agent vs Table 3).

Usage::

    python benchmarks/figure4.py --policy <run-dir>/export/default.zip --data-dir ../shared/datasets
    python benchmarks/figure4.py --policy default --targets 0.9 0.99 0.999 --out /tmp/fig4   # the shipped policy
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_panning import models
from lightning_panning.data.mnist import MNIST_MEAN, MNIST_STD
from lightning_panning.rl.agent import FixedActionPolicy, load_policy, policy_preset, rl_prune
from lightning_panning.rl.env import load_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
from benchmarks.sweep.provenance import git_state, scrub_command


def scoring_batch(data_dir: str, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-balanced batch of normalised MNIST training images."""
    x, y = load_mnist(data_dir)
    rng = np.random.default_rng(seed)
    index = np.concatenate([rng.choice(np.flatnonzero(y.numpy() == c), per_class, replace=False) for c in range(10)])
    chosen = torch.from_numpy(index)
    return (x[chosen].float() / 255.0 - MNIST_MEAN) / MNIST_STD, y[chosen]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--policy", required=True, help="a TD3 zip saved by lightning_panning.rl.train, or 'default'")
    p.add_argument("--data-dir", default=os.environ.get("LIGHTNING_PANNING_DATA", "../shared/datasets"))
    p.add_argument("--targets", type=float, nargs="+", default=[0.9, 0.99, 0.999, 0.9999])
    p.add_argument("--model", default="LeNet5")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="seed of the network's initialisation and of the batch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "figure4"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    agent = load_policy(args.policy)
    preset = policy_preset(agent)
    batch = scoring_batch(args.data_dir, args.per_class, args.seed)
    runs: list[dict[str, Any]] = []
    for target in args.targets:
        torch.manual_seed(args.seed)
        model = getattr(models, args.model)()
        for name, policy in (("agent", agent), ("table3", FixedActionPolicy(target, args.rounds,
                                                                             layout=preset.observation))):
            result = rl_prune(model, batch, target, policy, rounds=args.rounds, per_class=args.per_class,
                              seed=args.seed, preset=preset)
            runs.append({"target": target, "policy": name, "total_reward": result.total_reward,
                         "final_effective_sparsity": result.steps[-1]["effective_sparsity"], "steps": result.steps})
            print(f"target {target:g} {name}: episode reward {result.total_reward:.3f}", flush=True)
    record = {"command": scrub_command(" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])), **git_state(),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "policy": str(args.policy),
              "preset": preset.to_dict(), "model": args.model, "rounds": args.rounds, "seed": args.seed,
              "runs": runs}
    (out / "figure4.json").write_text(json.dumps(record) + "\n")
    plot(runs, args.targets, out / "figure4.png", f"RLPanning policy {Path(str(args.policy)).name} on "
         f"{args.model}/MNIST (T = {args.rounds})")
    lines = ["# Figure 4: RLPanning actions and reward over the rounds", "", f"- command: `{record['command']}`",
             f"- date: {record['date']}; policy `{args.policy}` (preset {preset.name!r}); {args.model}, seed "
             f"{args.seed}", "", "| target | agent episode reward | Table 3 episode reward | agent final ρ_e | "
             "Table 3 final ρ_e |", "|---|---|---|---|---|"]
    for target in args.targets:
        a = next(r for r in runs if r["target"] == target and r["policy"] == "agent")
        b = next(r for r in runs if r["target"] == target and r["policy"] == "table3")
        lines.append(f"| {target:g} | {a['total_reward']:.3f} | {b['total_reward']:.3f} | "
                     f"{a['final_effective_sparsity']:.6f} | {b['final_effective_sparsity']:.6f} |")
    (out / "figure4.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return record


def plot(runs: list[dict[str, Any]], targets: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(targets), figsize=(4.0 * len(targets), 5.2), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [2.2, 1.0]})
    for col, target in enumerate(targets):
        agent = next(r for r in runs if r["target"] == target and r["policy"] == "agent")["steps"]
        table3 = next(r for r in runs if r["target"] == target and r["policy"] == "table3")["steps"]
        top, bottom = axes[0][col], axes[1][col]
        rounds = [s["round"] for s in agent]
        for key, label in (("a1", "a1 (SynFlow)"), ("a2", "a2 (SNIP)"), ("a3", "a3 (GraSP)")):
            top.plot(rounds, [s[key] for s in agent], lw=1.3, label=label)
        top.set_ylim(-1.05, 1.05)
        top.set_title(f"target {target:g}", fontsize=10)
        twin = top.twinx()
        twin.plot(rounds, [s["reward"] for s in agent], color="black", lw=1.0, ls="--", label="reward (agent)")
        twin.plot([s["round"] for s in table3], [s["reward"] for s in table3], color="grey", lw=1.0, ls=":",
                  label="reward (Table 3)")
        if col == 0:
            top.set_ylabel("action a")
            handles = top.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
            labels = top.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
            top.legend(handles, labels, fontsize=7, loc="lower left")
        if col == len(targets) - 1:
            twin.set_ylabel("reward r")
        top.grid(alpha=0.3)
        bottom.plot(rounds, [max(s["remaining"], 1e-12) for s in agent], color="tab:purple")
        bottom.set_yscale("log")
        bottom.set_xlabel("round t")
        bottom.grid(alpha=0.3, which="both")
        if col == 0:
            bottom.set_ylabel("remaining ratio")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
