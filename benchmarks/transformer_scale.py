"""Pruning time and peak memory of the default Panning on a ~100M-parameter transformer language model.

Model: ``examples/transformer_lm.py``'s ``TinyGPT``, a GPT-style causal language model in plain PyTorch
(``nn.TransformerEncoder`` with pre-norm layers and a causal mask), at GPT-2-small size: vocabulary 32,000, width 768,
12 layers, 12 heads, feed-forward 3,072, learned positions, output head tied to the token embedding — 110M parameters,
110M of them prunable under the default rule (every attention and feed-forward matrix, and the tied head/embedding
once). Scoring batch: 8 sequences of 128 random tokens; loss: next-token cross-entropy. Target sparsity 0.9, the paper's
exponential schedule over T = 100 rounds, of which only the first ``--rounds`` run (the cost of a round does not depend
on its index).

Each phase runs in its own fresh worker process, so its peak memory is its own:

* ``fwdbwd``    — one forward and backward of the loss on the scoring batch (parameter gradients included): the
  reference a training step costs;
* ``prune``     — ``Panning().start(...)`` and ``--rounds`` rounds (SynFlow + SNIP + GraSP, fusion, top-k);
* ``effective`` — one effective-sparsity pass on the ``prune`` phase's masks (what the callback reports).

Memory is the peak above the worker's resident memory right after the model is built: CPU peak RSS (``VmHWM``,
reset through ``/proc/self/clear_refs``, else ``ru_maxrss``), or CUDA ``max_memory_allocated``. The headline number is
``prune / fwdbwd``: how many forward/backward passes' worth of memory the scoring batch and the round loop hold.

Usage::

    python benchmarks/transformer_scale.py                    # CPU, 2 rounds → results/transformer_scale_cpu.*
    python benchmarks/transformer_scale.py --device cuda --rounds 10   # → results/transformer_scale_cuda.*
    python benchmarks/transformer_scale.py --quick --out /tmp/ts      # tiny model, 1 round: checks the script
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `examples` imports

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.9
T = 100
FULL = {"vocab": 32000, "dim": 768, "layers": 12, "heads": 12, "ff": 3072, "max_len": 1024, "batch": 8, "length": 128}
QUICK = {"vocab": 1000, "dim": 64, "layers": 2, "heads": 4, "ff": 256, "max_len": 128, "batch": 4, "length": 32}


def next_token_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


# ---------------------------------------------------------------------------------------------------------------------
# memory


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Peak:
    """Peak memory above a baseline, in MiB, for the CPU (resident set) or a CUDA device (allocated)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.resettable = False
        if device.type == "cpu":
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
                self.resettable = _status_kb("VmHWM") is not None
            except OSError:
                self.resettable = False

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            if self.resettable:
                Path("/proc/self/clear_refs").write_text("5")
            self.base = (_status_kb("VmRSS") or 0) * 1024

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        hwm = _status_kb("VmHWM") if self.resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return ((hwm or 0) * 1024 - self.base) / 2**20


# ---------------------------------------------------------------------------------------------------------------------
# one phase, in a worker process


def worker(
    phase: str, size: dict[str, int], device: torch.device, rounds: int, threads: int, masks_file: Path
) -> dict[str, Any]:
    from examples.transformer_lm import TinyGPT
    from lightning_panning.core import Panning, effective_sparsity, pack_masks, prunable_parameters, unpack_masks

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = TinyGPT(size["vocab"], size["dim"], size["layers"], size["heads"], size["max_len"], ff=size["ff"])
    model = model.to(device)
    ids = torch.randint(0, size["vocab"], (size["batch"], size["length"] + 1), device=device)
    params = sum(p.numel() for p in model.parameters())
    prunable = sum(p.numel() for p in prunable_parameters(model).values())
    peak = Peak(device)
    out: dict[str, Any] = {"phase": phase, "parameters": params, "prunable": prunable}
    if phase == "fwdbwd":
        peak.start()
        start = time.perf_counter()
        next_token_loss(model, ids).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out["seconds"] = time.perf_counter() - start
        out["peak_mib"] = peak.peak_mib()
        return out
    if phase == "prune":
        pruner = Panning(rounds=T, loss_fn=next_token_loss, progress=False)
        peak.start()
        start = time.perf_counter()
        session = pruner.start(model, ids, TARGET)
        for _ in range(rounds):
            session.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out["seconds"] = time.perf_counter() - start
        out["peak_mib"] = peak.peak_mib()
        out["round_seconds"] = [r.seconds for r in session.history]
        out["sparsity"] = [r.sparsity for r in session.history]
        assert session.masks is not None
        torch.save(pack_masks(session.masks), masks_file)  # for the effective-sparsity worker
        return out
    masks = {n: m.to(device) for n, m in unpack_masks(torch.load(masks_file)).items()}
    peak.start()
    start = time.perf_counter()
    eff = effective_sparsity(model, masks, ids)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    out["seconds"] = time.perf_counter() - start
    out["peak_mib"] = peak.peak_mib()
    out["effective_sparsity"] = eff.effective
    return out


