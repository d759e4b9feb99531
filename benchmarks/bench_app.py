"""The app's time from opening a study to its predictions on screen: prints figures, asserts nothing.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_app.py [--shape 3000x2400] [--repeats 3]

An uncompressed 16-bit 4-view phantom study is written to a temporary folder; the main window
opens it (scan, decode, preprocess, the bundled model at its own height, Monte-Carlo dropout, the
hanging drawn with its captions and the predictions panel) with an empty prediction cache. The
clock stops when all four predictions are in the state and the window has been painted. Reported:
the cold open (the model session loads too), warm opens of other studies (session loaded), and a
reopening served by the prediction cache, each with the number of decodes it asked of the decode
workers (one per image is the least). Last, all the studies are opened together (predictions from
the cache) and, once the next study is prefetched, the move to it is timed. Targets (issues 5, 16):
<= 2 s per 4-view study; moving on shows the next study's predictions at once.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")



def wait_until_shown(app: Any, state: Any, win: Any, t0: float, is_target: Callable[[Any], bool]) -> float:
    """Seconds from ``t0`` until the current study satisfies ``is_target``, every image has its prediction and
    every view shows its image with a caption (the window repainted); gives up after 120 s."""
    while True:
        app.processEvents()
        study = state.files.current_study
        if (
            study is not None
            and is_target(study)
            and all(r.key in state.runner.predictions for r in study.images)
            and all(v.data_shape is not None and v.caption.text() for v in win.viewer.views)
        ):
            break
        if time.perf_counter() - t0 > 120:
            raise SystemExit("gave up after 120 s")
        time.sleep(0.001)
    win.repaint()
    app.processEvents()
    return time.perf_counter() - t0

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="3000x2400", help="rows x columns of each image (default 3000x2400)")
    ap.add_argument("--repeats", type=int, default=3, help="warm opens (each of a new study)")
    args = ap.parse_args()
    rows, cols = (int(v) for v in args.shape.lower().split("x"))

    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    from PySide6.QtWidgets import QApplication

    from app.models.cache import PredictionCache
    from app.models.settings import Settings
    from app.models.state import AppState
    from app.widgets.main_window import MainWindow, apply_dark_theme
    from inference.formats import read_model_manifest
    from inference.model.session import bundled_model_path, physical_cores
    from inference.phantoms.generator import write_study

    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_dark_theme(app)  # type: ignore[arg-type]
    tmp = Path(tempfile.mkdtemp(prefix="bench_app_"))
    studies = []
    t = time.perf_counter()
    for i in range(args.repeats + 1):
        folder = tmp / "studies" / f"S{i}"
        folder.mkdir(parents=True)
        write_study(folder, patient_id=f"B{i}", shape=(rows, cols), seed=100 + i, malignant_side="R",
                    transfer_syntax="explicit", bits_stored=16)  # fmt: skip
        studies.append(folder)
    print(
        f"wrote {len(studies)} uncompressed 16-bit 4-view studies of {rows} x {cols} in {time.perf_counter() - t:.1f} s"
    )

    settings = Settings(tmp / "settings.ini")
    settings.device = "cpu"
    cache = PredictionCache(tmp / "cache")
    state = AppState(settings, cache=cache)
    win = MainWindow(state)
    win.resize(1600, 1000)
    win.show()
    app.processEvents()

    decodes: list[int] = []

    def counted() -> int:
        return int(getattr(state.memory, "decodes", -1))  # -1: a version without the count

    def open_and_wait(folder: Path) -> float:
        before = counted()
        t0 = time.perf_counter()
        state.open_paths([folder])
        shown = wait_until_shown(app, state, win, t0, lambda study: folder in study.images[0].path.parents)
        while state.pool.running():  # the decodes it asked for, prefetching included
            app.processEvents()
            time.sleep(0.001)
        decodes.append(counted() - before)
        return shown

    manifest = read_model_manifest(bundled_model_path())
    cold = open_and_wait(studies[0])
    warm = [open_and_wait(s) for s in studies[1:]]
    cache.clear_memory()
    runs_before = state.runner.model_runs
    cached = open_and_wait(studies[0])
    assert state.runner.model_runs == runs_before
    move, move_decodes = math.nan, 0
    if len(studies) > 1:  # all studies at once, predictions from the cache; then on to the next one
        open_and_wait(tmp / "studies")
        ordered = list(state.files.study_set.studies)
        current = state.files.current_study
        assert current is not None
        after = ordered[ordered.index(current) + 1]
        c0 = counted()
        t0 = time.perf_counter()
        state.files.set_current(after.images[0].key)
        move = wait_until_shown(app, state, win, t0, lambda study: study is after)
        move_decodes = counted() - c0
    win.close()
    state.shutdown()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"{physical_cores()} physical cores usable; "
          f"model {manifest.name} {manifest.version}, height {manifest.input_height}")  # fmt: skip
    print(f"open -> 4 predictions on screen, cold (model session loads too): {cold:.2f} s")
    if warm:
        print(f"open -> 4 predictions on screen, warm: median {statistics.median(warm):.2f} s, min {min(warm):.2f} s "
              f"over {len(warm)} studies")  # fmt: skip
    print(f"reopen served by the on-disk prediction cache (no model run): {cached:.2f} s")
    print(f"decodes per open (4 images; cold, warm..., reopen, all studies): {decodes}")
    if move == move:
        print(f"move to the next study (prefetched) -> its predictions on screen: {move:.2f} s, "
              f"{move_decodes} decodes on the way")  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average during the run: {load:.1f} on {os.cpu_count()} CPUs (other work slows every figure)")
    print("target: <= 2 s per 4-view study")
    return 0


if __name__ == "__main__":
    sys.exit(main())
