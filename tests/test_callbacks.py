"""PanningCallback / BasePruningCallback: one test group per behaviour of issue 3, tiny models, a few batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_panning import MaskEnforcer
from lightning_panning.callbacks import PanningCallback
from lightning_panning.callbacks.loss import TrainingStepLoss
from lightning_panning.core import ClassificationLoss, unpack_masks

# ---------------------------------------------------------------------------------------------------------------------
# tiny models and data (module level so ddp_spawn can pickle them)


def xy_dataset(n: int = 48, classes: int = 4, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % classes)


class TinyNet(pl.LightningModule):
    """Conv + BatchNorm + Linear classifier on 1x8x8 inputs; optimizer chosen by name."""

    def __init__(self, optimizer: str = "sgd", manual: bool = False, data: Dataset | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(),
            nn.Linear(16, 4),
        )
        self.optimizer = optimizer
        self.automatic_optimization = not manual
        self.data = data
        self.steps_seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        if not self.automatic_optimization:
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            return None
        return loss

    def configure_optimizers(self) -> Any:
        if self.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=1e-2)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1)
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)

    def train_dataloader(self) -> DataLoader:
        assert self.data is not None
        return DataLoader(self.data, batch_size=16)


class DictBatches(Dataset):
    """Unlabelled regression data as dict samples: ``{"inputs": (6,), "target": (2,) float}``."""

    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 6, generator=g)
        self.t = torch.randn(n, 2, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"inputs": self.x[i], "target": self.t[i]}


class DictLossModule(pl.LightningModule):
    """``training_step`` returns ``{"loss": ...}`` on dict batches; ``forward`` returns a dict (not logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(6, 12)
        self.head = nn.Linear(12, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pred": self.head(torch.tanh(self.encoder(x)))}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        self.calls += 1
        loss = F.mse_loss(self(batch["inputs"])["pred"], batch["target"])
        self.log("mse", loss)  # must be muted while scoring
        self.log_dict({"mse2": loss})
        return {"loss": loss, "detail": loss.detach()}

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


class NothingPrunable(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(4)
        self.trained = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.trained = True
        return self(batch[0]).sum()

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class XYDataModule(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return DataLoader(xy_dataset(), batch_size=16, shuffle=True)


def trainer(tmp_path: Path | None = None, **kwargs: Any) -> pl.Trainer:
    defaults: dict[str, Any] = {
        "max_epochs": 1,
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


#: PanningCallback's own arguments; every other keyword of `callback()` is a Panning option.
CALLBACK_ARGUMENTS = ("target", "method", "loss", "shuffle_masks", "dataloader", "log_figure", "verbose")


def callback(**kwargs: Any) -> PanningCallback:
    options = {"rounds": 4, "per_class": 4, **{k: v for k, v in kwargs.items() if k not in CALLBACK_ARGUMENTS}}
    own = {"target": 0.9, "verbose": False, "log_figure": False}
    own.update({k: v for k, v in kwargs.items() if k in CALLBACK_ARGUMENTS})
    return PanningCallback(**own, options=options)


def assert_masked(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        weight = model.get_parameter(name).detach().cpu()
        assert torch.equal(weight[~mask.cpu()], torch.zeros_like(weight[~mask.cpu()])), name
        assert bool((weight[mask.cpu()] != 0).any()), name


class StepChecker(pl.Callback):
    """Asserts after every training batch that the pruned weights are exactly zero."""

    def __init__(self, pruner: PanningCallback) -> None:
        self.pruner = pruner
        self.checked = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        assert self.pruner.masks is not None  # pruned before the first step
        assert_masked(pl_module, self.pruner.masks)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        assert_masked(pl_module, self.pruner.masks)  # type: ignore[arg-type]
        self.checked += 1


# ---------------------------------------------------------------------------------------------------------------------
# 1. when and on what


def test_prunes_once_in_on_fit_start_before_the_first_step(tmp_path: Path) -> None:
    cb = callback()
    checker = StepChecker(cb)
    model = TinyNet()
    trainer(tmp_path, callbacks=[cb, checker], max_steps=3).fit(model, DataLoader(xy_dataset(), batch_size=16))
    assert checker.checked == 3
    assert cb.masks is not None and cb.result is not None
    total = sum(m.numel() for m in cb.masks.values())
    assert cb.summary["kept_weights"] == int(total * 0.1 + 1e-6)
    assert cb.summary["rounds"] == 4 and len(cb.summary["round_weights"]) == 4
    assert set(cb.masks) == {"net.0.weight", "net.4.weight", "net.6.weight"}
    for key in ("target", "nominal_sparsity", "effective_sparsity", "layer_density", "dead_units", "pruning_seconds"):
        assert key in cb.summary
    assert cb.summary["output_spread_dense"] > 0.0 and cb.summary["output_spread"] >= 0.0
    assert "ClassificationLoss" in cb.summary["loss"]
    assert_masked(model, cb.masks)


class DeadAfterPruning(pl.LightningModule):
    """An MLP whose largest weights all run through one ReLU unit that no input can switch on."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        with torch.no_grad():
            self.net[0].weight.fill_(0.01)
            self.net[0].weight[0] = 10.0
            self.net[0].bias.zero_()
            self.net[0].bias[0] = -1e4  # unit 0 is off for every input below |x| ~ 250
            self.net[2].weight.fill_(0.01)
            self.net[2].weight[:, 0] = 10.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_mask_that_leaves_a_constant_output_is_reported(tmp_path: Path) -> None:
    """Magnitude keeps the 7 large weights (unit 0's), which paths connect but no input activates: spread 0."""
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 4, generator=g), torch.arange(32) % 3)
    cb = callback(method="magnitude", target=1 - 7 / 56)
    with pytest.warns(UserWarning, match=r"same output for every sample of the scoring batch \(output spread 0;"):
        trainer(tmp_path, callbacks=[cb], max_steps=1).fit(DeadAfterPruning(), DataLoader(data, batch_size=16))
    assert cb.summary["kept_weights"] == 7 and cb.summary["effective_sparsity"] < 1.0  # paths exist...
    assert cb.summary["output_spread"] == 0.0 and cb.summary["output_spread_dense"] > 0.0  # ...but carry nothing


def test_same_seed_same_masks_and_the_seed_matters(tmp_path: Path) -> None:
    runs = []
    for seed in (0, 0, 1):
        cb = callback(seed=seed, method="random")
        trainer(tmp_path, callbacks=[cb], max_steps=1).fit(TinyNetSeeded(), DataLoader(xy_dataset(), batch_size=16))
        runs.append(cb.masks)
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])
    assert not all(torch.equal(runs[0][n], runs[2][n]) for n in runs[0])


class TinyNetSeeded(TinyNet):
    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__()


def spy_batches(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The scoring batches PanningCallback.compute_masks receives, in order."""
    seen: list[Any] = []
    original = PanningCallback.compute_masks

    def spy(self: PanningCallback, trainer: Any, pl_module: Any, pruner: Any, batch: Any, *args: Any) -> Any:
        seen.append(batch)
        return original(self, trainer, pl_module, pruner, batch, *args)

    monkeypatch.setattr(PanningCallback, "compute_masks", spy)
    return seen


def constant_dataset(value: float, n: int = 48, classes: int = 4) -> TensorDataset:
    return TensorDataset(torch.full((n, 1, 8, 8), value), torch.arange(n) % classes)


@pytest.mark.parametrize("source", ["datamodule", "fit_dataloaders", "module_hook", "callback_dataloader"])
def test_data_sources(tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_batches(monkeypatch)
    data = constant_dataset(1.0)
    cb = callback(dataloader=DataLoader(constant_dataset(3.0), batch_size=8)) if source == "callback_dataloader" else (
        callback()
    )
    model = TinyNetSeeded() if source != "module_hook" else TinyNetSeeded.with_data(data)
    t = trainer(tmp_path, callbacks=[cb], max_steps=1)
    if source == "datamodule":
        t.fit(model, datamodule=XYDataModule())
    elif source in ("fit_dataloaders", "callback_dataloader"):
        t.fit(model, train_dataloaders=DataLoader(data, batch_size=16))
    else:
        t.fit(model)
    assert cb.masks is not None and "ClassificationLoss" in cb.summary["loss"]
    x = seen[0][0]
    if source == "datamodule":
        assert x.std() > 0.5  # the datamodule's random images, not the constant ones
    else:  # the callback's `dataloader=` wins over the data fit receives
        assert bool((x == (3.0 if source == "callback_dataloader" else 1.0)).all())


def test_fit_dataloaders_found_without_lightning_internals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If Lightning moves the internal that holds fit's dataloaders, pruning waits for on_train_start."""
    import lightning_panning.callbacks.data as data_module

    monkeypatch.setattr(data_module, "fit_train_source", lambda trainer: None)
    seen = spy_batches(monkeypatch)
    cb = callback()
    checker = StepChecker(cb)
    trainer(tmp_path, callbacks=[cb, checker], max_steps=2).fit(
        TinyNet(), DataLoader(constant_dataset(2.0), batch_size=16)
    )
    assert checker.checked == 2 and bool((seen[0][0] == 2.0).all())


def _with_data(data: Dataset) -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(data=data)


TinyNetSeeded.with_data = staticmethod(_with_data)  # type: ignore[attr-defined]


def test_class_balanced_batch_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_batches(monkeypatch)
    cb = callback(per_class=3)
    trainer(tmp_path, callbacks=[cb], max_steps=1).fit(TinyNet(), DataLoader(xy_dataset(), batch_size=16, shuffle=True))
    x, y = seen[0]
    assert x.shape == (12, 1, 8, 8) and y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


# ---------------------------------------------------------------------------------------------------------------------
# 2. any LightningModule


class CallsBeforeTraining(pl.Callback):
    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.calls = pl_module.calls


def test_training_step_dict_loss_module(tmp_path: Path) -> None:
    cb = callback(target=0.8)
    counter = CallsBeforeTraining()
    model = DictLossModule()
    trainer(tmp_path, callbacks=[cb, counter], max_steps=2).fit(model, DataLoader(DictBatches(), batch_size=8))
    assert cb.summary["loss"] == "TrainingStepLoss()"
    assert counter.calls == 4  # scored through training_step: one shared SNIP/GraSP pass in each of the 4 rounds
    assert model.calls == 4 + 2  # and trained 2 steps
    assert cb.masks is not None and cb.summary["kept_weights"] == int((6 * 12 + 12 * 2) * 0.2 + 1e-6)
    assert_masked(model, cb.masks)
    assert model.log.__func__ is pl.LightningModule.log  # type: ignore[attr-defined]  # logging restored


def test_user_loss_fn(tmp_path: Path) -> None:
    calls = []

    def loss_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        calls.append(1)
        return model(batch["inputs"])["pred"].pow(2).mean()

    cb = callback(target=0.5, loss=loss_fn)
    model = DictLossModule()
    trainer(tmp_path, callbacks=[cb], max_steps=1).fit(model, DataLoader(DictBatches(), batch_size=8))
    assert calls and cb.masks is not None


class IndexNamedI(DictLossModule):
    """``training_step(batch, i)``: Lightning passes the index by position, whatever its name."""

    def training_step(self, batch: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
        assert isinstance(i, int)
        return super().training_step(batch, i)


class NoIndex(DictLossModule):
    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return super().training_step(batch, 0)


class VarArgs(DictLossModule):
    def training_step(self, *args: Any) -> dict[str, torch.Tensor]:
        assert len(args) == 2
        return super().training_step(*args)


@pytest.mark.parametrize("module_cls", [IndexNamedI, NoIndex, VarArgs], ids=["named-i", "no-index", "varargs"])
def test_training_step_with_any_signature(tmp_path: Path, module_cls: type[DictLossModule]) -> None:
    cb = callback(target=0.8)
    model = module_cls()
    trainer(tmp_path, callbacks=[cb], max_steps=1).fit(model, DataLoader(DictBatches(), batch_size=8))
    assert cb.summary["loss"] == "TrainingStepLoss()" and model.calls == 4 + 1


def test_auto_loss_resolution() -> None:
    cb = callback()
    batch = next(iter(DataLoader(xy_dataset(), batch_size=8)))
    assert isinstance(cb.resolve_loss(TinyNet(), batch), ClassificationLoss)
    dict_batch = next(iter(DataLoader(DictBatches(), batch_size=8)))
    assert isinstance(cb.resolve_loss(DictLossModule(), dict_batch), TrainingStepLoss)
    assert isinstance(callback(loss="training_step").resolve_loss(TinyNet(), batch), TrainingStepLoss)


def test_data_free_method_uses_only_the_input_shape(tmp_path: Path) -> None:
    cb = callback(method="synflow")
    trainer(tmp_path, callbacks=[cb], max_steps=1).fit(TinyNet(), DataLoader(xy_dataset(), batch_size=16))
    assert cb.masks is not None and cb.summary["loss"] is None and cb.summary["effective_sparsity"] is not None


def test_shuffle_masks_keeps_layer_densities(tmp_path: Path) -> None:
    a, b = callback(seed=0), callback(seed=0, shuffle_masks=True)
    for cb in (a, b):
        trainer(tmp_path, callbacks=[cb], max_steps=1).fit(TinyNetSeeded(), DataLoader(xy_dataset(), batch_size=16))
    assert a.summary["layer_density"] == b.summary["layer_density"] and b.summary["shuffled"]
    assert not all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)  # type: ignore[index]


# ---------------------------------------------------------------------------------------------------------------------
# 3. stays sparse


@pytest.mark.parametrize(
    ("optimizer", "extra"),
    [
        ("sgd", {}),
        ("adam", {}),
        ("adamw", {}),
        ("sgd", {"accumulate_grad_batches": 2}),
        ("adam", {"gradient_clip_val": 0.1}),
        ("adamw", {"precision": "bf16-mixed"}),
        ("manual", {}),
    ],
    ids=["sgd-momentum-wd", "adam", "adamw", "accumulation", "clipping", "bf16-mixed", "manual"],
)
def test_pruned_weights_stay_exactly_zero(tmp_path: Path, optimizer: str, extra: dict[str, Any]) -> None:
    cb = callback()
    checker = StepChecker(cb)
    model = TinyNet(optimizer="sgd" if optimizer == "manual" else optimizer, manual=optimizer == "manual")
    before = {n: model.get_parameter(n).detach().clone() for n in ("net.0.weight", "net.6.weight")}
    t = trainer(tmp_path, callbacks=[cb, checker], max_steps=4, max_epochs=3, **extra)
    t.fit(model, DataLoader(xy_dataset(), batch_size=8))
    assert cb.masks is not None and checker.checked == 4 * extra.get("accumulate_grad_batches", 1)
    assert_masked(model, cb.masks)
    kept = cb.masks["net.6.weight"]
    assert not torch.equal(model.net[6].weight.detach()[kept], before["net.6.weight"][kept])  # it did train


def test_enforcer_follows_device_and_dtype_changes() -> None:
    net = nn.Linear(4, 3)
    masks = {"weight": torch.rand(3, 4) > 0.5}
    enforcer = MaskEnforcer(net, masks)
    net.double()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    enforcer.attach([opt])
    net(torch.randn(2, 4, dtype=torch.float64)).sum().backward()
    opt.step()
    assert enforcer.float_masks[0].dtype == torch.float64
    assert bool((net.weight[~masks["weight"]] == 0).all())
    enforcer.detach()
    assert not opt._optimizer_step_post_hooks


# ---------------------------------------------------------------------------------------------------------------------
# 4. plain checkpoints / 5. resume


def fit_with_checkpoint(tmp_path: Path, cb: PanningCallback, model: TinyNet, **kwargs: Any) -> pl.Trainer:
    t = trainer(tmp_path, callbacks=[cb], **kwargs)
    t.fit(model, DataLoader(xy_dataset(), batch_size=16), ckpt_path=kwargs.pop("ckpt", None))
    return t


def test_checkpoint_loads_strictly_into_the_plain_model(tmp_path: Path) -> None:
    cb = callback()
    model = TinyNet()
    t = trainer(tmp_path, callbacks=[cb], max_steps=2)
    t.fit(model, DataLoader(xy_dataset(), batch_size=16))
    t.save_checkpoint(tmp_path / "pruned.ckpt")
    ckpt = torch.load(tmp_path / "pruned.ckpt", weights_only=True)
    plain = TinyNet()
    assert set(ckpt["state_dict"]) == set(plain.state_dict())
    assert not any("weight_orig" in k or "weight_mask" in k for k in ckpt["state_dict"])
    plain.load_state_dict(ckpt["state_dict"], strict=True)
    assert cb.masks is not None
    assert_masked(plain, cb.masks)
    assert cb.state_key in ckpt["callbacks"]


def test_resume_restores_the_same_masks_and_does_not_prune_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cb = callback()
    t = trainer(tmp_path, callbacks=[cb], max_epochs=1)
    t.fit(TinyNetSeeded(), DataLoader(xy_dataset(), batch_size=16))
    t.save_checkpoint(tmp_path / "epoch1.ckpt")
    assert cb.masks is not None
    first = {n: m.clone() for n, m in cb.masks.items()}

    def no_pruning(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pruned again on resume")

    monkeypatch.setattr(PanningCallback, "compute_masks", no_pruning)
    resumed = callback()
    checker = StepChecker(resumed)
    model = TinyNet()  # fresh weights, replaced by the checkpoint's
    t2 = trainer(tmp_path, callbacks=[resumed, checker], max_epochs=2)
    t2.fit(model, DataLoader(xy_dataset(), batch_size=16), ckpt_path=tmp_path / "epoch1.ckpt")
    assert checker.checked == 3 and t2.current_epoch == 2
    assert resumed.masks is not None
    assert all(torch.equal(first[n].cpu(), resumed.masks[n].cpu()) for n in first)
    assert resumed.summary["kept_weights"] == cb.summary["kept_weights"]
    assert_masked(model, resumed.masks)


def test_state_dict_is_compact_and_old_states_load() -> None:
    cb = callback()
    assert cb.state_dict() == {}
    cb.load_state_dict({})  # nothing saved (e.g. a checkpoint from before pruning): no masks
    assert cb.masks is None
    masks = {"w": torch.rand(5, 7) > 0.5}
    cb._masks = masks
    state = cb.state_dict()
    assert state["masks"]["w"]["bits"].dtype == torch.uint8 and state["masks"]["w"]["bits"].numel() == 5
    other = callback()
    other.load_state_dict(state)
    assert torch.equal(unpack_masks(state["masks"])["w"], masks["w"]) and torch.equal(other.masks["w"], masks["w"])  # type: ignore[index]
    assert callback(target=0.5).state_key != callback(target=0.9).state_key
    assert callback(method="snip").state_key != callback().state_key


def test_resume_with_other_shapes_is_a_clear_error(tmp_path: Path) -> None:
    cb = callback()
    cb.load_state_dict({"masks": {"net.6.weight": {"shape": [5, 16], "bits": torch.zeros(10, dtype=torch.uint8)}}})
    model = TinyNet()
    with pytest.raises(ValueError, match=r"net\.6\.weight.*\(5, 16\).*\(4, 16\)"):
        trainer(tmp_path, callbacks=[cb], max_steps=1).fit(model, DataLoader(xy_dataset(), batch_size=16))
    cb2 = callback()
    cb2.load_state_dict({"masks": {"missing.weight": {"shape": [2], "bits": torch.zeros(1, dtype=torch.uint8)}}})
    with pytest.raises(ValueError, match=r"missing\.weight"):
        trainer(tmp_path, callbacks=[cb2], max_steps=1).fit(TinyNet(), DataLoader(xy_dataset(), batch_size=16))


def no_pruning(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("pruned again on resume")


@pytest.mark.parametrize(
    ("changed", "pattern"),
    [
        ({"target": 0.95}, r"`target` is 0\.9 in the checkpoint but 0\.95 here"),
        ({"method": "snip"}, r"`method` is 'panning' in the checkpoint but 'snip' here"),
        ({"rounds": 5}, r"`rounds` is 4 in the checkpoint but 5 here"),
        ({"shuffle_masks": True}, r"`shuffle_masks` is False in the checkpoint but True here"),
    ],
    ids=["target", "method", "rounds", "shuffle"],
)
def test_resume_with_changed_settings_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed: dict[str, Any], pattern: str
) -> None:
    cb = callback()
    t = trainer(tmp_path, callbacks=[cb], max_steps=1)
    t.fit(TinyNetSeeded(), DataLoader(xy_dataset(), batch_size=16))
    t.save_checkpoint(tmp_path / "pruned.ckpt")
    monkeypatch.setattr(PanningCallback, "compute_masks", no_pruning)
    model = TinyNet()
    with pytest.raises(ValueError, match=pattern + r".*never prunes again"):
        trainer(tmp_path, callbacks=[callback(**changed)], max_steps=2).fit(
            model, DataLoader(xy_dataset(), batch_size=16), ckpt_path=tmp_path / "pruned.ckpt"
        )
    unchanged = callback(verbose=True)  # settings that do not change the masks may differ
    trainer(tmp_path, callbacks=[unchanged], max_steps=2).fit(
        model, DataLoader(xy_dataset(), batch_size=16), ckpt_path=tmp_path / "pruned.ckpt"
    )
    assert unchanged.masks is not None and all(torch.equal(cb.masks[n], unchanged.masks[n]) for n in cb.masks)


def test_reused_callback_prunes_the_new_model(tmp_path: Path) -> None:
    cb = callback(method="magnitude")
    first, second = TinyNetSeeded(), TinyNet()
    with torch.no_grad():  # a different model of the same shapes: magnitude keeps other weights
        second.net[6].weight.copy_(torch.arange(64.0).view(4, 16))
    trainer(tmp_path, callbacks=[cb], max_steps=1).fit(first, DataLoader(xy_dataset(), batch_size=16))
    first_masks = {n: m.clone() for n, m in cb.masks.items()}  # type: ignore[union-attr]
    trainer(tmp_path, callbacks=[cb], max_steps=1).fit(second, DataLoader(xy_dataset(), batch_size=16))
    assert cb.masks is not None and not torch.equal(cb.masks["net.6.weight"], first_masks["net.6.weight"])
    assert torch.equal(cb.masks["net.6.weight"][:, -1], torch.ones(4, dtype=torch.bool))  # its largest weights
    assert_masked(second, cb.masks)
    kept = {n: m.clone() for n, m in cb.masks.items()}
    trainer(tmp_path, callbacks=[cb], max_steps=1).fit(second, DataLoader(xy_dataset(), batch_size=16))
    assert all(torch.equal(kept[n], cb.masks[n]) for n in kept)  # the same model continues with its masks


# ---------------------------------------------------------------------------------------------------------------------
# engine settings reach the callbacks


def test_options_reach_scorers_train_mode_resurrect_and_predicate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    original = PanningCallback.compute_masks

    def spy(self: PanningCallback, trainer: Any, pl_module: Any, pruner: Any, *args: Any) -> Any:
        seen.append(pruner)
        return original(self, trainer, pl_module, pruner, *args)

    monkeypatch.setattr(PanningCallback, "compute_masks", spy)
    cb = callback(
        scorers=["snip", "grasp"], weights={"snip": 0.5, "grasp": 0.5}, train_mode=False, resurrect=False,
        predicate=lambda name, module, param: isinstance(module, nn.Linear) and name.endswith("weight"),
    )
    trainer(tmp_path, callbacks=[cb], max_steps=1).fit(TinyNet(), DataLoader(xy_dataset(), batch_size=16))
    pruner = seen[0]
    assert list(pruner.scorers) == ["snip", "grasp"] and pruner.train_mode is False and pruner.resurrect is False
    assert set(cb.masks) == {"net.4.weight", "net.6.weight"}  # type: ignore[arg-type]  # the predicate's choice
    assert cb.summary["round_weights"][0] == {"snip": 0.5, "grasp": 0.5}


def test_new_scorer_is_one_small_subclass_inside_the_callback(tmp_path: Path) -> None:
    """A scorer that makes its own pass over the batch declares `Needs.DATA` and gets the scoring batch."""
    from lightning_panning.core import METHODS, Scorer, ScoringContext, register_method, register_scorer
    from lightning_panning.core.scorers import SCORERS, Needs

    batches: list[Any] = []

    @register_scorer("test_input_activity")
    class InputActivity(Scorer):
        needs = Needs.DATA | Needs.OWN_PASSES

        def saliency(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
            batches.append(ctx.batch)
            return {n: w * ctx.batch[0].abs().mean() for n, w in ctx.theta.items()}

    try:
        register_method("test_activity", scorers=("test_input_activity",), rounds=2)
        cb = PanningCallback(0.9, "test_activity", verbose=False, log_figure=False)
        trainer(tmp_path, callbacks=[cb], max_steps=1).fit(TinyNet(), DataLoader(xy_dataset(), batch_size=16))
        assert len(batches) == 2 and all(b is not None and b[0].shape == (40, 1, 8, 8) for b in batches)
        assert cb.summary["kept_weights"] == int(sum(m.numel() for m in cb.masks.values()) * 0.1 + 1e-6)  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="already registered"):
            register_method("test_activity", scorers=("snip",))
    finally:
        SCORERS.pop("test_input_activity")
        METHODS.pop("test_activity", None)


def test_meta_device_model_gets_our_error() -> None:
    with torch.device("meta"):
        model = TinyNet()
    with pytest.raises(ValueError, match=r"TinyNet has parameters on the meta device \(net\.0\.weight.*to_empty"):
        callback().pruner.parameters(model)


# ---------------------------------------------------------------------------------------------------------------------
# 7. observability


def test_summary_goes_to_csv_and_tensorboard_with_figures(tmp_path: Path) -> None:
    cb = callback(log_figure=True)
    csv = CSVLogger(tmp_path, name="csv")
    tb = TensorBoardLogger(tmp_path, name="tb")
    trainer(tmp_path, callbacks=[cb], logger=[csv, tb], max_steps=1).fit(
        TinyNet(), DataLoader(xy_dataset(), batch_size=16)
    )
    metrics = Path(csv.log_dir, "metrics.csv").read_text()
    for key in ("pruning/nominal_sparsity", "pruning/effective_sparsity", "pruning/density/net.0.weight",
                "pruning/seconds", "pruning/round/weight_grasp", "pruning/target", "pruning/output_spread"):
        assert key in metrics
    assert "target" in Path(csv.log_dir, "hparams.yaml").read_text()
    for logger in (csv, tb):
        assert Path(logger.log_dir, "pruning_layer_density.png").stat().st_size > 1000
        assert Path(logger.log_dir, "pruning_summary.json").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(tb.log_dir, size_guidance={"images": 0}).Reload()
    assert "pruning/layer_density" in events.Tags()["images"]
    assert "pruning/nominal_sparsity" in events.Tags()["scalars"]
    assert cb.summary["figure_files"]["CSVLogger"].endswith(".png")


def test_wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="panning-test")
    cb = callback(log_figure=True)
    t = trainer(tmp_path, callbacks=[cb], logger=logger, max_steps=1)
    t.fit(TinyNet(), DataLoader(xy_dataset(), batch_size=16))
    run = logger.experiment
    assert run.summary["pruning/nominal_sparsity"] == pytest.approx(cb.summary["nominal_sparsity"])
    assert "pruning/layer_density" in run.summary.keys()
    assert run.config["pruning"]["target"] == 0.9
    run.finish()
    assert list(Path(tmp_path, "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.mark.parametrize("enable_progress_bar", [True, False])
def test_progress_bar_follows_the_trainer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], enable_progress_bar: bool
) -> None:
    cb = callback(verbose=True)
    trainer(tmp_path, callbacks=[cb], max_steps=1, enable_progress_bar=enable_progress_bar).fit(
        TinyNet(), DataLoader(xy_dataset(), batch_size=16)
    )
    err = capsys.readouterr().err
    assert ("panning → 0.9" in err) is enable_progress_bar


# ---------------------------------------------------------------------------------------------------------------------
# 2/8. every error path


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"target": 1.0}, r"`target`.*\(0, 1\).*1\.0"),
        ({"target": 0.0}, r"`target`.*0\.0"),
        ({"target": "0.9"}, r"`target`.*'0\.9'"),
        ({"method": "prune_it"}, r"`method` must be one of \[.*'panning'.*got 'prune_it'"),
        ({"loss": "mse"}, r"`loss`.*'auto'.*'mse'"),
        ({"shuffle_masks": 1}, r"`shuffle_masks`.*1"),
        ({"dataloader": [1, 2]}, r"`dataloader`.*DataLoader.*\[1, 2\]"),
        ({"log_figure": None}, r"`log_figure`.*None"),
        ({"verbose": "no"}, r"`verbose`.*'no'"),
        ({"options": [("rounds", 2)]}, r"`options` must be None or a dict"),
        ({"options": {"roundz": 2}}, r"`options` has unknown keys \['roundz'\]; allowed: \[.*'rounds'"),
        ({"options": {"loss_fn": len}}, r"`options` may not set \['loss_fn'\].*`loss=`"),
        ({"options": {"rounds": 0}}, r"`options`.*`rounds`.*0"),
        ({"options": {"rounds": 2.5}}, r"`options`.*`rounds`.*2\.5"),
        ({"options": {"per_class": 0}}, r"`per_class`.*≥ 1.*0"),
        ({"options": {"num_classes": 0}}, r"`num_classes`.*0"),
        ({"options": {"normalization": "l2"}}, r"`normalization` 'l2'; allowed: \['rms'"),
        ({"options": {"schedule": "cosine"}}, r"`schedule` 'cosine'; allowed: \['exponential'"),
        ({"options": {"temperature": 0}}, r"`temperature`.*> 0.*0"),
        ({"options": {"seed": -1}}, r"`seed`.*-1"),
        ({"options": {"include": 3}}, r"`include`.*3"),
        ({"options": {"exclude": [1]}}, r"`exclude`.*\[1\]"),
        ({"options": {"masked_data_scores": "yes"}}, r"`masked_data_scores`.*'yes'"),
        ({"options": {"train_mode": 1}}, r"`train_mode`.*1"),
        ({"options": {"predicate": "net.*"}}, r"`predicate`.*'net\.\*'"),
        ({"options": {"scorers": ["snip", "nope"]}}, r"Unknown scorer 'nope'"),
        ({"options": {"weights": {"magnitude": 1.0}}}, r"`weights` names scorers \['magnitude'\].*allowed"),
        ({"options": {"weights": {"snip": -1.0}}}, r"weights.*-1\.0"),
        ({"options": {"weights": [[0.5, {"snip": 1.0}]]}}, r"table.*1\.0"),
        ({"options": {"weights": "table3"}}, r"`weights`.*'table3'"),
    ],
)
def test_invalid_arguments_fail_in_init(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        PanningCallback(**kwargs)


def test_nothing_prunable_fails_before_training(tmp_path: Path) -> None:
    model = NothingPrunable()
    data = TensorDataset(torch.randn(8, 4), torch.arange(8) % 2)
    with pytest.raises(ValueError, match="no prunable parameters"):
        trainer(tmp_path, callbacks=[callback()], max_steps=1).fit(model, DataLoader(data, batch_size=4))
    assert not model.trained


def test_classification_loss_without_labels_fails_before_training(tmp_path: Path) -> None:
    model = DictLossModule()
    with pytest.raises(ValueError, match=r"loss='classification' needs .* integer labels"):
        trainer(tmp_path, callbacks=[callback(loss="classification")], max_steps=1).fit(
            model, DataLoader(DictBatches(), batch_size=8)
        )
    assert model.calls == 0


def test_training_step_loss_with_manual_optimization_fails(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="manual optimization"):
        trainer(tmp_path, callbacks=[callback(loss="training_step")], max_steps=1).fit(
            TinyNet(manual=True), DataLoader(xy_dataset(), batch_size=8)
        )


def test_empty_training_data_fails_before_training(tmp_path: Path) -> None:
    empty = TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="data given for the scoring batch is empty"):
        trainer(tmp_path, callbacks=[callback()], max_steps=1).fit(TinyNet(), DataLoader(empty, batch_size=8))


