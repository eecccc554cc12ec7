"""Range of every RLPanning reward term and observation entry, under three loss normalisations (a value measurement).

Runs RLPanning episodes on LeNet5/MNIST (T = 100 rounds, 10 samples per class) at several final targets with two
action sources — uniform random actions and Table 3's weights (``a_k = 2 p_k − 1``) — and records, per step, the raw
figures the reward is made of: the dense network's loss ``L`` and ``gᵀg`` ``ΔL``, the sparse network's ``L_s`` and
``ΔL_s``, the empty network's loss ``L_∅``, ``ρ_t``, ``ρ_e`` and ``r_done``. From the same raw figures it evaluates eq.
(7)'s terms under each loss normalisation of :class:`lightning_panning.rl.state.LossNormalizer`:

* ``relative``: ``N(x) = x / (x + x_dense)`` for the loss and ``gᵀg`` (this project's first choice);
* ``running``: the authors' ``(x − min) / (max − min)`` over every value seen, carried across the episodes in the
  order they ran (seeded from the first episode's dense figures);
* ``gap``: loss ``(x − L) / (L_∅ − L)`` (the fraction of the way to the empty network's loss), ``gᵀg`` relative
  (a candidate, not offered by the library);
* ``sensitivity``: loss ``½ + (x − L) / ‖∂L/∂w ⊙ w‖₂``, ``gᵀg`` relative (the default chosen from this
  measurement).

It then also runs the ``"authors"`` preset itself (their observation layout, new batch per step, one network, running
bounds from 10 batches) and reports its terms as the environment returns them.

Outputs ``reward_terms.json`` (every step's raw figures), ``reward_terms.md`` (tables) and ``reward_terms.png``.
This measures values, not time. Usage::

    python benchmarks/reward_terms.py --data-dir ../shared/datasets            # ~10 min on one CPU thread
    python benchmarks/reward_terms.py --data-dir ../shared/datasets --quick    # 2 targets x 6 rounds, to a temp dir
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_panning.rl import PanningEnv
from lightning_panning.rl.agent import FixedActionPolicy
from lightning_panning.rl.episode import empty_loss
from lightning_panning.rl.state import LossNormalizer, reward_terms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
from benchmarks.sweep.provenance import git_state, scrub_command

NORMALIZATIONS = ("relative", "running", "gap", "sensitivity")
TERMS = ("r1", "r2", "r3", "r_done")
OBS = ("N(L)", "N(ΔL)", "N(L_s)", "N(ΔL_s)", "ρ_t", "ρ_e", "t/T")
AUTHORS_OBS = ("N(L)", "N(ΔL)", "r1", "r2", "ρ_e", "ρ_t", "(t−1)/T")


def run_episode(env: PanningEnv, seed: int, target: float, policy: str, rng: np.random.Generator) -> dict[str, Any]:
    """One episode; returns its raw figures per step and the observations the env returned."""
    obs, info = env.reset(seed=seed, options={"target": target})
    assert env.episode is not None
    empty = empty_loss(env.episode.session) if env.preset.name == "default" else float("nan")
    fixed = FixedActionPolicy(target, env.rounds, layout=env.preset.observation)
    steps: list[dict[str, Any]] = []
    observations = [obs.tolist()]
    done = False
    while not done:
        if policy == "random":
            action = rng.uniform(-1.0, 1.0, size=3).astype(np.float32)
        else:
            action = fixed.predict(obs)[0]
        obs, reward, terminated, truncated, info = env.step(action)
        steps.append({k: info[k] for k in ("round", "sparsity", "effective_sparsity", "dead", "loss", "grad_norm",
                                           "loss_scale", "sparse_loss", "sparse_grad_norm", "r1", "r2", "r3",
                                           "r_done")} | {"reward": float(reward), "empty_loss": empty})
        observations.append(obs.tolist())
        done = terminated or truncated
    return {"seed": seed, "target": target, "policy": policy, "steps": steps, "observations": observations}


def terms_under(episodes: Sequence[dict[str, Any]], mode: str, rounds: int) -> list[list[dict[str, float]]]:
    """Eq. (7)'s terms and the paper-layout observation of every step, recomputed with normalisation ``mode``."""
    normalizer = LossNormalizer("sensitivity" if mode == "gap" else mode)  # type: ignore[arg-type]
    out = []
    for episode in episodes:
        first = episode["steps"][0]
        normalizer.reset(first["loss"], first["grad_norm"], first["loss_scale"])
        rows = []
        for s in episode["steps"]:
            n_l, n_ls = normalizer.pair("loss", s["loss"], s["sparse_loss"])
            if mode == "gap":
                n_l, n_ls = 0.0, (s["sparse_loss"] - s["loss"]) / (s["empty_loss"] - s["loss"])
            n_g, n_gs = normalizer.pair("grad_norm", s["grad_norm"], s["sparse_grad_norm"])
            terms = reward_terms(n_l, n_g, n_ls, n_gs, s["sparsity"], s["effective_sparsity"], dead=s["dead"],
                                 t=s["round"], rounds=rounds)
            rows.append({**terms.to_dict(), "N(L)": n_l, "N(ΔL)": n_g, "N(L_s)": n_ls, "N(ΔL_s)": n_gs,
                         "ρ_t": s["sparsity"], "ρ_e": s["effective_sparsity"], "t/T": s["round"] / rounds})
        out.append(rows)
    return out


