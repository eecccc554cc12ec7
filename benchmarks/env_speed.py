"""RLPanning environment throughput (env-steps per second) on LeNet5/MNIST: single env and batched vector env.

Measures, for each device and preset:

* ``single``: :class:`lightning_panning.rl.PanningEnv` stepped on its own (one episode, unbatched passes);
* ``vec n``: :func:`lightning_panning.rl.make_vec_env` with ``n`` episodes advanced in one batched computation
  (``torch.func.vmap`` over the stacked networks), for each ``n`` in ``--n-envs``.

Every step is a full environment step (one Panning round per episode: scoring, fusion, top-k, effective sparsity,
the sparse network's loss and gᵀg). Targets are fixed at ``--target`` so that no network dies and no episode ends in
the timed window. Throughput = episodes × steps / wall time; CPU time is reported beside it (the machine may be
shared). Compared with the authors' published anchor of 0.12 s/step (8.3 env-steps/s, LeNet5, 2 CPU threads, their
machine); goals: ≥ 33 env-steps/s on a 2-thread CPU, ≥ 200 on one H100.

Usage::

    python benchmarks/env_speed.py --data-dir ../shared/datasets --threads 2                  # CPU, n = 1, 4, 16
    python benchmarks/env_speed.py --data-dir ../shared/datasets --devices cuda --n-envs 1 16 64 256
    python benchmarks/env_speed.py --data-dir ../shared/datasets --quick                      # smoke test, temp dir
    python benchmarks/env_speed.py --data-dir ../shared/datasets --authors-repo /path/to/RLPanning  # + theirs, here

With ``--authors-repo`` (a checkout of github ``kangxiatao/RLPanning``, imported at run time, never copied), the
authors' own ``PruningEnv.step`` is timed in the same process on the same machine and threads: their LeNet5 with
their init, MNIST held in memory behind a shuffled ``DataLoader`` (batch 256, no workers) from which their
``FetchData`` draws the 100-sample balanced batch of every step, as their code does. The ``× theirs here`` column
divides by that measured rate, so the comparison does not rest on the anchor from their machine.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
from benchmarks.sweep.provenance import git_state, scrub_command
from lightning_panning.rl import PanningEnv, make_vec_env

AUTHORS_SECONDS = 0.12
GOALS = {"cpu": 33.0, "cuda": 200.0}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(step: Callable[[np.ndarray], Any], args: argparse.Namespace, device: str, kind: str,
               n: int = 1) -> dict[str, Any]:
    """Warm up, then time ``args.steps`` calls of ``step`` with random actions of shape ``(3,)`` (``(n, 3)``)."""
    rng = np.random.default_rng(0)
    shape = (3,) if kind != "vec" else (n, 3)
    for _ in range(args.warmup):
        step(rng.uniform(-1, 1, shape).astype(np.float32))
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step(rng.uniform(-1, 1, shape).astype(np.float32))
    _sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"kind": kind, "n_envs": n, "steps": args.steps, "wall_s": wall, "cpu_s": cpu,
            "env_steps_per_s": n * args.steps / wall, "s_per_env_step": wall / (n * args.steps)}


def time_single(args: argparse.Namespace, device: str, preset: str) -> dict[str, Any]:
    env = PanningEnv(data_dir=args.data_dir, device=device, preset=preset, target=args.target)
    env.reset(seed=0)
    return time_steps(env.step, args, device, "single")


def time_authors(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The authors' ``PruningEnv.step`` (their LeNet5, their init), timed like :func:`time_single`."""
    import random

    from torch.utils.data import DataLoader, TensorDataset

    from benchmarks.authors_code import load_authors, quiet, their_config, their_model
    from lightning_panning.data.mnist import MNIST_MEAN, MNIST_STD
    from lightning_panning.rl.env import load_mnist

    authors = load_authors(args.authors_repo)
    images, labels = load_mnist(args.data_dir)
    x = (images.float().div(255.0).sub(MNIST_MEAN).div(MNIST_STD)).reshape(-1, 1, 28, 28)
    loader = DataLoader(TensorDataset(x, labels.long()), batch_size=256, shuffle=True, num_workers=0)
    random.seed(0)
    model = their_model(authors, "lenet5", seed=0).to(device)
    with quiet():
        env = authors.PruningEnv(model, loader, device, their_config(authors, args.target, 100))
        env.reset()
        env.ratio = args.target  # their reset draws the episode's target; fix it as for ours
        return time_steps(env.step, args, device, "theirs")


