"""Seconds per Panning round and peak memory of the default Panning on common architectures (issue 27).

Every model is built at its usual size (torchvision's smallest member of each classification family, Hugging Face
models from their default or small configs, timm's ResNet-18 and DeiT-Tiny), untrained, and pruned to 0.9 with the
default ``Panning`` (SynFlow + SNIP + GraSP, Table 3) on a fixed batch of ``--batch`` random samples
(``--size``-pixel images, or ``--length``-token sequences), for ``--rounds`` rounds. Each model runs in its own
fresh process so that its peak memory is its own: CPU peak resident memory above the resident memory after building
the model (``VmHWM``, reset through ``/proc/self/clear_refs``, else ``ru_maxrss``), or CUDA
``max_memory_allocated``. Seconds per round is the median over the rounds (round 1 includes the session start).

    python -m benchmarks.model_zoo                            # CPU, every model: benchmarks/results/model_zoo.{md,json}
    python -m benchmarks.model_zoo --device cuda              # model_zoo_cuda.{md,json}
    python -m benchmarks.model_zoo --models resnet18 --quick --out /tmp/zoo   # a smoke test of the script
    python -m benchmarks.model_zoo --models convnext_tiny --rounds 5 --rlpanning   # model_zoo_rl.{md,json}

With ``--rlpanning`` each worker also runs RLPanning (the shipped policy choosing the weights, its observation
measured after every round) for the same rounds on the same model and batch, right after Panning in the same
process, and the table gives both seconds per round and their ratio.

The results record the full command, the git commit, the machine, the thread count and its load average before
and after (``os.getloadavg``). Timings are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `python benchmarks/model_zoo.py`
from benchmarks.sweep.provenance import code_label
from benchmarks.transformer_scale import Peak

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.9
CLASSES = 10


def _tv(name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from torchvision import models

        return getattr(models, name)(num_classes=CLASSES, **kwargs)

    return build


def _hf(kind: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers as t

        t.utils.logging.set_verbosity_error()
        if kind == "bert":
            return t.BertForSequenceClassification(t.BertConfig(num_labels=CLASSES))
        if kind == "gpt2":
            return t.GPT2LMHeadModel(t.GPT2Config())
        if kind == "t5":
            return t.T5ForConditionalGeneration(t.T5Config(decoder_start_token_id=0))  # t5-small's sizes
        if kind == "vit":
            return t.ViTForImageClassification(t.ViTConfig(num_labels=CLASSES))
        config = t.LlamaConfig(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                               num_key_value_heads=8, vocab_size=32000)
        return t.LlamaForCausalLM(config)

    return build


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, num_classes=CLASSES)

    return build


#: name → (builder, input kind: "image", "image299", "tokens", "tokens-lm", "tokens-seq2seq", "pixels").
MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "resnet18": (_tv("resnet18"), "image"),
    "resnext50_32x4d": (_tv("resnext50_32x4d"), "image"),
    "wide_resnet50_2": (_tv("wide_resnet50_2"), "image"),
    "densenet121": (_tv("densenet121"), "image"),
    "mobilenet_v2": (_tv("mobilenet_v2"), "image"),
    "mobilenet_v3_small": (_tv("mobilenet_v3_small"), "image"),
    "efficientnet_b0": (_tv("efficientnet_b0"), "image"),
    "regnet_y_400mf": (_tv("regnet_y_400mf"), "image"),
    "convnext_tiny": (_tv("convnext_tiny"), "image"),
    "shufflenet_v2_x0_5": (_tv("shufflenet_v2_x0_5"), "image"),
    "squeezenet1_1": (_tv("squeezenet1_1"), "image"),
    "mnasnet0_5": (_tv("mnasnet0_5"), "image"),
    "googlenet": (_tv("googlenet", aux_logits=False, init_weights=True), "image"),
    "inception_v3": (_tv("inception_v3", aux_logits=False, init_weights=True), "image299"),
    "vgg11_bn": (_tv("vgg11_bn"), "image"),
    "alexnet": (_tv("alexnet"), "image"),
    "vit_b_16": (_tv("vit_b_16"), "image"),
    "swin_t": (_tv("swin_t"), "image"),
    "maxvit_t": (_tv("maxvit_t"), "image"),
    "hf_bert_base": (_hf("bert"), "tokens"),
    "hf_gpt2": (_hf("gpt2"), "tokens-lm"),
    "hf_t5_small": (_hf("t5"), "tokens-seq2seq"),
    "hf_vit_base": (_hf("vit"), "pixels"),
    "hf_llama_small": (_hf("llama"), "tokens-lm"),
    "timm_resnet18": (_timm("resnet18"), "image"),
    "timm_deit_tiny": (_timm("deit_tiny_patch16_224"), "image"),
}


def lm_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["input_ids"][:, 1:].reshape(-1))


def seq2seq_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return model(**batch).loss


def make_batch(kind: str, batch: int, size: int, length: int, device: torch.device) -> tuple[Any, Any]:
    """The scoring batch and the loss (``None``: the default classification loss) for an input kind."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(batch) % CLASSES
    if kind in ("image", "image299", "pixels"):
        side = max(size, 299) if kind == "image299" else size
        x = torch.randn(batch, 3, side, side, generator=generator)
        data: Any = {"pixel_values": x, "labels": labels} if kind == "pixels" else (x, labels)
        loss = None
    else:
        ids = torch.randint(1, 1000, (batch, length), generator=generator)
        data = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if kind == "tokens":
            data["labels"] = labels
        elif kind == "tokens-seq2seq":
            data["labels"] = torch.randint(1, 1000, (batch, length), generator=generator)
        loss = {"tokens": None, "tokens-lm": lm_loss, "tokens-seq2seq": seq2seq_loss}[kind]
    from lightning_panning.core.batch import move_to_device

    return move_to_device(data, device), loss