def run_worker(phase: str, args: argparse.Namespace, masks_file: Path) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--worker", phase, "--device", args.device, "--rounds", str(args.rounds),
        "--threads", str(args.threads), "--masks", str(masks_file), *(["--quick"] if args.quick else []),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------------
# report


def results_stem(device: str) -> str:
    """``transformer_scale_cpu`` or ``transformer_scale_cuda``: one pair of files per device kind."""
    return f"transformer_scale_{device.split(':')[0]}"


def write_results(record: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = results_stem(record["device"])
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    phases = record["phases"]
    f, p, e = phases["fwdbwd"], phases["prune"], phases["effective"]
    title = "Default Panning on a ~100M-parameter transformer: time and peak memory"
    if record["quick"]:
        title = "Quick mode (a tiny model, checks the script only): time and peak memory"
    lines = [
        f"# {title}",
        "",
        f"Written by `{record.get('command', 'benchmarks/transformer_scale.py')}` on {record['date']} "
        f"({record['machine']}, device "
        f"{record['device_name']}, {record['threads']} thread(s), load average at start {record['load_start']}, "
        f"at end {record['load_end']}). Model: {record['model']}; scoring batch {record['batch']}.",
        "",
        "| phase | seconds | peak memory above the model (MiB) | × one forward/backward |",
        "|---|---|---|---|",
        f"| one forward + backward (reference) | {f['seconds']:.2f} | {f['peak_mib']:.0f} | 1.00 |",
        f"| Panning: start + {len(p['round_seconds'])} round(s) | {p['seconds']:.2f} | {p['peak_mib']:.0f} | "
        f"{p['peak_mib'] / f['peak_mib']:.2f} |",
        f"| effective sparsity (one pass) | {e['seconds']:.2f} | {e['peak_mib']:.0f} | "
        f"{e['peak_mib'] / f['peak_mib']:.2f} |",
        "",
        f"Seconds per round: {', '.join(f'{s:.2f}' for s in p['round_seconds'])} (the paper's T = {T} rounds would "
        f"take about {T * sum(p['round_seconds']) / len(p['round_seconds']) / 60:.1f} min at this rate). "
        f"Parameters {p['parameters']:,}, prunable {p['prunable']:,}; effective sparsity after the measured rounds "
        f"{e['effective_sparsity']:.4f} (round sparsity {p['sparsity'][-1]:.4f}). Memory is each phase's own peak in "
        "a fresh process (the effective-sparsity pass reads the pruning phase's masks from a file).",
        "",
        f"Code: commit `{record.get('git_commit') or 'not recorded'}`"
        + (" (tree with uncommitted changes)" if record.get("git_dirty") else "")
        + ".",
        "",
    ]
    (out / f"{stem}.md").write_text("\n".join(lines))


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces these results, with every option spelled out (no machine paths)."""
    from benchmarks.sweep.provenance import portable_path  # the driver only: workers' memory stays as it was

    words = ["python", "benchmarks/transformer_scale.py", "--device", args.device, "--rounds", str(args.rounds),
             "--threads", str(args.threads)]
    if args.quick:
        words.append("--quick")
    if Path(args.out).resolve() != RESULTS.resolve():
        words += ["--out", portable_path(args.out)]
    return " ".join(words)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds measured (default: 2 on CPU, 10 on CUDA)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tiny model and 1 round: checks the script only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=["fwdbwd", "prune", "effective"], help=argparse.SUPPRESS)
    parser.add_argument("--masks", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available; use --device cpu or auto")
    if args.rounds is None:
        args.rounds = 1 if args.quick else (10 if args.device.startswith("cuda") else 2)
    size = QUICK if args.quick else FULL
    if args.worker:
        result = worker(args.worker, size, torch.device(args.device), args.rounds, args.threads, args.masks)
        print(json.dumps(result))
        return
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        masks_file = Path(tmp) / "masks.pt"
        phases = {phase: run_worker(phase, args, masks_file) for phase in ("fwdbwd", "prune", "effective")}
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor()
    from benchmarks.sweep.provenance import git_state

    record = {
        "command": command_line(args),
        **git_state(),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
        "device": args.device,
        "device_name": device_name or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "load_start": load_start,
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "quick": args.quick,
        "model": ("GPT-style LM, vocab {vocab}, width {dim}, {layers} layers, {heads} heads, feed-forward {ff}, "
                  "tied head").format(**size),
        "batch": f"{size['batch']} × {size['length']} tokens",
        "target": TARGET,
        "T": T,
        "rounds": args.rounds,
        "phases": phases,
        "prune_over_fwdbwd": phases["prune"]["peak_mib"] / phases["fwdbwd"]["peak_mib"],
    }
    write_results(record, args.out)
    print((args.out / f"{results_stem(args.device)}.md").read_text())


if __name__ == "__main__":
    main()
