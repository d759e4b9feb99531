"""UMAP's first-use compilation ahead of time: the marker, the background process, and project()
waiting for it instead of compiling the same kernels at the same time."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from inference.errors import ProjectionCancelled
from inference.formats import Embeddings
from inference.latent import projection, warmup
from inference.latent.projection import ProjectionParams, project
from inference.latent.warmup import UmapWarmUp, umap_compiled, warm_up_umap


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    return tmp_path / "numba"


def test_nothing_to_do_once_compiled(fresh_cache: Path) -> None:
    assert not umap_compiled()
    marker = warmup._warm_marker()
    assert marker.parent == fresh_cache and "umap-" in marker.name
    marker.parent.mkdir(parents=True)
    marker.write_text("compiled\n")
    assert umap_compiled()
    assert UmapWarmUp(time.sleep, (30,)).start() is False  # no process started


def test_project_waits_for_the_warm_up_and_can_be_cancelled(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    background = UmapWarmUp(time.sleep, (60,))  # a stand-in for the compiling process
    monkeypatch.setattr(projection, "UMAP_WARM_UP", background)
    assert background.start() and background.running
    z = np.random.default_rng(0).normal(size=(12, 496)).astype(np.float32)
    emb = Embeddings(tuple(f"k{i}" for i in range(12)), z, "t")
    asked = time.monotonic()
    calls = []

    def cancelled() -> bool:
        calls.append(time.monotonic())
        return time.monotonic() - asked > 1.0

    try:
        with pytest.raises(ProjectionCancelled):
            project(emb, ProjectionParams(method="umap"), cancelled=cancelled)
        assert background.running  # it waited for the warm-up (and never compiled meanwhile)
        assert calls[-1] - asked >= 1.0
    finally:
        background.stop()
    assert not background.running


@pytest.mark.slow
def test_warm_up_compiles_into_the_cache_in_a_background_process(fresh_cache: Path) -> None:
    background = UmapWarmUp(warm_up_umap)
    assert background.start()
    background.wait(lambda: False)
    assert umap_compiled()
    assert list(fresh_cache.rglob("*.nbi"))  # numba's cache index files: kernels on disk
