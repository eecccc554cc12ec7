"""Quickstart: prune LeNet5 to 98% with Panning before training, train it sparse, compare with dense.

Runs offline in about a minute on a 2-core CPU: the data are scikit-learn's bundled handwritten digits (1,797 images,
upsampled to 28x28), so nothing is downloaded.

    python examples/quickstart.py               # dense vs. Panning at 98%
    python examples/quickstart.py --target 0.99 --epochs 20

The whole library usage is the one line ``callbacks=[PanningCallback(target=0.98)]``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import lightning.pytorch as pl
import torch

from lightning_panning.callbacks import PanningCallback
from lightning_panning.classifier import ImageClassifier
from lightning_panning.data import DigitsDataModule
from lightning_panning.models import LeNet5


def train(callbacks: list[pl.Callback], epochs: int, seed: int) -> tuple[float, float]:
    """Train LeNet5 on the digits with the given callbacks; return (test accuracy, wall seconds)."""
    pl.seed_everything(seed, verbose=False)
    model = ImageClassifier(LeNet5(num_classes=10, in_channels=1, input_size=28), lr=0.1, weight_decay=1e-4)
    data = DigitsDataModule(batch_size=64, seed=seed)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    accuracy = trainer.test(model, datamodule=data, verbose=False)[0]["test/acc"]
    return float(accuracy), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.98, help="sparsity to prune to (default 0.98)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs for each run (default 15)")
    parser.add_argument("--rounds", type=int, default=100, help="Panning rounds (default 100, as the paper)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")

    dense_acc, dense_s = train([], args.epochs, args.seed)
    pruner = PanningCallback(target=args.target, options={"rounds": args.rounds, "seed": args.seed}, verbose=False)
    sparse_acc, sparse_s = train([pruner], args.epochs, args.seed)

    s = pruner.summary
    print(f"\nLeNet5 on scikit-learn digits (28x28), {args.epochs} epochs, Panning with {args.rounds} rounds\n")
    print(f"| {'':<24} | {'dense':>10} | {'Panning':>10} |")
    print(f"|{'-' * 26}|{'-' * 12}|{'-' * 12}|")
    print(f"| {'test accuracy':<24} | {dense_acc:>10.4f} | {sparse_acc:>10.4f} |")
    print(f"| {'nominal sparsity':<24} | {0.0:>10.4f} | {s['nominal_sparsity']:>10.4f} |")
    print(f"| {'effective sparsity':<24} | {0.0:>10.4f} | {s['effective_sparsity']:>10.4f} |")
    print(f"| {'pruning seconds':<24} | {'-':>10} | {s['pruning_seconds']:>10.2f} |")
    print(f"| {'fit seconds (w/ pruning)':<24} | {dense_s:>10.1f} | {sparse_s:>10.1f} |")
    print("\nPer-layer density after pruning:\n")
    width = max(len("layer"), *(len(layer) for layer in s["layer_density"]))
    print(f"| {'layer':<{width}} | {'density':>8} | {'dead units':>10} |")
    print(f"|{'-' * (width + 2)}|{'-' * 10}|{'-' * 12}|")
    for layer, density in s["layer_density"].items():
        dead, units = s["dead_units"][layer]
        print(f"| {layer:<{width}} | {density:>8.4f} | {f'{dead}/{units}':>10} |")


if __name__ == "__main__":
    main()
