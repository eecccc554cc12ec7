"""Timing one call of a function, robust to a machine that other processes load."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["seconds_per_call"]


def seconds_per_call(fn: Callable[[], object], device: torch.device, budget: float = 0.02, repeats: int = 5) -> float:
    """Best-of-``repeats`` seconds per call of ``fn``, each repeat running about ``budget / repeats`` seconds.

    The best (not the mean) repeat is the one least disturbed by other processes. On CUDA the device is
    synchronised around each repeat. ``fn`` is called once first as a warm-up.

    Example:
        >>> seconds_per_call(lambda: sum(range(100)), torch.device("cpu")) > 0
        True
    """

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, min(1000, int(budget / repeats / once)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - start) / calls)
    return best
