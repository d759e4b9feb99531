"""Speed of the latent-space explorer: projections and scatter rendering. Prints figures.

    python benchmarks/bench_explorer.py                 # everything (a few minutes on 2 cores)
    python benchmarks/bench_explorer.py --skip-umap     # PCA and rendering only
    python benchmarks/bench_explorer.py --first-umap-only  # the first UMAP on a fresh install, by option

- PCA of 100,000 x 496 latent vectors (target <= 2 s);
- the first UMAP of 70 points on a fresh install (an empty NUMBA_CACHE_DIR): compiled when asked,
  as before; from the disk cache (a later session); and with the compile started in a background
  process at start-up (inference.latent.warmup) and the UMAP asked for --first-umap-delay s later
  (target <= 10 s);
- UMAP of 10,000 in a fresh process with an empty numba cache (cold: first session ever), in a
  second fresh process with that cache (warm: every later session), and repeated in-process;
  with a seed (one thread, reproducible) and without (every core);
- scatter frames per second of the real explorer panel rendered offscreen (QT_QPA_PLATFORM=
  offscreen) into a QImage after each view-range change, at 50,000 and 100,000 points (targets
  >= 20 and >= 10 fps).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def clustered(n: int, dim: int = 496, clusters: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (clusters, dim)).astype(np.float32)
    z = centres[np.arange(n) % clusters] + rng.normal(0, 0.3, (n, dim)).astype(np.float32)
    return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)


def bench_pca() -> None:
    from inference.latent.projection import pca

    z = clustered(100_000)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        pca(z, 2)
        times.append(time.perf_counter() - t0)
    print(
        f"PCA of 100,000 x 496: median {np.median(times):.2f} s "
        f"(runs {', '.join(f'{t:.2f}' for t in times)}; target <= 2 s)"
    )


_UMAP_CHILD = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np
from inference.formats import Embeddings
from inference.latent.projection import ProjectionParams, project, _import_umap
sys.path.insert(0, {here!r})
from bench_explorer import clustered
z = clustered(10_000)
emb = Embeddings(tuple(f"k{{i}}" for i in range(len(z))), z, "bench")
t1 = time.perf_counter(); _import_umap(); t_import = time.perf_counter() - t1
out = {{"import": t_import}}
for name, reproducible in (("seeded", True), ("parallel", False)):
    t1 = time.perf_counter()
    project(emb, ProjectionParams(method="umap", reproducible=reproducible))
    out[name] = time.perf_counter() - t1
t1 = time.perf_counter()
project(emb, ProjectionParams(method="umap", reproducible=False, n_neighbors=16))
out["parallel_again"] = time.perf_counter() - t1
out["process"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def bench_umap() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        code = _UMAP_CHILD.format(root=str(ROOT), here=str(Path(__file__).parent))
        for session in ("cold (empty numba cache)", "warm (second session)"):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            if res.returncode:
                print(f"UMAP {session}: failed\n{res.stderr[-2000:]}")
                return
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(
                f"UMAP of 10,000 x 496, {session}: import+numba {r['import']:.1f} s, first UMAP (seeded, 1 thread) "
                f"{r['seeded']:.1f} s, unseeded (all cores) {r['parallel']:.1f} s, "
                f"unseeded again {r['parallel_again']:.1f} s; "
                f"whole process {r['process']:.1f} s (target <= 10 s once numba is warm)"
            )


_FIRST_CHILD = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from inference.formats import Embeddings
from inference.latent.projection import ProjectionParams, project
from inference.latent.warmup import UMAP_WARM_UP, umap_compiled
sys.path.insert(0, {here!r})
from bench_explorer import clustered
out = {{"compiled_at_start": umap_compiled()}}
if {warm!r}:
    out["started"] = UMAP_WARM_UP.start()
    time.sleep({delay!r})  # the user opens a study and looks at it before opening the explorer
z = clustered(70)
emb = Embeddings(tuple(f"k{{i}}" for i in range(len(z))), z, "bench")
t1 = time.perf_counter()
project(emb, ProjectionParams(method="pca"))
out["pca"] = time.perf_counter() - t1
t1 = time.perf_counter()
project(emb, ProjectionParams(method="umap"))
out["umap"] = time.perf_counter() - t1
out["process"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def bench_first_umap(delay: float) -> None:
    """The first UMAP of 70 points on a fresh install (empty numba cache), by option."""
    here = str(Path(__file__).parent)

    def child(cache: str, warm: bool, wait: float) -> dict[str, float]:
        code = _FIRST_CHILD.format(root=str(ROOT), here=here, warm=warm, delay=wait)
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(res.stderr[-2000:])
        out: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
        return out

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        cold = child(a, False, 0.0)
        print(f"first UMAP of 70, fresh install, compiled when asked (before): {cold['umap']:.1f} s "
              f"(PCA meanwhile: {cold['pca'] * 1000:.0f} ms)")  # fmt: skip
        warm = child(a, False, 0.0)
        print(f"UMAP of 70 in a later session (kernels cached on disk): {warm['umap']:.1f} s")
        ahead = child(b, True, delay)
        print(f"first UMAP of 70, fresh install, compile started in the background at start-up and asked "
              f"{delay:g} s later (now): {ahead['umap']:.1f} s after asking (target <= 10 s)")  # fmt: skip
        again = child(b, True, 0.0)
        print(f"  ... the next session starts no warm-up ({not again.get('started', True)}) and takes "
              f"{again['umap']:.1f} s")  # fmt: skip


def bench_scatter(sizes: list[int], frames: int) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QApplication, QWidget

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    app = QApplication.instance() or QApplication([])
    from app.models.settings import Settings
    from app.models.state import AppState
    from app.widgets.explorer import ExplorerPanel
    from app.widgets.main_window import apply_dark_theme
    from inference.formats import Embeddings, write_embeddings

    apply_dark_theme(app)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(Path(tmp) / "s.ini")
        settings.cache_dir = Path(tmp) / "cache"
        state = AppState(settings)
        panel = ExplorerPanel(state)
        panel.resize(1000, 800)
        panel.show()
        for n in sizes:
            sites = {"source": tuple(f"site-{i % 12}" for i in range(n))}  # 12 colours, like the clusters
            emb = Embeddings(tuple(f"k{i}" for i in range(n)), clustered(n), "bench", meta=sites)
            path = write_embeddings(Path(tmp) / f"e{n}.npz", emb)
            panel.explorer.load_embeddings(path)
            t0 = time.perf_counter()
            while (len(panel.explorer.keys) != n or state.pool.running()) and time.perf_counter() - t0 < 120:
                app.processEvents()
                time.sleep(0.005)
            panel.set_colour_mode("source")  # 12 categories, 10 colours
            widget = panel.plot.viewport()
            image = QImage(widget.size(), QImage.Format.Format_RGB32)
            xy = panel.explorer.xy
            lo, hi = xy.min(axis=0).astype(float), xy.max(axis=0).astype(float)
            span = hi - lo
            rng = np.random.default_rng(1)

            def frame(
                zoom: float,
                lo: np.ndarray = lo,
                span: np.ndarray = span,
                rng: np.random.Generator = rng,
                widget: QWidget = widget,
                image: QImage = image,
            ) -> None:
                c = lo + span * rng.uniform(0.3, 0.7, 2)
                half = span * zoom / 2
                panel.view.setRange(
                    xRange=(c[0] - half[0], c[0] + half[0]), yRange=(c[1] - half[1], c[1] + half[1]), padding=0
                )
                app.processEvents()
                widget.render(image)

            for _ in range(3):
                frame(1.0)  # warm the pixmap atlas
            for label, zoom in (("whole map", 1.1), ("zoomed in 4x", 0.25)):
                t0 = time.perf_counter()
                for _ in range(frames):
                    frame(zoom)
                fps = frames / (time.perf_counter() - t0)
                target = 20 if n <= 50_000 else 10
                print(f"scatter {n:,} points, {label}: {fps:.1f} renders/s after setRange (target >= {target})")
            image.save(str(Path(tempfile.gettempdir()) / f"bench_explorer_{n}.png"))
        state.shutdown()
        panel.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-umap", action="store_true")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--first-umap-delay", type=float, default=20.0, help="seconds from start-up to the first UMAP")
    ap.add_argument("--first-umap-only", action="store_true", help="only the first UMAP on a fresh install")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPU(s); load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    bench_pca()
    if not args.skip_umap:
        bench_first_umap(args.first_umap_delay)
        if args.first_umap_only:
            return
        bench_umap()
    bench_scatter([50_000, 100_000], args.frames)


if __name__ == "__main__":
    main()