def timed_rounds(session: Any, device: torch.device) -> list[float]:
    """Run every round of ``session``; the seconds of each."""
    seconds: list[float] = []
    while not session.done:
        start = time.perf_counter()
        session.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def worker(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build one model, prune it for ``args.rounds`` rounds, return seconds per round and peak memory."""
    from lightning_panning import Panning, prunable_parameters

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    build, kind = MODELS[name]
    model = build().to(device)
    data, loss = make_batch(kind, args.batch, args.size, args.length, device)
    pruner = Panning(rounds=args.rounds, per_class=1, progress=False, **({"loss_fn": loss} if loss else {}))
    peak = Peak(device)
    peak.start()
    session = pruner.start(model, data, TARGET)
    seconds = timed_rounds(session, device)
    peak_mib = peak.peak_mib()  # Panning's own, before RLPanning runs
    params = prunable_parameters(model)
    rl: dict[str, Any] = {}
    if args.rlpanning:
        from lightning_panning.rl import PolicyWeights

        rl_session = pruner.replace(weights=PolicyWeights("default"), name="rlpanning").start(model, data, TARGET)
        rl_seconds = timed_rounds(rl_session, device)
        rl = {"rl_seconds_per_round": statistics.median(rl_seconds), "rl_seconds": rl_seconds}
    return {
        "model": name,
        "input": kind,
        "parameters": sum(p.numel() for p in model.parameters()),
        "prunable": sum(p.numel() for p in params.values()),
        "seconds_per_round": statistics.median(seconds),
        "seconds": seconds,
        "peak_mib": peak_mib,
        "sparsity": session.result().sparsity,
        **rl,
    }


def run_worker(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`worker` in a fresh process; an error is recorded, not raised."""
    command = [sys.executable, "-m", "benchmarks.model_zoo", "--worker", name, "--device", args.device,
               "--rounds", str(args.rounds), "--threads", str(args.threads), "--batch", str(args.batch),
               "--size", str(args.size), "--length", str(args.length), *(["--rlpanning"] if args.rlpanning else [])]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"model": name, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])




def write_results(record: dict[str, Any], out: Path) -> Path:
    """``model_zoo{,_cuda}.json`` and ``.md`` in ``out``; returns the Markdown file."""
    out.mkdir(parents=True, exist_ok=True)
    stem = "model_zoo" + ("_rl" if record.get("rlpanning") else "")
    stem += "_cuda" if record["device"].startswith("cuda") else ""
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# Default Panning on common architectures ({record['device']})",
        "",
        f"`{record['command']}` at commit `{record['commit']}`, {record['date']}, {record['machine']}, "
        f"{record['device_name']}, torch {record['torch']}, {record['threads']} threads, load average "
        f"{record['load_start']} before and {record['load_end']} after.",
        "",
        f"Target {TARGET}, {record['rounds']} rounds, batch {record['batch']} ({record['size']}-pixel images, "
        f"{record['length']}-token sequences); peak memory above the built model.",
        "",
    ]
    rl = bool(record.get("rlpanning"))
    if rl:
        lines += ["RLPanning: the shipped policy, right after Panning in the same process, on the same model and",
                  "batch; ratio = RLPanning's median seconds per round over Panning's.", ""]
    lines += [
        "| model | parameters | prunable | s / round | " + ("RLPanning s / round | ratio | " if rl else "")
        + "peak MiB | note |",
        "|---|---:|---:|---:|" + ("---:|---:|" if rl else "") + "---:|---|",
    ]
    for r in record["models"]:
        if "error" in r:
            lines.append(f"| {r['model']} | | | | " + ("| | " if rl else "") + f"| error: {r['error']} |")
        else:
            extra = ""
            if rl:
                extra = f"{r['rl_seconds_per_round']:.3g} | {r['rl_seconds_per_round'] / r['seconds_per_round']:.2f} | "
            lines.append(f"| {r['model']} | {r['parameters']:,} | {r['prunable']:,} | {r['seconds_per_round']:.3g} | "
                         f"{extra}{r['peak_mib']:.0f} | |")
    path = out / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--models", nargs="*", default=None, help=f"a subset of {list(MODELS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (Inception-v3: at least 299)")
    parser.add_argument("--length", type=int, default=64, help="tokens per sequence")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="64-pixel images, 16 tokens, 2 rounds: checks the script")
    parser.add_argument("--rlpanning", action="store_true",
                        help="also run RLPanning (shipped policy) after Panning: model_zoo_rl.{md,json}")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=list(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available; use --device cpu or auto")
    unknown = sorted(set(args.models or []) - set(MODELS))
    if unknown:
        parser.error(f"unknown --models {unknown}; allowed: {list(MODELS)}")
    if args.quick:
        args.size, args.length, args.rounds = 64, 16, 2
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    load_start = [round(x, 2) for x in os.getloadavg()]
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor()
    results: list[dict[str, Any]] = []
    record = {
        "command": "python -m benchmarks.model_zoo " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": code_label(),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
        "device": args.device,
        "device_name": device_name or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "load_start": load_start,
        "load_end": "(run cut short: written after each model)",
        "rounds": args.rounds,
        "batch": args.batch,
        "size": args.size,
        "length": args.length,
        "target": TARGET,
        "rlpanning": args.rlpanning,
        "models": results,
    }
    for name in args.models or list(MODELS):  # written after each model: a run cut short keeps what it measured
        results.append(run_worker(name, args))
        write_results(record, args.out)
    record["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print(write_results(record, args.out).read_text())


if __name__ == "__main__":
    main()