def time_floor(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The pass every step of ours and the authors' needs: forward, backward and double backward (``H g``) of LeNet5.

    Timed on its own, on the env's scoring batch at the mask of a session after a few rounds (``args.steps`` calls
    after ``args.warmup``): the session's scoring context of the current mask, as a step builds it for SNIP and GraSP.
    ``1 / seconds`` bounds the env-steps/s of any exact step on this machine and these threads.

    Also timed on its own: the transposed convolution that PyTorch's conv double backward runs for the first layer to
    get the gradient of the *data* (``(B, 20, 24, 24) → (B, 1, 28, 28)``), which nothing needs (the batch does not
    require grad); it is part of the floor, and our code cannot skip it without replacing PyTorch's derivative of
    the convolution.
    """
    from lightning_panning.rl.episode import set_batch

    env = PanningEnv(data_dir=args.data_dir, device=device, target=args.target)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(rng.uniform(-1, 1, (3,)).astype(np.float32))
    assert env.episode is not None
    session = env.episode.session

    def grasp_pass() -> None:  # the session's own scoring context of the current mask, built afresh each call
        set_batch(session, session.batch)
        _ = session.context(needs_hvp=True).hvp

    floor = time_steps(lambda _a: grasp_pass(), args, device, "floor")
    x = session.batch[0]
    conv1 = next(m for m in session.model.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        grad_out = torch.randn_like(conv1(x))

    def data_grad(_a: Any) -> None:
        torch.ops.aten.convolution(grad_out, conv1.weight.detach(), None, list(conv1.stride), list(conv1.padding),
                                   list(conv1.dilation), True, [0, 0], conv1.groups)

    wasted = time_steps(data_grad, args, device, "waste")
    floor["data_grad_s"] = wasted["wall_s"] / wasted["steps"]
    return floor


def time_vec(args: argparse.Namespace, device: str, preset: str, n: int) -> dict[str, Any]:
    venv = make_vec_env(n, data_dir=args.data_dir, device=device, preset=preset, target=args.target, seed=0)
    venv.reset()
    run = time_steps(venv.step, args, device, "vec", n)
    venv.close()
    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data-dir", default=os.environ.get("LIGHTNING_PANNING_DATA", "../shared/datasets"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--devices", nargs="+", default=["cpu"], help="cpu and/or cuda")
    p.add_argument("--presets", nargs="+", default=["default", "authors"])
    p.add_argument("--n-envs", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--steps", type=int, default=10, help="timed vector steps per configuration")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--quick", action="store_true", help="n = 1, 2; 2 steps; writes to a temp dir")
    p.add_argument("--out", default=None, help="output directory (default benchmarks/results)")
    p.add_argument("--authors-repo", default=None, help="checkout of github kangxiatao/RLPanning: time theirs too")
    args = p.parse_args(argv)
    if args.quick:
        args.n_envs, args.steps, args.warmup = [1, 2], 2, 1
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="env_speed_")) if args.quick else
                                           Path(__file__).resolve().parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "command": scrub_command(" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])), **git_state(),
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "threads": args.threads,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "setup": f"LeNet5/MNIST, 100-sample balanced batch, T=100, target {args.target}, random actions; "
                 f"{args.warmup} warm-up + {args.steps} timed steps per configuration",
        "authors_anchor_s_per_step": AUTHORS_SECONDS, "goals_env_steps_per_s": GOALS,
        "load_average_before": list(os.getloadavg()), "runs": [], "authors_repo": args.authors_repo,
    }
    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"skipping {device}: CUDA is not available", flush=True)
            continue
        for preset in args.presets:
            runs = [time_single(args, device, preset)] + [time_vec(args, device, preset, n) for n in args.n_envs]
            for run in runs:
                run.update({"device": device, "preset": preset})
                print(f"{device} {preset} {run['kind']} n={run['n_envs']}: {run['env_steps_per_s']:.1f} env-steps/s",
                      flush=True)
            results["runs"].extend(runs)
        run = time_floor(args, device)
        run.update({"device": device, "preset": "—"})
        print(f"{device} forward + backward + Hg alone: {run['s_per_env_step']:.4f} s", flush=True)
        results["runs"].append(run)
        if args.authors_repo:
            run = time_authors(args, device)
            run.update({"device": device, "preset": "authors' code"})
            print(f"{device} authors' PruningEnv: {run['env_steps_per_s']:.1f} env-steps/s", flush=True)
            results["runs"].append(run)
    results["load_average_after"] = list(os.getloadavg())
    theirs = {r["device"]: r["env_steps_per_s"] for r in results["runs"] if r["kind"] == "theirs"}
    (out / "env_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# RLPanning environment throughput (LeNet5/MNIST)", "",
        f"- command: `{results['command']}`",
        f"- date: {results['date']}; torch {results['torch']}; Python {results['python']}; {results['cpu_count']} "
        f"CPUs ({results['cpu']}), {args.threads} torch threads; GPU: {results['gpu']}",
        f"- setup: {results['setup']}",
        f"- load average before/after: {results['load_average_before']} / {results['load_average_after']}",
        f"- authors' anchor: {AUTHORS_SECONDS} s/step = {1 / AUTHORS_SECONDS:.1f} env-steps/s (2 CPU threads, their "
        f"machine); goals: ≥ {GOALS['cpu']:g} env-steps/s on CPU, ≥ {GOALS['cuda']:g} on one H100", "",
        "| device | preset | env | episodes | env-steps/s | s per env-step | CPU s per env-step | × anchor | "
        "× theirs here |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        lines.append(
            f"| {run['device']} | {run['preset']} | {run['kind']} | {run['n_envs']} | {run['env_steps_per_s']:.1f} | "
            f"{run['s_per_env_step']:.4f} | {run['cpu_s'] / (run['n_envs'] * run['steps']):.4f} | "
            f"{run['env_steps_per_s'] * AUTHORS_SECONDS:.2f}× | "
            + (f"{run['env_steps_per_s'] / theirs[run['device']]:.2f}× |" if run["device"] in theirs else "— |")
        )
    floors = [r for r in results["runs"] if r["kind"] == "floor"]
    if floors:
        lines += ["", "`floor` is not an environment: it is the forward + backward + double backward (`H g`) of LeNet5 "
                  "on the 100-sample batch alone, which every exact step (ours and the authors') runs once, so its "
                  "rate bounds any step's. Of it, PyTorch's conv double backward spends the time below on the first "
                  "layer's transposed convolution for the gradient of the data, which nothing uses (the batch does "
                  "not require grad), and which our code cannot skip without replacing the convolution's "
                  "derivative:", ""]
        lines += [f"- {r['device']}: floor {r['s_per_env_step'] * 1e3:.1f} ms per step, of which "
                  f"{r['data_grad_s'] * 1e3:.1f} ms is that transposed convolution "
                  f"({r['data_grad_s'] / r['s_per_env_step']:.0%})" for r in floors]
    (out / "env_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
