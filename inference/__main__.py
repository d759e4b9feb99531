"""``python -m inference``: the headless command line (see :mod:`inference.cli`)."""

from __future__ import annotations

import multiprocessing
import sys

from inference.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen bundle starts its decode workers through this entry
    sys.exit(main())
