"""Which sweep runs end at chance although their mask keeps input-output paths; does a smaller lr rescue them?

A cell "ends at chance" when its test accuracy is within 2.5 points of ``100 / classes`` and its test loss is within
1% of ``ln(classes)``: the trained network gives (nearly) the same output for every image. When the mask has *no*
input-output path (effective sparsity 100%, "layer collapse") that is the mask's fault. When it keeps paths, the
mask could still be trained, and the failure is in training. This script separates the two for committed sweeps:

1. it finds, in ``benchmarks/results/<profile>/runs.jsonl``, the cells that end at chance with paths left;
2. it re-runs those cells at the profile's own lr (is the failure reproducible?), with the sweep and the same seed;
3. it runs every seed of each such (method, sparsity) at each lr of ``--lrs`` (does a smaller lr train the same
   masks, and what does it do to the seeds that did not fail?);
4. it writes ``collapse_check.md`` and ``collapse_check.json`` with each seed's accuracy and loss at every lr.

The runs are ordinary sweep cells in ``<out>/<profile>-lr<lr>/`` (resumable: a finished cell is not run again), so
each folder also has the sweep's own ``summary.md``.

Usage::

    python benchmarks/collapse_check.py --data-dir ../shared/datasets --num-threads 1
    python benchmarks/collapse_check.py --report-only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.sweep.cli import main as sweep_main  # noqa: E402
from benchmarks.sweep.liveness import LIVENESS_FIELDS, at_chance, has_paths, weights_on_paths  # noqa: E402
from benchmarks.sweep.profiles import PROFILES, format_sparsity  # noqa: E402
from benchmarks.sweep.records import latest_records, load_records  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
DEFAULT_PROFILES = ("lenet5-mnist-cpu", "lenet5-fashionmnist-cpu", "lenet300-fashionmnist-cpu")

Group = tuple[str, float]  # (method, sparsity)


def collapsed_cells(records: Iterable[Mapping[str, Any]], classes: int) -> list[dict[str, Any]]:
    """The pruned cells that end at chance although their mask keeps paths (latest record per cell)."""
    return [
        dict(r)
        for r in latest_records(records)
        if r.get("method") != "dense" and at_chance(r, classes) and has_paths(r)
    ]


def lr_folder(out: Path, profile: str, lr: float) -> Path:
    """The sweep folder of ``profile`` re-run at ``lr``."""
    return out / f"{profile}-lr{lr:g}"


def _run(argv: list[str]) -> int:
    status = sweep_main(argv)
    if status == 2:
        raise SystemExit(f"collapse_check: the sweep refused {shlex.join(argv)!r} (see the error above).")
    return status


def run_checks(
    profile: str,
    lrs: Sequence[float],
    out: Path,
    data_dir: str | None = None,
    num_threads: int | None = None,
    results: Path = RESULTS,
) -> None:
    """Re-run the collapsed cells of ``results/<profile>`` at its own lr, and their (method, sparsity) groups at lrs."""
    base = PROFILES[profile]
    records = load_records(results / profile / "runs.jsonl")
    cells = collapsed_cells(records, base.num_classes())
    common = ["--profile", profile, "--accelerator", "cpu", "--no-progress"]
    if data_dir:
        common += ["--data-dir", data_dir]
    if num_threads is not None:
        common += ["--num-threads", str(num_threads)]
    groups: dict[Group, list[int]] = {}
    for cell in cells:
        groups.setdefault((str(cell["method"]), float(cell["sparsity"])), []).append(int(cell["seed"]))
    finished = latest_records(records)

    def sweep(method: str, sparsity: float, seeds: Iterable[int], lr: float) -> None:
        seed_args = [str(seed) for seed in sorted(seeds)]
        _run([*common, "--methods", method, "--sparsities", str(sparsity), "--seeds", *seed_args,
              "--lr", f"{lr:g}", "--out", str(lr_folder(out, profile, lr))])  # fmt: skip

    for lr in lrs:  # the smaller lrs first: they answer the question; the reruns only confirm the failure
        for method, sparsity in sorted(groups):
            sweep(
                method,
                sparsity,
                {int(r["seed"]) for r in finished if (r.get("method"), r.get("sparsity")) == (method, sparsity)},
                lr,
            )
    for (method, sparsity), seeds in sorted(groups.items()):
        sweep(method, sparsity, seeds, base.lr)


def _by_cell(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, float, int], dict[str, Any]]:
    return {
        (str(r["method"]), float(r["sparsity"]), int(r["seed"])): dict(r)
        for r in latest_records(records)
        if r.get("status") == "ok"
    }


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f} (n={len(values)})"


def build_report(profiles: Sequence[str], lrs: Sequence[float], out: Path, results: Path = RESULTS) -> dict[str, Any]:
    """Pair every seed of every collapsed (method, sparsity) group across the original run and the re-runs."""
    rows: list[dict[str, Any]] = []
    groups_out: list[dict[str, Any]] = []
    for profile in profiles:
        base = PROFILES[profile]
        classes = base.num_classes()
        original = load_records(results / profile / "runs.jsonl")
        cells = collapsed_cells(original, classes)
        reruns = {lr: _by_cell(load_records(lr_folder(out, profile, lr) / "runs.jsonl")) for lr in lrs}
        same_lr = _by_cell(load_records(lr_folder(out, profile, base.lr) / "runs.jsonl"))
        originals = _by_cell(original)
        for method, sparsity in sorted({(str(c["method"]), float(c["sparsity"])) for c in cells}):
            seeds = sorted(s for (m, sp, s) in originals if m == method and sp == sparsity)
            accs: dict[str, list[float]] = {f"{base.lr:g}": [], **{f"{lr:g}": [] for lr in lrs}}
            chance: dict[str, int] = {key: 0 for key in accs}
            for seed in seeds:
                first = originals[(method, sparsity, seed)]
                row: dict[str, Any] = {
                    "profile": profile,
                    "method": method,
                    "sparsity": sparsity,
                    "seed": seed,
                    "effective_sparsity": first.get("effective_sparsity"),
                    "kept_weights": first.get("kept_weights"),
                    "total_weights": first.get("total_weights"),
                    "runs": {f"{base.lr:g}": _result(first, classes)},
                }
                again = same_lr.get((method, sparsity, seed))
                if again is not None:
                    row["rerun"] = _result(again, classes)
                for lr in lrs:
                    rec = reruns[lr].get((method, sparsity, seed))
                    if rec is not None:
                        row["runs"][f"{lr:g}"] = _result(rec, classes)
                for key, result in row["runs"].items():
                    accs[key].append(result["test_acc"])
                    chance[key] += int(result["at_chance"])
                rows.append(row)
            groups_out.append(
                {
                    "profile": profile,
                    "method": method,
                    "sparsity": sparsity,
                    "acc": {k: _mean_std(v) for k, v in accs.items()},
                    "at_chance": {k: f"{chance[k]}/{len(accs[k])}" for k in accs},
                }
            )
    return {"profiles": list(profiles), "lrs": [f"{lr:g}" for lr in lrs], "rows": rows, "groups": groups_out}


def _result(record: Mapping[str, Any], classes: int) -> dict[str, Any]:
    return {
        "test_acc": round(float(record["test_acc"]), 2),
        "test_loss": round(float(record["test_loss"]), 4),
        "at_chance": at_chance(record, classes),
        "lr": record.get("lr"),
        "finished_at": record.get("finished_at"),
        **{key: record[key] for key in LIVENESS_FIELDS if record.get(key) is not None},
    }


def _show(result: Mapping[str, Any]) -> str:
    """``acc[*] (dead s→e%)``: accuracy, at chance or not, and the dead ReLU units after pruning → after training."""
    text = f"{result['test_acc']:.2f}{'*' if result['at_chance'] else ''}"
    if "dead_units_start" in result and "dead_units_end" in result:
        text += f" (dead {100 * result['dead_units_start']:.0f}→{100 * result['dead_units_end']:.0f}%)"
    return text


def write_report(report: Mapping[str, Any], out: Path, command: str) -> tuple[Path, Path]:
    """Write ``collapse_check.json`` and ``collapse_check.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    report = {
        **report,
        "command": command,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    json_path = out / "collapse_check.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    lrs = sorted({key for row in report["rows"] for key in row["runs"]}, key=float, reverse=True)
    lines = [
        "# Runs that end at chance although their mask keeps input-output paths",
        "",
        f"Written by `{command}` at {report['written_at']}.",
        "",
        "A run ends at chance when its test accuracy is within 2.5 points of 100/classes and its test loss within",
        "1% of ln(classes) (a constant output). Listed: every (method, sparsity) of the committed sweeps in which at",
        "least one seed ended so while its mask kept paths; every seed of that group at each lr (same seed: same",
        "initialisation, mask and data order); `rerun` is the failed run repeated at its own lr. Accuracy in %,",
        "`*` = at chance; `kept (on paths)`: weights kept by the mask (of them, on an input-output path);",
        "`dead s→e%`: ReLU units zero for every one of 256 test images, after pruning → after training (the",
        "sweep's Liveness probe; not recorded by runs made before it, such as the committed lr 0.1 runs).",
        "",
        "| profile | method | sparsity | seed | kept (on paths) | "
        + " | ".join(f"lr {lr}" for lr in lrs)
        + " | rerun |",
        "|---|---|---|---|---|" + "---|" * len(lrs) + "---|",
    ]
    for row in report["rows"]:
        kept = row["kept_weights"]
        on_paths = weights_on_paths(row) or 0
        cells = []
        for lr in lrs:
            result = row["runs"].get(lr)
            cells.append("–" if result is None else _show(result))
        rerun = row.get("rerun")
        rerun_text = "" if rerun is None else _show(rerun)
        lines.append(
            f"| {row['profile']} | {row['method']} | {format_sparsity(row['sparsity'])} | {row['seed']} | "
            f"{kept} ({on_paths:.0f}) | " + " | ".join(cells) + f" | {rerun_text} |"
        )
    lines += [
        "",
        "Per group (mean ± std over seeds; runs at chance / runs):",
        "",
        "| profile | method | sparsity | " + " | ".join(f"lr {lr}" for lr in lrs) + " |",
        "|---|---|---|" + "---|" * len(lrs),
    ]
    for group in report["groups"]:
        lines.append(
            f"| {group['profile']} | {group['method']} | {format_sparsity(group['sparsity'])} | "
            + " | ".join(f"{group['acc'].get(lr, '–')}; {group['at_chance'].get(lr, '–')}" for lr in lrs)
            + " |"
        )
    md_path = out / "collapse_check.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return json_path, md_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/collapse_check.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--profiles",
        nargs="+",
        default=list(DEFAULT_PROFILES),
        choices=sorted(PROFILES),
        help="sweeps to check (their committed benchmarks/results/<profile>/runs.jsonl)",
    )
    parser.add_argument("--lrs", nargs="+", type=float, default=[0.01], help="smaller initial lrs to try")
    parser.add_argument("--results", default=str(RESULTS), help="folder of the sweeps to check (<results>/<profile>)")
    parser.add_argument("--out", default=str(RESULTS / "collapse-check"), help="folder of the re-runs and the report")
    parser.add_argument("--data-dir", default=None, help="dataset root (default: the sweep's)")
    parser.add_argument("--num-threads", type=int, default=None, help="torch threads per cell")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    bad = [lr for lr in args.lrs if not lr > 0]
    if bad:
        parser.error(f"--lrs must be positive learning rates, got {bad}.")
    out = Path(args.out)
    if not args.report_only:
        for profile in args.profiles:
            run_checks(profile, args.lrs, out, args.data_dir, args.num_threads, Path(args.results))
    report = build_report(args.profiles, args.lrs, out, Path(args.results))
    command = "python benchmarks/collapse_check.py " + shlex.join(argv)
    previous = out / "collapse_check.json"
    if args.report_only and previous.exists():  # keep the command that ran the cells: it is the one that reproduces
        command = json.loads(previous.read_text(encoding="utf-8")).get("command", command)
    paths = write_report(report, out, command)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