def stats(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {}
    q = np.quantile(v, [0.0, 0.05, 0.5, 0.95, 1.0])
    return {"min": q[0], "p5": q[1], "median": q[2], "p95": q[3], "max": q[4], "mean": float(v.mean()),
            "std": float(v.std())}


def fmt(x: float) -> str:
    return "0" if x == 0 else (f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}")


def table(rows: dict[str, dict[str, float]], title: str) -> list[str]:
    lines = [f"| {title} | min | p5 | median | p95 | max | mean | std |", "|---|---|---|---|---|---|---|---|"]
    for name, s in rows.items():
        if s:
            lines.append(f"| {name} | " + " | ".join(fmt(s[k]) for k in ("min", "p5", "median", "p95", "max", "mean",
                                                                            "std")) + " |")
    return lines


def share_table(per_norm: dict[str, list[list[dict[str, float]]]]) -> list[str]:
    """Mean share of each term in the step's total penalty, and how often it exceeds 0.01."""
    lines = ["| normalisation | r1 share | r2 share | r3 share | r_done share | r1 > 0.01 | r2 > 0.01 |",
             "|---|---|---|---|---|---|---|"]
    for mode, episodes in per_norm.items():
        rows = [r for ep in episodes for r in ep]
        total = np.array([r["r1"] + r["r2"] + r["r3"] + r["r_done"] for r in rows])
        safe = np.where(total > 0, total, 1.0)
        shares = [float(np.mean(np.array([r[t] for r in rows]) / safe)) for t in TERMS]
        above = [float(np.mean(np.array([r[t] for r in rows]) > 0.01)) for t in ("r1", "r2")]
        lines.append(f"| {mode} | " + " | ".join(f"{s:.1%}" for s in shares) + " | "
                     + " | ".join(f"{a:.0%}" for a in above) + " |")
    return lines


def policy_table(episodes: Sequence[dict[str, Any]], per_norm: dict[str, list[list[dict[str, float]]]]) -> list[str]:
    """Episode sums of r1 and r2 per (target, policy): does the term tell the two action sources apart?"""
    keys = sorted({(e["target"], e["policy"]) for e in episodes})
    sums = " | ".join(f"Σr1 {m} | Σr2 {m}" for m in per_norm)
    head = f"| target | actions | episodes | {sums} | Σr3 | ρ_e final |"
    lines = [head, "|" + "---|" * (4 + 2 * len(per_norm) + 1)]
    for target, policy in keys:
        idx = [i for i, e in enumerate(episodes) if e["target"] == target and e["policy"] == policy]
        cells = []
        for mode in per_norm:
            r1 = np.mean([sum(r["r1"] for r in per_norm[mode][i]) for i in idx])
            r2 = np.mean([sum(r["r2"] for r in per_norm[mode][i]) for i in idx])
            cells += [fmt(float(r1)), fmt(float(r2))]
        r3 = np.mean([sum(s["r3"] for s in episodes[i]["steps"]) for i in idx])
        eff = np.mean([episodes[i]["steps"][-1]["effective_sparsity"] for i in idx])
        lines.append(f"| {target:g} | {policy} | {len(idx)} | " + " | ".join(cells) + f" | {fmt(float(r3))} | "
                     f"{eff:.5f} |")
    return lines


def plot(episodes: Sequence[dict[str, Any]], per_norm: dict[str, list[list[dict[str, float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({e["target"] for e in episodes})
    fig, axes = plt.subplots(len(per_norm), len(targets), figsize=(3.2 * len(targets), 2.6 * len(per_norm)),
                             sharex=True, squeeze=False)
    colours = {"random": "tab:orange", "table3": "tab:blue"}
    for row, (mode, eps) in enumerate(per_norm.items()):
        for col, target in enumerate(targets):
            ax = axes[row][col]
            for i, e in enumerate(episodes):
                if e["target"] != target or e["seed"] != episodes[0]["seed"]:
                    continue
                rounds = [r["t/T"] * 100 for r in eps[i]]
                c = colours.get(e["policy"], "k")
                ax.plot(rounds, [max(r["r1"], 1e-9) for r in eps[i]], color=c, lw=1.2, label=f"r1 {e['policy']}")
                ax.plot(rounds, [max(r["r2"], 1e-9) for r in eps[i]], color=c, lw=1.0, ls="--",
                        label=f"r2 {e['policy']}")
            ax.set_yscale("log")
            ax.set_ylim(1e-8, 5)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"target {target:g}", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{mode}\nterm value", fontsize=9)
            if row == len(per_norm) - 1:
                ax.set_xlabel("round t")
    axes[0][0].legend(fontsize=6, loc="lower right")
    fig.suptitle("RLPanning reward terms r1 (loss, solid) and r2 (gᵀg, dashed) per normalisation, LeNet5/MNIST",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_grid(env: PanningEnv, label: str, targets: list[float], policies: list[str], seeds: list[int],
             rng_base: int) -> list[dict[str, Any]]:
    """One episode per (target, policy, seed), actions drawn from ``np.random.default_rng(rng_base + seed)``."""
    episodes = []
    for target in targets:
        for policy in policies:
            for seed in seeds:
                episodes.append(run_episode(env, seed, target, policy, np.random.default_rng(rng_base + seed)))
                print(f"{label} preset: target {target:g} {policy} seed {seed}: {len(episodes[-1]['steps'])} steps",
                      flush=True)
    return episodes


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data-dir", default=os.environ.get("LIGHTNING_PANNING_DATA", "../shared/datasets"))
    p.add_argument("--targets", type=float, nargs="+", default=[0.9, 0.99, 0.999, 0.9999])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--policies", nargs="+", default=["random", "table3"], choices=["random", "table3"])
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--authors-seeds", type=int, nargs="*", default=[0], help="episodes of the authors' preset")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="2 targets, 6 rounds, 1 seed; writes to a temp dir")
    p.add_argument("--out", default=None, help="output directory (default benchmarks/results)")
    args = p.parse_args(argv)
    if args.quick:
        args.targets, args.seeds, args.rounds, args.authors_seeds = [0.9, 0.999], [0], 6, [0]
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="reward_terms_")) if args.quick else
                                           Path(__file__).resolve().parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    env = PanningEnv(data_dir=args.data_dir, rounds=args.rounds)
    episodes = run_grid(env, "default", args.targets, args.policies, args.seeds, rng_base=1000)
    per_norm = {mode: terms_under(episodes, mode, args.rounds) for mode in NORMALIZATIONS}
    authors_env = PanningEnv(data_dir=args.data_dir, rounds=args.rounds, preset="authors")
    authors = run_grid(authors_env, "authors", args.targets, args.policies, args.authors_seeds, rng_base=2000)
    raw = [s for e in episodes for s in e["steps"]]
    gaps = [abs(s["empty_loss"] - s["loss"]) for e in episodes for s in e["steps"][:1]]
    scales = [s["loss_scale"] for e in episodes for s in e["steps"][:1]]
    moves = [abs(s["sparse_loss"] - s["loss"]) for s in raw]
    record = {
        "command": scrub_command(" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])), **git_state(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
        "load_average": list(os.getloadavg()), "seconds": time.perf_counter() - start,
        "setup": {"network": "LeNet5", "data": "MNIST train", "rounds": args.rounds, "per_class": 10,
                  "temperature": 200, "targets": args.targets, "seeds": args.seeds, "policies": args.policies},
        "episodes": episodes, "authors_episodes": authors,
    }
    (out / "reward_terms.json").write_text(json.dumps(record) + "\n")
    lines = [
        "# RLPanning reward terms and observation entries (LeNet5/MNIST)", "",
        f"- command: `{record['command']}`",
        f"- date: {record['date']}; torch {record['torch']}; {args.threads} thread(s); "
        f"{len(episodes)} + {len(authors)} episodes, {len(raw)} + {sum(len(e['steps']) for e in authors)} steps",
        f"- setup: T = {args.rounds}, 10 samples per class, scoring loss at temperature 200 (float64), targets "
        f"{', '.join(f'{t:g}' for t in args.targets)}; actions: {', '.join(args.policies)} (Table 3: a = 2p − 1); "
        f"reset seeds {args.seeds} (a new network and batch per episode)",
        "- each table row pools every step of every episode; raw figures per step are in `reward_terms.json`", "",
        "## Raw figures (default preset)", "",
        *table({"dense loss L": stats([s["loss"] for s in raw]),
                "L − ln 10": stats([s["loss"] - np.log(10) for s in raw]),
                "empty-network gap |L_∅ − L| (per episode)": stats(gaps),
                "|L_s − L|": stats(moves),
                "|L_s − L| / |L_∅ − L|": stats([abs(s["sparse_loss"] - s["loss"]) / max(abs(s["empty_loss"] -
                                                 s["loss"]), 1e-300) for s in raw]),
                "loss scale ‖∂L/∂w ⊙ w‖₂ (per episode)": stats(scales),
                "|L_s − L| / ‖∂L/∂w ⊙ w‖₂": stats([abs(s["sparse_loss"] - s["loss"]) / s["loss_scale"] for s in raw]),
                "dense gᵀg ΔL": stats([s["grad_norm"] for s in raw]),
                "ΔL_s / ΔL": stats([s["sparse_grad_norm"] / s["grad_norm"] for s in raw]),
                "ρ_e − ρ_t": stats([s["effective_sparsity"] - s["sparsity"] for s in raw])}, "figure"), "",
        "## Reward terms under each loss normalisation", "",
    ]
    for mode, eps in per_norm.items():
        rows = [r for ep in eps for r in ep]
        lines += [f"### `{mode}`", "", *table({t: stats([r[t] for r in rows]) for t in TERMS}, "term"), "",
                  *table({o: stats([r[o] for r in rows]) for o in OBS}, "observation"), ""]
    lines += ["## Share of each term in the step's penalty", "", *share_table(per_norm), "",
              "## Episode sums by target and action source", "", *policy_table(episodes, per_norm), ""]
    a_rows = [s for e in authors for s in e["steps"]]
    a_obs = [o for e in authors for o in e["observations"]]
    if a_rows:
        lines += ["## The `authors` preset as the environment returns it", "",
                  f"{len(authors)} episodes (one network, new batch per step, running bounds from 10 batches).", "",
                  *table({t: stats([s[t] for s in a_rows]) for t in TERMS}, "term"), "",
                  *table({name: stats([o[i] for o in a_obs]) for i, name in enumerate(AUTHORS_OBS)}, "observation"),
                  ""]
    (out / "reward_terms.md").write_text("\n".join(lines) + "\n")
    plot(episodes, per_norm, out / "reward_terms.png")
    print("\n".join(lines))
    print(f"wrote {out}/reward_terms.{{json,md,png}}")
    return record


if __name__ == "__main__":
    main()
