"""The public surface of ``inference`` resolves, and importing it stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import inference


def test_every_public_name_resolves() -> None:
    for name in inference.__all__:
        assert getattr(inference, name) is not None, name


def test_each_public_name_is_public_where_it_lives() -> None:
    for module_name, names in inference._EXPORTS.items():
        module = importlib.import_module(f"inference.{module_name}")
        assert set(names) <= set(module.__all__), (module_name, set(names) - set(module.__all__))


def test_import_is_light() -> None:
    heavy = "('onnxruntime', 'sklearn', 'umap', 'PySide6', 'torch')"
    code = f"import sys, inference; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
