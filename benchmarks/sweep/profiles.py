"""Profiles: a network, a dataset, a training recipe and the default grid of methods × sparsities × seeds.

The paper profiles use Table 1's recipe (SGD with momentum 0.9, cosine annealing from lr 0.1, the paper's batch size,
epochs and weight decay, the whole training set) and the models' own initialisation (the authors' scheme, METHOD.md
§6). Which LeNet5 profile to use:

* ``lenet5-mnist`` / ``lenet5-fashionmnist``: the paper's full budget (80 epochs, 3 seeds, six sparsities), with
  the data held in device memory. Meant for a GPU: ``--accelerator gpu --jobs N`` runs N cells at once on it.
* ``lenet5-mnist-cpu`` / ``lenet5-fashionmnist-cpu``: the same recipe for 5 epochs, at the sparsities where the
  methods differ most, for a CPU.
* ``lenet300-fashionmnist-cpu``: LeNet-300-100 on FashionMNIST with the same recipe, a network the RLPanning agent
  was never trained on (it is trained on LeNet5/MNIST): RLPanning against Panning and ``panning_authors``.
* ``quick`` (the default) and ``smoke`` (CI, offline): short runs to see that everything works.

Example:
    >>> profile = PROFILES["smoke"].override(methods=("dense", "random"), sparsities=(0.9,), seeds=(0,))
    >>> [(c.method, c.sparsity) for c in profile.cells()]
    [('dense', 0.0), ('random', 0.9)]
    >>> format_sparsity(0.9999), parse_sparsity("99.9")
    ('99.99%', 0.999)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.sweep.methods import check_methods

__all__ = [
    "DEFAULT_PROFILE",
    "PAPER_RECIPE_METHODS",
    "PAPER_SPARSITIES",
    "PROFILES",
    "Cell",
    "Profile",
    "default_data_dir",
    "format_sparsity",
    "get_profile",
    "parse_sparsity",
]

#: The six sparsities of Tables 5 and 6.
PAPER_SPARSITIES: tuple[float, ...] = (0.9, 0.95, 0.98, 0.99, 0.999, 0.9999)
#: Methods of the paper-recipe profiles: Table 5's, Algorithm 1 beside the authors' code, and Figure 3's FORCE-style
#: iterative SNIP and GraSP.
PAPER_RECIPE_METHODS: tuple[str, ...] = (
    "dense",
    "panning",
    "panning_authors",
    "rlpanning",
    "synflow",
    "snip",
    "grasp",
    "iterative_snip",
    "iterative_grasp",
)


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep.

    Attributes:
        method: sweep method (a key of :data:`~benchmarks.sweep.methods.METHOD_LABELS`).
        sparsity: target sparsity; ``0.0`` for ``dense``.
        seed: the seed of everything in the run (initialisation, data order and subset, scoring batch).
    """

    method: str
    sparsity: float
    seed: int


