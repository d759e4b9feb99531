"""UMAP's first use on a fresh install: compile its numba kernels ahead, in the background.

numba compiles umap-learn's kernels on the first UMAP (43 s for 70 points on a 2-core machine) and
keeps them in a per-user disk cache (:func:`inference.latent.projection.numba_cache_dir`); later
sessions load them in seconds. The app starts :data:`UMAP_WARM_UP` once it is first idle after
start-up (the first model run done): a spawned process runs a UMAP of 64 random points along the
explorer's path and marks the cache compiled. It runs at normal priority on purpose: a user who asks
for a UMAP meanwhile waits for it, and an unprivileged process cannot raise a lowered priority again.
:func:`inference.latent.projection.project` waits for a warm-up in progress instead of compiling
the same kernels at the same time; :func:`umap_compiled` tells the explorer whether to say that the
first UMAP is compiling. benchmarks/bench_explorer.py measures the options.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ProjectionCancelled
from inference.formats import Embeddings

__all__ = ["umap_compiled", "warm_up_umap", "UmapWarmUp", "UMAP_WARM_UP"]


def _warm_marker() -> Path:
    """A file in the numba cache folder that says UMAP's kernels for these versions are compiled there."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    from inference.latent.projection import numba_cache_dir

    folder = Path(os.environ.get("NUMBA_CACHE_DIR") or numba_cache_dir())
    return folder / f"umap-{v('umap-learn')}-numba-{v('numba')}.compiled"


def umap_compiled() -> bool:
    """True when UMAP's kernels are in the numba disk cache (a first UMAP then takes seconds, not a
    minute of compiling)."""
    return _warm_marker().is_file()


def warm_up_umap() -> None:
    """Compile UMAP's numba kernels into the disk cache: a UMAP of 64 random points along the same
    path as :func:`project` (the explorer's default parameters), then mark the cache compiled."""
    from inference.latent.projection import ProjectionParams, project

    rng = np.random.default_rng(0)
    z = rng.normal(size=(64, 496)).astype(np.float32)
    project(Embeddings(tuple(f"warm-{i}" for i in range(len(z))), z, "warm-up"), ProjectionParams(method="umap"))
    marker = _warm_marker()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("UMAP's numba kernels were compiled into this folder\n", encoding="utf-8")


class UmapWarmUp:
    """UMAP's first-use compilation (about 40 s of one core) in a spawned background process, so
    that the first UMAP a user asks for loads compiled kernels from disk.

    :func:`project` waits for a warm-up in progress rather than compiling the same kernels at the
    same time. Nothing happens when the cache is already compiled."""

    def __init__(self, target: Callable[..., object] = warm_up_umap, args: tuple[object, ...] = ()) -> None:
        self._target, self._args = target, args  # what the process runs (tests hand a stand-in)
        self._process: Any = None

    def start(self) -> bool:
        """Start compiling in the background; False when there is nothing to do."""
        if self.running or umap_compiled():
            return False
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        process = context.Process(target=self._target, args=self._args, name="umap-warm-up", daemon=True)
        process.start()
        self._process = process
        return True

    @property
    def running(self) -> bool:
        return self._process is not None and bool(self._process.is_alive())

    def wait(self, cancelled: Callable[[], bool], poll: float = 0.2) -> None:
        """Until the background compilation ends (ProjectionCancelled when ``cancelled()``)."""
        while self.running:
            if cancelled():
                raise ProjectionCancelled("projection cancelled")
            self._process.join(poll)

    def stop(self) -> None:
        if self.running:
            self._process.terminate()
            self._process.join(5)


#: The process-wide warm-up (the app starts it; :func:`project` waits for it).
UMAP_WARM_UP = UmapWarmUp()
