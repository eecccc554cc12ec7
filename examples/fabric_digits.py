"""Lightning Fabric: prune LeNet5 with Panning after ``fabric.setup``, train it sparse, save, and resume.

Runs offline in seconds on a CPU: the data are scikit-learn's bundled handwritten digits (upsampled to 28x28).

    python examples/fabric_digits.py                        # one process
    python examples/fabric_digits.py --devices 2            # two CPU processes (DDP over gloo)

The pruning is three lines: build a ``FabricPanning``, put it in the checkpoint state next to the model and the
optimizer, and call its ``setup`` after ``fabric.setup``. The second half of the script starts again from the
checkpoint the first half saved: ``fabric.load`` restores the masks and ``setup`` re-installs them without pruning.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.fabric import Fabric
from torch.utils.data import DataLoader

from lightning_panning.data import DigitsDataModule
from lightning_panning.fabric import FabricPanning
from lightning_panning.models import LeNet5


def masks_digest(masks: dict[str, torch.Tensor]) -> str:
    """A short hash of the masks (names, shapes and bits), to compare ranks and runs."""
    digest = hashlib.sha256()
    for name in sorted(masks):
        digest.update(name.encode())
        digest.update(masks[name].cpu().to(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def build(fabric: Fabric, lr: float) -> tuple[Any, Any]:
    """LeNet5 and its SGD optimizer, set up by Fabric (same initial weights on every rank: seeded)."""
    fabric.seed_everything(0)
    model = LeNet5(num_classes=10, in_channels=1, input_size=28)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return fabric.setup(model, optimizer)


def train(fabric: Fabric, model: Any, optimizer: Any, loader: Any, epochs: int) -> float:
    """Plain Fabric training loop; returns the last batch's loss."""
    model.train()
    loss = torch.zeros(())
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            fabric.backward(loss)
            optimizer.step()
    return float(loss)


def pruned_share(model: Any, masks: dict[str, torch.Tensor]) -> float:
    """Share of the pruned weights that are exactly zero in ``model`` (1.0 = the masks hold)."""
    params = dict(model.module.named_parameters())
    pruned = [params[n][~m] for n, m in masks.items()]
    total = sum(p.numel() for p in pruned)
    return sum(int((p == 0).sum()) for p in pruned) / max(total, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1, help="CPU processes (default 1; 2+ runs DDP over gloo)")
    parser.add_argument("--target", type=float, default=0.98, help="sparsity to prune to (default 0.98)")
    parser.add_argument("--rounds", type=int, default=10, help="Panning rounds (default 10; the paper uses 100)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs before and after resuming")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint file (default: a temporary one)")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    strategy = "ddp" if args.devices > 1 else "auto"
    fabric = Fabric(accelerator="cpu", devices=args.devices, strategy=strategy)
    fabric.launch()
    data = DigitsDataModule(batch_size=64, seed=0)
    data.setup("fit")
    train_set = data.train_dataset
    loader = fabric.setup_dataloaders(DataLoader(train_set, batch_size=64, shuffle=True))
    checkpoint = args.checkpoint or Path(tempfile.gettempdir()) / "lightning_panning_fabric_digits.ckpt"
    checkpoint = fabric.broadcast(checkpoint)

    # 1. prune after fabric.setup (scoring data: the plain dataset, the same on every rank), train, save
    model, optimizer = build(fabric, lr=0.05)
    pruning = FabricPanning(target=args.target, rounds=args.rounds, verbose=False)
    masks = pruning.setup(fabric, model, [optimizer], data=train_set)
    loss = train(fabric, model, optimizer, loader, args.epochs)
    digests = fabric.all_gather(torch.tensor([int(masks_digest(masks), 16) % 2**62]))
    state = {"model": model, "optimizer": optimizer, "pruning": pruning}
    fabric.save(checkpoint, state)
    fabric.print(
        f"pruned to sparsity {pruning.summary['nominal_sparsity']:.4f} "
        f"(effective {pruning.summary['effective_sparsity']:.4f}) on {fabric.world_size} process(es); "
        f"masks identical on every rank: {bool((digests == digests.flatten()[0]).all())}; "
        f"pruned weights still zero after training: {pruned_share(model, masks):.4f}; last loss {loss:.3f}"
    )

    # 2. resume: a fresh model, optimizer and FabricPanning; fabric.load restores the masks, setup does not prune
    model, optimizer = build(fabric, lr=0.05)
    resumed = FabricPanning(target=args.target, rounds=args.rounds, verbose=False)
    state = {"model": model, "optimizer": optimizer, "pruning": resumed}
    fabric.load(checkpoint, state)
    resumed_masks = resumed.setup(fabric, model, [optimizer], data=train_set)
    train(fabric, model, optimizer, loader, args.epochs)
    fabric.print(
        f"resumed masks equal the saved ones: {masks_digest(resumed_masks) == masks_digest(masks)}; "
        f"pruned again: {resumed.result is not None}; "
        f"pruned weights still zero after training: {pruned_share(model, resumed_masks):.4f}"
    )


if __name__ == "__main__":
    main()
