"""The frozen bundle's self-check also runs from source: every decoder, the model, no Qt/torch."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_selftest_passes_without_umap() -> None:
    # A fresh interpreter: pytest-qt has already imported Qt into this one.
    command = [sys.executable, "-m", "inference._selftest", "--no-umap"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout


def test_selftest_names_the_modules_it_could_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from inference import _selftest

    monkeypatch.setitem(sys.modules, "gdcm", None)  # as in a bundle that did not collect it
    monkeypatch.setattr(_selftest, "_FOUND", ("numba", "no_such_module_here"))
    expected = r"could not load gdcm \(ModuleNotFoundError: .*\); no_such_module_here \(not found\)"
    with pytest.raises(AssertionError, match=expected):
        _selftest._imports()
