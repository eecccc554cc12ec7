"""Where cells run: in this process, in N local processes, or on a Ray cluster.

A backend only executes cells and hands each result back to the driver as it arrives (``on_result``); the driver
(:func:`benchmarks.sweep.run.run_sweep`) decides which cells to run and writes every record itself. So the
records, resume and report semantics are the same for every backend: a finished cell is never run again, and an
interrupted sweep, local or distributed, resumes from what its records hold.

* :class:`LocalBackend` — ``jobs=1``: one cell after another in this process; ``jobs=N``: N worker processes
  (``spawn``), each running one cell at a time. All of them use the same accelerator, so several small cells share
  one GPU.
* :class:`RayBackend` — Ray tasks (``pip install 'ray[default]'``), scheduled by Ray on the resources each cell
  asks for (``cpus_per_cell``, ``gpus_per_cell``; a fraction such as 0.25 puts four cells on one GPU). It connects
  to ``address`` (``"auto"``: the running cluster) or starts a local instance. The workers need
  ``lightning_panning`` installed and the datasets at ``--data-dir``; this package is shipped to them with each
  task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from typing import Any, Protocol

from benchmarks.sweep.cell import CellRunner, SweepConfig, execute_cell
from benchmarks.sweep.profiles import Cell

__all__ = [
    "BACKENDS",
    "RAY_INSTALL",
    "Backend",
    "BackendUnavailableError",
    "LocalBackend",
    "RayBackend",
    "make_backend",
]

#: The backend names of the command line.
BACKENDS: tuple[str, ...] = ("local", "ray")
#: How to install the Ray backend's dependency.
RAY_INSTALL = "pip install 'ray[default]>=2.9'  (in a checkout of lightning-panning: pip install -e '.[ray]')"

#: Seconds a stopped worker gets to end on SIGTERM before it is killed.
STOP_GRACE_SECONDS = 5.0

OnStart = Callable[[Cell], None]
OnResult = Callable[[Cell, dict[str, Any]], None]


class BackendUnavailableError(RuntimeError):
    """A backend whose dependency is not installed."""


class Backend(Protocol):
    """Runs cells and reports each result as it arrives."""

    name: str

    def run(
        self, cells: Sequence[Cell], config: SweepConfig, runner: CellRunner, on_start: OnStart, on_result: OnResult
    ) -> None:
        """Run ``cells``; call ``on_start(cell)`` when one is handed out and ``on_result(cell, result)`` when done."""


def _crashed(err: BaseException) -> dict[str, Any]:
    """The result of a cell whose worker died or could not run it (retried on the next run, like any failure)."""
    return {
        "status": "error",
        "error": f"{type(err).__name__}: {err}",
        "traceback": "".join(traceback.format_exception(err, limit=20)),
        "cell_seconds": 0.0,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM (``kill PID``, a session's end) raises ``SystemExit(143)`` in the main thread.

    Its default action ends the driver at once and leaves the spawned workers training cells whose results nobody
    records; raised, it runs the cleanup that stops them. Outside the main thread nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(children: Sequence[multiprocessing.process.BaseProcess], grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop worker processes: SIGTERM, then SIGKILL for any still alive after ``grace`` seconds.

    A worker inside ``Trainer.fit`` does not end on SIGTERM: Lightning's handler only notes it and stops after the
    current batch, and the worker then waits for the next task of a driver that is gone.
    """
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive():
            child.kill()
            child.join(grace)


