"""Re-prune committed sweep cells with today's code and compare their masks' record to the last digit.

A refactor of the engine must not change a mask. The sweep records keep, per cell, the nominal and effective
sparsity, the kept count and the density of every layer, all computed from the masks; this script runs the same
cells' pruning again (the sweep's own model, data, seed and callback; one epoch of training, which the pruning
records do not depend on) and compares those
fields for equality. Writes ``benchmarks/results/reprune_check.{md,json}``.

    python benchmarks/reprune_check.py \\
        --cell lenet5-mnist-cpu:panning:0.999:0 --cell lenet5-mnist-cpu:panning_authors:0.9999:1 \\
        --cell lenet5-fashionmnist-cpu:rlpanning:0.99:2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.sweep.cell import SweepConfig, run_cell  # noqa: E402
from benchmarks.sweep.profiles import PROFILES, Cell  # noqa: E402
from benchmarks.sweep.provenance import code_label  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIELDS = ("nominal_sparsity", "effective_sparsity", "kept_weights", "layer_density")


def committed(profile: str, method: str, sparsity: float, seed: int) -> dict[str, Any]:
    """The committed record of that cell (the shipped policy's, for RLPanning)."""
    path = RESULTS / profile / "runs.jsonl"
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if (record.get("method") == method and abs(float(record["sparsity"]) - sparsity) < 1e-12
                and int(record["seed"]) == seed and record.get("status") == "ok"
                and (method != "rlpanning" or str(record.get("policy", "")).startswith("default:"))):
            return record
    raise SystemExit(f"No committed ok record for {profile} {method} {sparsity} seed {seed} in {path}.")




def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", action="append", required=True, help="profile:method:sparsity:seed")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "reprune_check")
    args = parser.parse_args(argv)
    rows = []
    for spec in args.cell:
        profile_name, method, sparsity_text, seed_text = spec.split(":")
        sparsity, seed = float(sparsity_text), int(seed_text)
        record = committed(profile_name, method, sparsity, seed)
        profile = dataclasses.replace(PROFILES[profile_name], epochs=1)
        config = SweepConfig(profile=profile, out_dir=args.out.parent / "reprune-tmp", data_dir=args.data_dir,
                             accelerator="cpu", num_threads=args.threads)
        import torch

        torch.set_num_threads(args.threads)
        now = run_cell(Cell(method, sparsity, seed), config)
        same = {f: now[f] == record[f] for f in FIELDS}
        rows.append({"cell": spec, "committed_by": record.get("git_commit", "not recorded"),
                     "same": same, "identical": all(same.values()),
                     **{f"{f}_committed": record[f] for f in FIELDS if f != "layer_density"},
                     **{f"{f}_now": now[f] for f in FIELDS if f != "layer_density"}})
        print(json.dumps(rows[-1]), flush=True)
    command = "python benchmarks/reprune_check.py " + " ".join(f"--cell {c}" for c in args.cell)
    meta = {"command": command, "git_commit": code_label(), "load": os.getloadavg()[0]}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"# Committed sweep cells re-pruned with the code at `{meta['git_commit'][:12]}`", "",
             f"Command: `{meta['command']}`; code: `{meta['git_commit']}`. Written by `benchmarks/reprune_check.py`.",
             "Compared for equality: " + ", ".join(f"`{f}`" for f in FIELDS) + " (every layer's density).", "",
             "| cell | nominal (committed / now) | effective (committed / now) | kept | layer densities | identical |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['nominal_sparsity_committed']!r} / {r['nominal_sparsity_now']!r} | "
            f"{r['effective_sparsity_committed']!r} / {r['effective_sparsity_now']!r} | "
            f"{r['kept_weights_committed']} / {r['kept_weights_now']} | "
            f"{'same' if r['same']['layer_density'] else 'DIFFER'} | {'yes' if r['identical'] else 'NO'} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
