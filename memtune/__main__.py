"""``python -m memtune``: the same command line as ``memtune``."""

from __future__ import annotations

import sys

from memtune.cli import main

if __name__ == "__main__":
    sys.exit(main())