def test_too_few_samples_per_class_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="per_class=40"):
        trainer(tmp_path, callbacks=[callback(per_class=40)], max_steps=1).fit(
            TinyNet(), DataLoader(xy_dataset(), batch_size=8)
        )


def test_training_step_without_a_loss_is_a_clear_error(tmp_path: Path) -> None:
    class ReturnsNothing(DictLossModule):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return None

    with pytest.raises(TypeError, match="scalar loss tensor"):
        trainer(tmp_path, callbacks=[callback()], max_steps=1).fit(
            ReturnsNothing(), DataLoader(DictBatches(), batch_size=8)
        )


# ---------------------------------------------------------------------------------------------------------------------
# 8. jsonargparse / LightningCLI


def test_serialisable_by_jsonargparse() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--callback", type=PanningCallback)
    cfg = parser.parse_object(
        {
            "callback": {
                "class_path": "lightning_panning.callbacks.PanningCallback",
                "init_args": {
                    "target": 0.95,
                    "method": "panning",
                    "options": {
                        "rounds": 7,
                        "weights": [[0.9, {"synflow": 0.5, "snip": 0.5}], [1.0, {"grasp": 1.0}]],
                        "include": ["net.*"],
                        "train_mode": False,
                    },
                    "loss": "training_step",
                },
            }
        }
    )
    dumped = parser.dump(cfg)
    assert "weights" in dumped and "0.95" in dumped
    cb = parser.instantiate(cfg).callback
    assert isinstance(cb, PanningCallback) and cb.pruner.rounds == 7 and cb.pruner.train_mode is False
    assert cb.pruner.weights.table == [(0.9, {"synflow": 0.5, "snip": 0.5}), (1.0, {"grasp": 1.0})]
    assert cb.pruner.include == ["net.*"] and cb.loss == "training_step"


