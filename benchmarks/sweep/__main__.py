"""``python -m benchmarks.sweep``: the same command as ``python benchmarks/sweep.py``."""

import sys

from benchmarks.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
