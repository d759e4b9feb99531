"""The frozen bundle's self-check also runs from source: every decoder, the model, no Qt/torch."""

from __future__ import annotations

import subprocess
import sys


def test_selftest_passes_without_umap() -> None:
    # A fresh interpreter: pytest-qt has already imported Qt into this one.
    command = [sys.executable, "-m", "inference._selftest", "--no-umap"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
