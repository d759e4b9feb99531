"""Shared fixtures of the runtime tests: one tiny model (height 128) exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.model.session import ModelSession

TEST_HEIGHT = 128


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised network exported to ONNX + manifest at height 128 (seeded)."""
    from training.model import build_model
    from training.onnx.export import export_onnx  # the tests need the [train] extra to build their model

    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(build_model(seed=3), path, height=TEST_HEIGHT, version="test-0")
    return path


@pytest.fixture(scope="session")
def tiny_session(tiny_model: Path) -> ModelSession:
    """One CPU session of the tiny model, shared by the tests that only read from it."""
    return ModelSession.load(tiny_model, device="cpu")
