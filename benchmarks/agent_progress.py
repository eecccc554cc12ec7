"""Did the TD3 agent improve with training? Its checkpoints against Table 3's weights on the same episodes.

The training reward curve mixes targets (episode reward depends mostly on the target) and exploration noise, so it
cannot say whether the agent got better. This script evaluates checkpoints of one training run
(``<run-dir>/checkpoints/td3_<N>_steps.zip``) with deterministic actions on fixed targets and reset seeds, and Table
3's fixed weights on exactly the same episodes (same network initialisation and scoring batch per reset seed), and
reports the episode reward of each and their paired difference (agent − Table 3; > 0: the agent scores better).

Writes ``agent_progress.json`` (every episode) and ``agent_progress.md`` (per checkpoint and target: mean ± std of
the paired difference over the episodes, episodes the agent wins).

Usage::

    python benchmarks/agent_progress.py --run-dir <run-dir> --data-dir ../shared/datasets
    python benchmarks/agent_progress.py --run-dir runs/agent --steps 50000 200000 --episodes 2 --out /tmp/progress
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

from lightning_panning.rl.agent import evaluate_policy_rewards, evaluate_table3_rewards, load_policy, policy_preset
from lightning_panning.rl.train import build_parser, make_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
from benchmarks.sweep.provenance import git_state, scrub_command

FIRST_SEED = 10_000  # the reset seeds the exported policy's own evaluation uses (``default.json``)


def _checkpoint(run_dir: Path, steps: int) -> Path:
    path = run_dir / "checkpoints" / f"td3_{steps}_steps.zip"
    if not path.is_file():
        have = sorted(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("td3_*_steps.zip"))
        raise SystemExit(f"--steps {steps}: no checkpoint {path}; this run has "
                         f"{', '.join(map(str, have[:3]))} ... {', '.join(map(str, have[-3:]))}" if have else
                         f"--run-dir {run_dir}: no checkpoints/td3_<N>_steps.zip in it")
    return path


def paired(agent: list[dict[str, Any]], table3: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Agent − Table 3 episode reward on the same (target, reset seed) episodes.

    Example:
        >>> a = [{"target": 0.99, "seed": 1, "reward": -10.0}, {"target": 0.99, "seed": 2, "reward": -12.0}]
        >>> b = [{"target": 0.99, "seed": 1, "reward": -11.0}, {"target": 0.99, "seed": 2, "reward": -11.5}]
        >>> paired(a, b, 0.99)["wins"], paired(a, b, 0.99)["mean"]
        (1, 0.25)
    """
    ours = {e["seed"]: e["reward"] for e in agent if e["target"] == target}
    theirs = {e["seed"]: e["reward"] for e in table3 if e["target"] == target}
    diff = np.array([ours[s] - theirs[s] for s in sorted(ours) if s in theirs])
    return {"mean": float(diff.mean()), "std": float(diff.std(ddof=1)) if diff.size > 1 else 0.0,
            "wins": int((diff > 0).sum()), "episodes": int(diff.size),
            "agent": float(np.mean(list(ours.values()))), "table3": float(np.mean(list(theirs.values())))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--run-dir", required=True, help="the --out of a `lightning_panning.rl.train` run")
    p.add_argument("--data-dir", default=os.environ.get("LIGHTNING_PANNING_DATA", "../shared/datasets"))
    p.add_argument("--steps", type=int, nargs="+", default=[10_000, 50_000, 100_000, 150_000, 200_000],
                   help="checkpoints to evaluate (their step counts)")
    p.add_argument("--targets", type=float, nargs="+", default=[0.99, 0.999, 0.9999])
    p.add_argument("--episodes", type=int, default=3, help="episodes per target (reset seeds 10000, 10001, ...)")
    p.add_argument("--rounds", type=int, default=100, help="T, as the run was trained with")
    p.add_argument("--per-class", type=int, default=10, help="scoring-batch samples per class, as in training")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error(f"--episodes must be >= 1, got {args.episodes}")
    if any(not 0.0 < t < 1.0 for t in args.targets):
        p.error(f"--targets must lie in (0, 1), got {args.targets}")
    run_dir = Path(args.run_dir)
    checkpoints = {steps: _checkpoint(run_dir, steps) for steps in args.steps}
    torch.set_num_threads(args.threads)
    env_args = build_parser().parse_args(["--data-dir", args.data_dir, "--out", str(run_dir),
                                          "--threads", str(args.threads), "--rounds", str(args.rounds),
                                          "--per-class", str(args.per_class)])
    policies = {steps: load_policy(str(path)) for steps, path in checkpoints.items()}
    presets = {steps: policy_preset(policy) for steps, policy in policies.items()}
    if len({pr.name for pr in presets.values()}) != 1:
        raise SystemExit(f"--steps {args.steps}: the checkpoints were trained with different presets "
                         f"({sorted({pr.name for pr in presets.values()})})")
    preset = next(iter(presets.values()))
    env_args.preset = preset.name

    def env_factory() -> Any:
        return make_env(env_args)

    table3 = evaluate_table3_rewards(env_factory, args.targets, args.episodes, env_args.rounds, preset.observation,
                                     seed=FIRST_SEED)["episodes"]
    print("Table 3's weights: done", flush=True)
    rows: list[dict[str, Any]] = []
    for steps, path in checkpoints.items():
        res = evaluate_policy_rewards(policies[steps], env_factory, tuple(args.targets), args.episodes,
                                      seed=FIRST_SEED)
        per_target = {str(t): paired(res["episodes"], table3, t) for t in args.targets}
        rows.append({"steps": steps, "checkpoint": str(path), "episodes": res["episodes"], "per_target": per_target})
        print(f"{steps:,} steps: " + ", ".join(f"{t}: {v['mean']:+.2f}" for t, v in per_target.items()), flush=True)
    record = {"command": scrub_command(" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])), **git_state(),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "load_average": os.getloadavg(), "run_dir": str(run_dir), "preset": preset.name,
              "targets": args.targets, "episodes_per_target": args.episodes, "first_seed": FIRST_SEED,
              "threads": args.threads, "table3": table3, "checkpoints": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent_progress.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "agent_progress.md").write_text(report(record))
    return record


def report(record: dict[str, Any]) -> str:
    """The Markdown table of ``agent_progress.md``."""
    targets = [str(t) for t in record["targets"]]
    n = record["episodes_per_target"]
    lines = [
        "# The TD3 agent's checkpoints against Table 3's weights",
        "",
        "_Generated by `benchmarks/agent_progress.py`; do not edit by hand._",
        "",
        f"Each checkpoint of the run in `{record['run_dir']}` (preset `{record['preset']}`) plays {n} episode(s) per "
        f"target with deterministic actions (reset seeds {record['first_seed']}…{record['first_seed'] + n - 1}: "
        "each seed fixes the network's initialisation and the scoring batch); Table 3's fixed weights play the "
        "same episodes. Cells: agent − Table 3 episode reward (eq. 7), mean ± std over the paired episodes, and "
        "how many of them the agent wins. > 0 means the agent scores better.",
        "",
        "| checkpoint (steps) | " + " | ".join(f"target {t}" for t in targets) + " | all targets |",
        "|---|" + "---|" * (len(targets) + 1),
    ]
    table3 = {t: np.mean([e["reward"] for e in record["table3"] if str(e["target"]) == t]) for t in targets}
    for row in record["checkpoints"]:
        cells = [f"{v['mean']:+.2f} ± {v['std']:.2f} ({v['wins']}/{v['episodes']})"
                 for v in (row["per_target"][t] for t in targets)]
        means = [row["per_target"][t]["mean"] for t in targets]
        wins = sum(row["per_target"][t]["wins"] for t in targets)
        total = sum(row["per_target"][t]["episodes"] for t in targets)
        lines.append(f"| {row['steps']:,} | " + " | ".join(cells) + f" | {np.mean(means):+.2f} ({wins}/{total}) |")
    lines += ["", "Table 3's mean episode reward per target: "
              + ", ".join(f"{t}: {table3[t]:.2f}" for t in targets) + ".", "",
              f"Measured {record['date']} ({record['threads']} torch thread(s), load average "
              f"{record['load_average'][0]:.2f} at the end; timings are not reported).", "",
              "```bash", record["command"], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