@dataclass(frozen=True)
class Profile:
    """A benchmark setting: network, data, training recipe and the default grid.

    Attributes:
        name: profile name (also the default results folder name).
        description: one line for the summary.
        model: ``"lenet5"``, ``"lenet300"`` (LeNet-300-100), ``"vgg19"`` or ``"resnet18"``.
        dataset: ``"digits"``, ``"mnist"``, ``"fashionmnist"``, ``"cifar10"``, ``"cifar100"`` or ``"tinyimagenet"``.
        epochs: training epochs.
        batch_size: training batch size.
        weight_decay: SGD weight decay (Table 1).
        lr: initial learning rate of SGD + cosine annealing (Table 1: 0.1).
        momentum: SGD momentum (Table 1: 0.9).
        methods: sweep methods.
        sparsities: target sparsities in (0, 1).
        seeds: seeds; each (method, sparsity) runs once per seed.
        rounds: ``T`` of iterative methods (paper: 100).
        init: the models' weight initialisation (``"authors"``: the authors' code, METHOD.md §6; ``"kaiming"``).
        per_class: samples per class of the scoring batch (paper: 10; 5 for 100/200 classes).
        train_subset: train on this many (seeded) training samples; ``None`` uses all.
        validate: run the validation loop each epoch (on the test set: the paper's protocol); off saves time.
        cosine_per_step: anneal the learning rate per optimizer step over the whole run (``Trainer(max_steps=...)``)
            instead of per epoch; the same curve for long runs, and a real decay for 1-epoch budgets.
        in_memory: hold the whole dataset in device memory and draw batches by index
            (:mod:`benchmarks.sweep.data`); the same batches as the DataLoader, without its per-sample work.
        compact: train the compacted network (dead channels removed before the first step,
            ``CompactionCallback(train_compacted=True)``): exact, so not part of the :meth:`budget`; only pruned cells.
        paper: key of :data:`~benchmarks.sweep.paper.PAPER_RESULTS` to compare with, if any.
        paper_epochs: epochs of the paper's runs in this setting (Table 1), for the budget statement.
        datamodule_kwargs: extra DataModule arguments.
    """

    name: str
    description: str
    model: str
    dataset: str
    epochs: int
    batch_size: int
    weight_decay: float
    lr: float = 0.1
    momentum: float = 0.9
    methods: tuple[str, ...] = PAPER_RECIPE_METHODS
    sparsities: tuple[float, ...] = PAPER_SPARSITIES
    seeds: tuple[int, ...] = (0, 1, 2)
    rounds: int = 100
    init: str = "authors"
    per_class: int = 10
    train_subset: int | None = None
    validate: bool = False
    cosine_per_step: bool = True
    in_memory: bool = False
    compact: bool = False
    paper: str | None = None
    paper_epochs: int | None = None
    datamodule_kwargs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        check_methods(self.methods, f"profile {self.name!r}")
        bad = [s for s in self.sparsities if not 0.0 < s < 1.0]
        if bad:
            raise ValueError(f"Profile {self.name!r}: sparsities must be in (0, 1), got {bad}.")
        for name in ("epochs", "batch_size", "rounds", "per_class"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Profile {self.name!r}: `{name}` must be a positive integer, got {value!r}.")
        if self.train_subset is not None and self.train_subset < 1:
            raise ValueError(
                f"Profile {self.name!r}: `train_subset` must be positive or None, got {self.train_subset}."
            )
        if not self.seeds:
            raise ValueError(f"Profile {self.name!r}: `seeds` must not be empty.")

    def override(self, **changes: Any) -> Profile:
        """A copy with ``changes`` applied (``None`` values are ignored, except for ``train_subset=0`` → all data).

        Example:
            >>> PROFILES["lenet5-mnist"].override(epochs=2, train_subset=0, seeds=None).epochs
            2
        """
        clean = {k: v for k, v in changes.items() if v is not None}
        if clean.get("train_subset") == 0:
            clean["train_subset"] = None
        for key in ("methods", "sparsities", "seeds"):
            if key in clean:
                clean[key] = tuple(dict.fromkeys(clean[key]))
        return dataclasses.replace(self, **clean)

    def cells(self) -> list[Cell]:
        """The grid, seed-major (every method at every sparsity for seed 0 first); ``dense`` once per seed."""
        cells: list[Cell] = []
        for seed in self.seeds:
            for method in self.methods:
                if method == "dense":
                    cells.append(Cell("dense", 0.0, seed))
                    continue
                cells.extend(Cell(method, sparsity, seed) for sparsity in sorted(self.sparsities))
        return cells

    def num_classes(self) -> int:
        """Classes of the dataset."""
        return {"cifar100": 100, "tinyimagenet": 200}.get(self.dataset, 10)

    def budget(self) -> dict[str, Any]:
        """The training budget: what must be equal for two runs of a cell to be the same run (see ``records``)."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "epochs": self.epochs,
            "train_subset": self.train_subset,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "rounds": self.rounds,
            "per_class": self.per_class,
            "cosine_per_step": self.cosine_per_step,
        }


def _paper_profile(name: str, model: str, dataset: str, epochs: int, batch: int, wd: float, **kw: Any) -> Profile:
    return Profile(
        name=name,
        description=kw.pop("description"),
        model=model,
        dataset=dataset,
        epochs=epochs,
        batch_size=batch,
        weight_decay=wd,
        paper=kw.pop("paper", name),
        paper_epochs=kw.pop("paper_epochs", epochs),
        **kw,
    )


_CPU = "Table 1 recipe (all 60,000 images, batch 256, lr 0.1 cosine, momentum 0.9, wd 1e-4) for 5 of its 80 epochs"

#: The built-in profiles.
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="smoke",
            description="CI smoke test: LeNet5 on the offline sklearn digits (upsampled to 28x28), 1 epoch.",
            model="lenet5",
            dataset="digits",
            epochs=1,
            batch_size=64,
            weight_decay=1e-4,
            methods=("dense", "panning", "random"),
            sparsities=(0.9, 0.99),
            seeds=(0,),
            rounds=5,
            per_class=5,
            train_subset=512,
        ),
        _paper_profile(
            "quick",
            "lenet5",
            "mnist",
            1,
            256,
            1e-4,
            description=(
                "Default: LeNet5/MNIST at 90/99/99.9% with Table 1's recipe for 1 of its 80 epochs (all 60,000 "
                "images, batch 256, lr 0.1 cosine per step), 1 seed, T = 100; data in memory."
            ),
            methods=("dense", "panning", "synflow", "snip", "grasp", "random"),
            sparsities=(0.9, 0.99, 0.999),
            seeds=(0,),
            in_memory=True,
            paper="lenet5-mnist",
            paper_epochs=80,
        ),
        _paper_profile(
            "lenet5-mnist-cpu",
            "lenet5",
            "mnist",
            5,
            256,
            1e-4,
            description=f"LeNet5 (Caffe) on MNIST, {_CPU}; 3 seeds at 99, 99.9 and 99.99%; data in memory.",
            sparsities=(0.99, 0.999, 0.9999),
            in_memory=True,
            compact=True,
            paper="lenet5-mnist",
            paper_epochs=80,
        ),
        _paper_profile(
            "lenet5-fashionmnist-cpu",
            "lenet5",
            "fashionmnist",
            5,
            256,
            1e-4,
            description=f"LeNet5 (Caffe) on FashionMNIST, {_CPU}; 3 seeds at 99 and 99.9%; data in memory.",
            sparsities=(0.99, 0.999),
            in_memory=True,
            compact=True,
            paper="lenet5-fashionmnist",
            paper_epochs=80,
        ),
        _paper_profile(
            "lenet300-fashionmnist-cpu",
            "lenet300",
            "fashionmnist",
            5,
            256,
            1e-4,
            description=(
                f"LeNet-300-100 on FashionMNIST (a network the RLPanning agent never saw), {_CPU}; 3 seeds at 99, "
                "99.9 and 99.99%; data in memory. The paper has no numbers for it."
            ),
            methods=("dense", "panning", "panning_authors", "rlpanning"),
            sparsities=(0.99, 0.999, 0.9999),
            in_memory=True,
            compact=True,
            paper=None,
            paper_epochs=None,
        ),
        _paper_profile(
            "lenet5-mnist",
            "lenet5",
            "mnist",
            80,
            256,
            1e-4,
            description="LeNet5 (Caffe) on MNIST, Table 1 recipe, the paper's full budget; data in device memory.",
            in_memory=True,
            compact=True,
        ),
        _paper_profile(
            "lenet5-fashionmnist",
            "lenet5",
            "fashionmnist",
            80,
            256,
            1e-4,
            description=(
                "LeNet5 (Caffe) on FashionMNIST, Table 1 recipe, the paper's full budget; data in device memory."
            ),
            in_memory=True,
            compact=True,
        ),
        _paper_profile(
            "vgg19-cifar10",
            "vgg19",
            "cifar10",
            180,
            128,
            5e-4,
            description="VGG19 (BatchNorm) on CIFAR-10, Table 1 recipe (crop + flip).",
            methods=(*PAPER_RECIPE_METHODS, "grasp_original"),
            sparsities=(0.85, *PAPER_SPARSITIES),
        ),
        _paper_profile(
            "resnet18-cifar100",
            "resnet18",
            "cifar100",
            180,
            128,
            5e-4,
            description="ResNet18 on CIFAR-100, Table 1 recipe (Figure 3 of the paper; no table numbers).",
            per_class=5,
            paper=None,
        ),
        _paper_profile(
            "vgg19-tinyimagenet",
            "vgg19",
            "tinyimagenet",
            200,
            128,
            5e-4,
            description="VGG19 (BatchNorm) on Tiny-ImageNet (64x64, 200 classes), Table 1 recipe.",
            sparsities=(0.9, 0.95, 0.98),
            per_class=5,
        ),
        _paper_profile(
            "resnet18-tinyimagenet",
            "resnet18",
            "tinyimagenet",
            300,
            128,
            1e-4,
            description="ResNet18 on Tiny-ImageNet (64x64, 200 classes), Table 1 recipe.",
            sparsities=(0.9, 0.95, 0.98),
            per_class=5,
        ),
    )
}

DEFAULT_PROFILE = "quick"


def get_profile(name: str) -> Profile:
    """The built-in profile ``name``.

    Raises:
        ValueError: naming the profile asked for and the allowed ones.

    Example:
        >>> get_profile("smoke").dataset
        'digits'
    """
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; allowed: {sorted(PROFILES)}.")
    return PROFILES[name]


def default_data_dir(repo_root: str | os.PathLike[str] | None = None) -> Path:
    """Dataset root: ``$LIGHTNING_PANNING_DATA``, else ``<repo>/../shared/datasets`` if it exists, else ``./data``.

    Example:
        >>> isinstance(default_data_dir(), Path)
        True
    """
    env = os.environ.get("LIGHTNING_PANNING_DATA")
    if env:
        return Path(env).expanduser().resolve()
    if repo_root is not None:
        shared = Path(repo_root).resolve().parent / "shared" / "datasets"
        if shared.is_dir():
            return shared
    return Path("data").resolve()


def parse_sparsity(text: str) -> float:
    """A sparsity from the command line: a fraction (``0.999``) or a percentage (``99.9``).

    Example:
        >>> parse_sparsity("99.9"), parse_sparsity("0.98")
        (0.999, 0.98)
    """
    value = float(text)
    if 1.0 < value < 100.0:
        value = round(value / 100.0, 10)
    if not 0.0 < value < 1.0:
        raise ValueError(f"A sparsity must be a fraction in (0, 1) or a percentage in (1, 100), got {text!r}.")
    return value


def format_sparsity(sparsity: float) -> str:
    """``0.9999`` → ``'99.99%'``; ``0.0`` → ``'0%'``."""
    return f"{round(sparsity * 100, 6):g}%"
