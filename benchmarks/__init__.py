"""Benchmark scripts and the sweep package (``benchmarks.sweep``); not part of the installed library."""
