#!/usr/bin/env python
"""``python benchmarks/sweep.py ...``: the benchmark sweep (the package ``benchmarks/sweep/``; see its ``cli``).

The same command as ``python -m benchmarks.sweep``; run ``--help`` for the options.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
    from benchmarks.sweep.cli import main

    sys.exit(main())