class LocalBackend:
    """Cells in this process (``jobs=1``) or in ``jobs`` spawned worker processes on this machine.

    With ``jobs > 1``, an interruption of the driver (Ctrl-C, an error, or SIGTERM, which is turned into
    ``SystemExit`` while the cells run) stops the workers' running cells before it propagates.

    Args:
        jobs: cells run at once. With ``jobs > 1`` and no ``num_threads`` in the config, each worker uses
            ``cpu_count // jobs`` torch threads.

    Raises:
        ValueError: for ``jobs`` that is not a positive integer.
    """

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"`jobs` must be a positive integer, got {jobs!r}.")
        self.jobs = jobs

    def run(
        self, cells: Sequence[Cell], config: SweepConfig, runner: CellRunner, on_start: OnStart, on_result: OnResult
    ) -> None:
        """Run the cells; see the class docstring."""
        if self.jobs == 1:
            for cell in cells:
                on_start(cell)
                on_result(cell, execute_cell(runner, cell, config))
            return
        if config.num_threads is None:
            config = dataclasses.replace(config, num_threads=max(1, (os.cpu_count() or 1) // self.jobs))
        with _sigterm_raises():
            self._run_pool(cells, config, runner, on_start, on_result)

    def _run_pool(
        self, cells: Sequence[Cell], config: SweepConfig, runner: CellRunner, on_start: OnStart, on_result: OnResult
    ) -> None:
        before = {p.pid for p in multiprocessing.active_children()}
        pool = ProcessPoolExecutor(
            max_workers=min(self.jobs, len(cells)), mp_context=multiprocessing.get_context("spawn")
        )
        futures: dict[Future[dict[str, Any]], Cell] = {}
        try:
            for cell in cells:
                futures[pool.submit(execute_cell, runner, cell, config)] = cell
                on_start(cell)
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as err:  # the worker died (BrokenProcessPool) or the task could not be pickled
                    result = _crashed(err)
                on_result(futures[future], result)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            for _ in range(3):  # the pool's workers, and any the pool's manager thread started meanwhile
                workers = [c for c in multiprocessing.active_children() if c.pid not in before]
                if not workers:
                    break
                _stop(workers)
            raise
        pool.shutdown(wait=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise BackendUnavailableError(
            f"--backend ray needs Ray, which cannot be imported here ({type(err).__name__}: {err}). Install it with: "
            f"{RAY_INSTALL}"
        ) from err
    return ray


class RayBackend:
    """Cells as Ray tasks; see the module docstring.

    Args:
        address: Ray cluster address (``"auto"``, ``"ray://host:10001"``, ...); ``None`` connects to a running Ray
            started in this process, else starts a local instance.
        cpus_per_cell: CPUs Ray reserves per cell (also its torch threads unless ``num_threads`` is given).
        gpus_per_cell: GPUs Ray reserves per cell; ``None``: 1 when the accelerator is ``gpu``/``cuda``, 0 for
            ``cpu``, and for ``auto`` 1 if the cluster has GPUs, else 0 (then the cells run on the CPU).

    Raises:
        BackendUnavailableError: when Ray is not installed (the message gives the install command).
        ValueError: for a non-positive ``cpus_per_cell`` or a negative ``gpus_per_cell``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_cell: float = 1.0, gpus_per_cell: float | None = None):
        _import_ray()
        if not cpus_per_cell > 0:
            raise ValueError(f"`cpus_per_cell` must be positive, got {cpus_per_cell!r}.")
        if gpus_per_cell is not None and gpus_per_cell < 0:
            raise ValueError(f"`gpus_per_cell` must be ≥ 0 or None, got {gpus_per_cell!r}.")
        self.address = address
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell

    def _gpus(self, ray: Any, accelerator: str) -> float:
        if self.gpus_per_cell is not None:
            return self.gpus_per_cell
        if accelerator in ("gpu", "cuda"):
            return 1.0
        if accelerator == "auto":
            return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        return 0.0

    def run(
        self, cells: Sequence[Cell], config: SweepConfig, runner: CellRunner, on_start: OnStart, on_result: OnResult
    ) -> None:
        """Submit every cell as a task, then record results in the order they finish; cancel the rest on error."""
        ray = _import_ray()
        import benchmarks.sweep as package

        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False)
        # Ship this package's code with the tasks: the workers need lightning_panning, not this checkout.
        ray.cloudpickle.register_pickle_by_value(package)
        gpus = self._gpus(ray, config.accelerator)
        if config.accelerator == "auto":
            config = dataclasses.replace(config, accelerator="gpu" if gpus > 0 else "cpu")
        if config.num_threads is None:
            config = dataclasses.replace(config, num_threads=max(1, int(self.cpus_per_cell)))
        task = ray.remote(execute_cell).options(num_cpus=self.cpus_per_cell, num_gpus=gpus)
        pending: dict[Any, Cell] = {}
        try:
            for cell in cells:
                pending[task.remote(runner, cell, config)] = cell
                on_start(cell)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as err:  # RayTaskError, WorkerCrashedError, ...
                        result = _crashed(err)
                    on_result(cell, result)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            ray.cloudpickle.unregister_pickle_by_value(package)
            if started:
                ray.shutdown()


def make_backend(
    name: str,
    *,
    jobs: int = 1,
    address: str | None = None,
    cpus_per_cell: float = 1.0,
    gpus_per_cell: float | None = None,
) -> Backend:
    """The backend called ``name`` (one of :data:`BACKENDS`).

    Raises:
        ValueError: for an unknown name, or options of the other backend.
        BackendUnavailableError: ``"ray"`` without Ray installed.

    Example:
        >>> make_backend("local", jobs=2).jobs
        2
        >>> make_backend("slurm")
        Traceback (most recent call last):
        ...
        ValueError: Unknown backend 'slurm'; allowed: ['local', 'ray'].
    """
    if name == "local":
        if address is not None or gpus_per_cell is not None:
            raise ValueError("--address and --gpus-per-cell are options of --backend ray, not of the local backend.")
        return LocalBackend(jobs)
    if name == "ray":
        if jobs != 1:
            raise ValueError(
                f"--jobs is an option of --backend local (got {jobs}); Ray runs as many cells at once as the "
                "cluster's resources allow (--cpus-per-cell, --gpus-per-cell)."
            )
        return RayBackend(address, cpus_per_cell, gpus_per_cell)
    raise ValueError(f"Unknown backend {name!r}; allowed: {list(BACKENDS)}.")
