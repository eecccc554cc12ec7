"""Tests of where sweep cells run (local processes, a local Ray instance) and of the in-memory data of fast cells."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from benchmarks.sweep.backends import LocalBackend, RayBackend, make_backend
from benchmarks.sweep.cell import SweepConfig, run_cell
from benchmarks.sweep.data import DeviceTensorDataset, InMemoryDataModule, device_loader, to_device_dataset
from benchmarks.sweep.profiles import PROFILES, Cell
from benchmarks.sweep.records import cell_key, load_records
from benchmarks.sweep.run import run_sweep
from lightning_panning.data import DigitsDataModule, MNISTDataModule


def pid_runner(cell: Cell, config: SweepConfig) -> Mapping[str, Any]:
    """A picklable fake runner that says which process ran the cell."""
    time.sleep(0.2)
    return {"test_acc": 50.0 + cell.seed, "nominal_sparsity": cell.sparsity, "pid": os.getpid()}


def stubborn_runner(cell: Cell, config: SweepConfig) -> Mapping[str, Any]:
    """A picklable fake runner that, like a worker inside ``Trainer.fit``, does not end on SIGTERM."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    (config.out_dir / f"started-{os.getpid()}").touch()
    time.sleep(300)
    return {"test_acc": 0.0, "nominal_sparsity": cell.sparsity}


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class NullProgress:
    def start(self, total: int, skipped: int) -> None: ...

    def cell_started(self, cell: Cell) -> None: ...

    def cell_finished(self, cell: Cell, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class StopAfterFirst(NullProgress):
    def cell_finished(self, cell: Cell, record: Mapping[str, Any]) -> None:
        raise KeyboardInterrupt


def _smoke(tmp_path: Path, **overrides: Any) -> SweepConfig:
    profile = PROFILES["smoke"].override(**{"rounds": 3, "train_subset": 128, **overrides})
    return SweepConfig(profile=profile, out_dir=tmp_path / "out", accelerator="cpu", command="pytest",
                       report_every_cell=False)  # fmt: skip


def _keys(config: SweepConfig) -> Counter:
    return Counter(cell_key(r) for r in load_records(config.out_dir / "runs.jsonl") if r["status"] == "ok")


# -- local backend ------------------------------------------------------------------------------------------------------


def test_local_jobs_run_cells_in_worker_processes_and_the_driver_records_them(tmp_path: Path) -> None:
    config = _smoke(tmp_path, methods=("dense", "random"), sparsities=(0.9,), seeds=(0, 1))
    # interrupted after the first result: the other cells are cancelled or stopped, the finished one is kept
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, runner=pid_runner, progress=StopAfterFirst(), backend=LocalBackend(jobs=2))
    assert sum(_keys(config).values()) == 1
    outcome = run_sweep(config, runner=pid_runner, progress=NullProgress(), backend=LocalBackend(jobs=2))
    assert len(outcome.ran) == 3 and len(outcome.skipped) == 1 and not outcome.failed
    rows = load_records(config.out_dir / "runs.jsonl")
    assert len(rows) == 4 and os.getpid() not in {r["pid"] for r in rows}  # ran in worker processes
    assert all(r["backend"] == "local" and r["num_threads"] >= 1 and r["torch"] for r in rows)
    assert sorted((r["method"], r["seed"]) for r in rows) == [("dense", 0), ("dense", 1), ("random", 0), ("random", 1)]
    keys = _keys(config)
    assert len(keys) == 4 and set(keys.values()) == {1}  # every cell finished exactly once


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_sigterm_to_the_driver_stops_workers_that_ignore_it_and_records_nothing(tmp_path: Path) -> None:
    config = _smoke(tmp_path, methods=("dense", "random"), sparsities=(0.9,))
    config.out_dir.mkdir(parents=True)
    before = {p.pid for p in multiprocessing.active_children()}

    def kill_driver_once_both_run() -> None:
        deadline = time.monotonic() + 120
        while len(list(config.out_dir.glob("started-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)  # what `kill PID` or a session's end sends

    killer = threading.Thread(target=kill_driver_once_both_run, daemon=True)
    killer.start()
    handler = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    with pytest.raises(SystemExit) as stopped:
        run_sweep(config, runner=stubborn_runner, progress=NullProgress(), backend=LocalBackend(jobs=2))
    killer.join()
    assert stopped.value.code == 128 + signal.SIGTERM
    pids = [int(f.name.split("-")[1]) for f in config.out_dir.glob("started-*")]
    assert len(pids) == 2  # both cells were running
    assert [p for p in multiprocessing.active_children() if p.pid not in before] == [], "workers left running"
    assert not [pid for pid in pids if _running(pid)], "worker processes still exist"
    assert time.monotonic() - started < 120  # stopped, not waited out (each worker sleeps 300 s)
    assert not load_records(config.out_dir / "runs.jsonl")
    assert signal.getsignal(signal.SIGTERM) == handler  # the driver's handler is restored


def test_local_backend_rejects_bad_jobs() -> None:
    with pytest.raises(ValueError, match="`jobs` must be a positive integer, got 0"):
        LocalBackend(jobs=0)
    with pytest.raises(ValueError, match="options of --backend ray"):
        make_backend("local", address="auto")


# -- Ray backend on a local Ray instance --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_backend_records_resumes_and_never_reruns_a_finished_cell(tmp_path: Path, local_ray: Any) -> None:
    """The smoke profile with real Lightning runs on Ray workers, an interruption, and the resumed sweep."""
    config = _smoke(tmp_path, methods=("panning", "random"), sparsities=(0.9,))
    outcome = run_sweep(config, progress=NullProgress(), backend=RayBackend())
    rows = load_records(config.out_dir / "runs.jsonl")
    assert len(outcome.ran) == 2 and not outcome.failed, [r.get("error") for r in rows]
    assert all(r["backend"] == "ray" and r["device"] == "cpu" and 0 <= r["test_acc"] <= 100 for r in rows)
    assert all(r["accelerator"] == "cpu" for r in rows)
    assert (config.out_dir / "summary.md").exists()

    again = run_sweep(config, progress=NullProgress(), backend=RayBackend())
    assert again.ran == [] and len(again.skipped) == 2

    bigger = _smoke(tmp_path, methods=("panning", "random"), sparsities=(0.9, 0.99))
    with pytest.raises(KeyboardInterrupt):  # the driver stops after the first new result; the other task is cancelled
        run_sweep(bigger, progress=StopAfterFirst(), backend=RayBackend())
    assert sum(_keys(bigger).values()) == 3
    resumed = run_sweep(bigger, progress=NullProgress(), backend=RayBackend())
    assert len(resumed.ran) == 1 and len(resumed.skipped) == 3
    keys = _keys(bigger)
    assert len(keys) == 4 and set(keys.values()) == {1}


# -- in-memory data -----------------------------------------------------------------------------------------------------


def test_in_memory_batches_equal_the_dataloaders() -> None:
    """Same order (same global RNG state) and the same values as DataLoader(shuffle=True) over the dataset."""
    inner = DigitsDataModule(batch_size=50, val_split=0, train_subset=300, seed=3)
    inner.setup("fit")
    memory = InMemoryDataModule(DigitsDataModule(batch_size=50, val_split=0, train_subset=300, seed=3), device="cpu")
    memory.setup("fit")
    torch.manual_seed(7)
    plain = [(x.clone(), y.clone()) for x, y in DataLoader(inner.train_dataset, batch_size=50, shuffle=True)]
    torch.manual_seed(7)
    fast = list(memory.train_dataloader())
    assert len(plain) == len(fast) == memory.num_train_batches() == 6
    for (x1, y1), (x2, y2) in zip(plain, fast, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    test = list(memory.test_dataloader())
    assert sum(len(y) for _, y in test) == len(inner.test_dataset)
    assert memory.train_dataset is not None and memory.train_dataset.classes == [str(c) for c in range(10)]


def test_in_memory_cell_trains_exactly_like_the_dataloader_cell(tmp_path: Path, one_thread: None) -> None:
    """The whole cell (pruning with its class-balanced batch, training, test) gives the same numbers."""
    results = []
    for in_memory in (False, True):
        config = _smoke(tmp_path, in_memory=in_memory)
        results.append(run_cell(Cell("panning", 0.9, 0), config))
    plain, fast = results
    for key in ("test_acc", "test_loss", "effective_sparsity", "kept_weights", "optimizer_steps"):
        assert plain[key] == fast[key], key


def test_mnist_in_memory_equals_the_transforms_bit_for_bit(datasets_root: Path) -> None:
    dm = MNISTDataModule(data_dir=str(datasets_root), download=False, val_split=0, train_subset=1000, seed=1)
    dm.setup("fit")
    fast = to_device_dataset(dm.train_dataset, "cpu")
    assert len(fast) == 1000 and fast.classes[0].startswith("0")
    for i in (0, 1, 500, 999):
        x, y = dm.train_dataset[i]
        fx, fy = fast[i]
        assert torch.equal(x, fx) and int(y) == int(fy)


def test_in_memory_refuses_datasets_with_other_transforms() -> None:
    from torchvision import transforms
    from torchvision.datasets import MNIST

    class Fake(MNIST):
        def __init__(self) -> None:  # no files: only the attributes the check reads
            self.transform = transforms.Compose([transforms.RandomCrop(28, padding=4), transforms.ToTensor()])
            self.target_transform = None

    with pytest.raises(ValueError, match="Compose\\(\\[ToTensor\\(\\), Normalize\\(\\)\\]\\)"):
        to_device_dataset(Fake(), "cpu")
    with pytest.raises(ValueError, match="--no-in-memory"):
        to_device_dataset(torch.utils.data.TensorDataset(torch.zeros(2, 1, 4, 4)), "cpu")
    with pytest.raises(ValueError, match="same device"):
        DeviceTensorDataset(torch.zeros(2, 1, 4, 4), torch.zeros(3, dtype=torch.long))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_in_memory_cell_on_the_gpu(tmp_path: Path) -> None:
    dm = DigitsDataModule(val_split=0)
    dm.setup("fit")
    dataset = to_device_dataset(dm.train_dataset, "cuda")
    x, y = next(iter(device_loader(dataset, 16, shuffle=True)))
    assert x.is_cuda and y.is_cuda
    config = _smoke(tmp_path, in_memory=True)
    config.accelerator = "gpu"
    result = run_cell(Cell("panning", 0.9, 0), config)
    assert result["device"] == "cuda" and 0.0 <= result["test_acc"] <= 100.0
