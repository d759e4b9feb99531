"""The explorer says when the first UMAP on this computer has to compile (issue 16)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.models import explorer as explorer_module
from app.models.explorer import ExplorerState
from inference.formats import Embeddings, write_embeddings
from inference.latent import projection
from inference.latent.projection import ProjectionParams
from inference.latent.warmup import UmapWarmUp


@pytest.mark.parametrize("compiled", [False, True])
def test_progress_text_says_the_first_umap_compiles(
    qtbot: Any, make_state: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    monkeypatch.setattr(explorer_module, "umap_compiled", lambda: compiled)
    background = UmapWarmUp(time.sleep, (60,))  # a compile in progress: the projection waits for it
    monkeypatch.setattr(projection, "UMAP_WARM_UP", background)
    background.start()
    z = np.random.default_rng(0).normal(size=(20, 496)).astype(np.float32)
    path = write_embeddings(tmp_path / "z.npz", Embeddings(tuple(f"k{i}" for i in range(20)), z, "t"))
    state = make_state()
    ex = ExplorerState(state, cache_dir=tmp_path / "projections")
    ex.params = ProjectionParams(method="umap")
    seen: list[str] = []
    ex.busy_changed.connect(lambda task, *_: seen.append(task))
    try:
        ex.load_embeddings(path)
        qtbot.waitUntil(lambda: any(t.startswith("UMAP of 20 images") for t in seen), timeout=30000)
        task = next(t for t in seen if t.startswith("UMAP of 20 images"))
        assert ("compiling" in task) is not compiled
        ex.cancel()
        qtbot.waitUntil(lambda: not state.pool.running(), timeout=30000)
    finally:
        background.stop()