def test_typed_settings_and_a_panning_object_through_jsonargparse() -> None:
    """`method` resolves a `Panning` by class_path; typed keyword arguments are type-checked by the parser."""
    from jsonargparse import ArgumentParser

    from lightning_panning.core import LayerQuotas

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callback", type=PanningCallback)
    cfg = parser.parse_object(
        {
            "callback": {
                "class_path": "lightning_panning.callbacks.PanningCallback",
                "init_args": {
                    "target": 0.9,
                    "method": {
                        "class_path": "lightning_panning.Panning",
                        "init_args": {"scorers": ["snip", "grasp"], "weights": {"snip": 0.5, "grasp": 0.5},
                                      "selector": "erk", "rounds": 3},
                    },
                    "seed": 4,
                    "micro_batch": 8,
                },
            }
        }
    )
    cb = parser.instantiate(cfg).callback
    assert isinstance(cb.pruner.selector, LayerQuotas) and cb.pruner.rounds == 3
    assert cb.pruner.seed == 4 and cb.pruner.micro_batch == 8 and list(cb.pruner.scorers) == ["snip", "grasp"]
    bad = {"callback": {"class_path": "lightning_panning.callbacks.PanningCallback",
                        "init_args": {"target": 0.9, "rounds": "many"}}}
    with pytest.raises(Exception, match="rounds"):
        parser.parse_object(bad)
