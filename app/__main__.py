"""``python -m app [PATH...]`` (console script ``mammo-review``): the desktop viewer.

``--screenshot FILE`` opens the paths (the bundled samples without any), waits for the model,
renders the main window to FILE and exits. Warnings (pydicom, numpy) and the log go to
``mammo-review.log`` beside the settings file, never to the terminal unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import importlib.resources
import logging
import logging.handlers
import multiprocessing
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

_T0 = time.perf_counter()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mammo-review",
        description="Review mammograms with a multi-task network. Research use only, not for diagnosis.",
    )
    p.add_argument("paths", nargs="*", help="DICOM/PNG/JPEG/TIFF files or folders to open")
    p.add_argument("--screenshot", metavar="FILE", help="load, run the model, save the main window to FILE and exit")
    p.add_argument("--layout", choices=("hanging", "cc", "mlo", "single"), help="hanging layout to start with")
    p.add_argument("--overlay", choices=("none", "evidence", "error"), help="overlay to start with")
    p.add_argument("--reconstruction", action="store_true", help="show the reconstruction beside the current image")
    p.add_argument("--size", default="1600x1000", help="window size WxH (default 1600x1000)")
    p.add_argument("--settings", metavar="INI", help="settings file (default: the user's configuration folder)")
    p.add_argument("--cache", metavar="DIR", help="prediction cache folder (overrides the settings)")
    p.add_argument(
        "--operating-point", type=float, metavar="T", help="malignancy threshold to flag at (saved in the settings)"
    )
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="run the model on this device (saved in the settings)"
    )
    p.add_argument(
        "--panel",
        action="append",
        default=[],
        metavar="NAME",
        help="show this panel (e.g. 'Latent space', 'Labels'); repeatable",
    )
    p.add_argument(
        "--exit-after-show",
        action="store_true",
        help="quit as soon as the first window is on screen (start-up benchmark)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="--screenshot: give up waiting after this many seconds")
    p.add_argument("--verbose", action="store_true", help="also show warnings and the log on the terminal")
    p.add_argument(
        "--doctor",
        action="store_true",
        help=(
            "check Qt, ONNX Runtime and its devices, decoders, model, label store; print one line each and exit"
        ),
    )
    return p


def _log_to_file(folder: Path, verbose: bool) -> Path | None:
    """Warnings and the log into ``folder/mammo-review.log`` (1 MB, two old files kept); on stderr
    too when ``verbose``. Returns the log's path (None when the folder cannot be written)."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_mammo_app", False)]:
        root.removeHandler(old)
        old.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)] if verbose else []
    path: Path | None = folder / "mammo-review.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        log_file = folder / "mammo-review.log"
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=1 << 20, backupCount=2,
                                                             encoding="utf-8"))  # fmt: skip
    except OSError:
        path = None
    if not handlers:
        handlers.append(logging.NullHandler())
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._mammo_app = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()  # a PyInstaller bundle starts its decode workers through this entry
    args = build_parser().parse_args(argv)
    from app import doctor, startup

    if args.doctor:
        return doctor.main(settings=args.settings)
    problem = startup.platform_problem()  # before Qt, which aborts when its platform plugin cannot load
    if problem:
        print(problem, file=sys.stderr)
        return 1
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from app.models.cache import PredictionCache
    from app.models.settings import Settings
    from app.models.state import AppState
    from app.widgets.main_window import MainWindow, apply_dark_theme, samples_path
    from inference.latent.warmup import UMAP_WARM_UP

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setWindowIcon(QIcon(str(importlib.resources.files("resources") / "icons" / "mammo-review.png")))
    app.setApplicationName("mammo-review")
    app.setOrganizationName("mammo-review")
    apply_dark_theme(app)
    settings = Settings(args.settings)
    _log_to_file(settings.path.parent, args.verbose)
    if args.device:
        settings.device = args.device
    cache = PredictionCache(Path(args.cache) if args.cache else settings.cache_dir)
    state = AppState(settings, cache=cache)
    if args.operating_point is not None:
        state.runner.set_operating_point(args.operating_point)
    if args.layout:
        state.display.set_view(layout=args.layout)
    if args.overlay:
        state.display.set_overlay(kind=args.overlay)
    if args.reconstruction:
        state.display.set_overlay(reconstruction=True)
    win = MainWindow(state)
    for name in args.panel:
        dock = win.panels.get(name)
        if dock is None:
            print(f"mammo-review: no panel {name!r} (panels: {', '.join(win.panels)})", file=sys.stderr)
            return 2
        dock.show()
        dock.raise_()
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        win.resize(w, h)
    except ValueError:
        print(f"mammo-review: ignoring --size {args.size!r} (expected WxH)", file=sys.stderr)

    paths: list[str | Path] = list(args.paths)
    if not paths:
        recent = settings.recent_paths
        if args.screenshot or settings.first_run or not recent:
            paths = [samples_path()]
        else:
            paths = [p for p in recent[0].split("|") if Path(p).exists()] or [samples_path()]
    settings.first_run = False
    win.show()
    if args.exit_after_show:
        # The first turn of the event loop after show(): the window has been laid out and painted.
        def first_window() -> None:
            app.processEvents()
            print(
                f"mammo-review: first window after {time.perf_counter() - _T0:.2f} s "
                "(from Python start-up of the app module)"
            )
            win.close()

        QTimer.singleShot(0, first_window)
        app.exec()
        state.shutdown()
        return 0
    from app.models.backend import decode_pipeline

    decode_pipeline().start()  # the decode workers import their modules while the window builds
    QTimer.singleShot(0, lambda: state.open_paths(paths))
    timers: list[QTimer] = []  # stopped when main() returns
    if not args.screenshot:  # issue 16: UMAP's first-use compile, in the background once the app is idle
        warm = QTimer()

        def warm_up_when_idle() -> None:
            if not state.activity.busy[0]:
                UMAP_WARM_UP.start()
                warm.stop()

        warm.timeout.connect(warm_up_when_idle)
        warm.start(2000)
        timers.append(warm)

    status = {"code": 0}
    if args.screenshot:
        out = Path(args.screenshot)

        def save(final: bool = False) -> None:
            if not final and state.pool.running():  # panels still at work (e.g. the explorer's projection)
                QTimer.singleShot(300, save)
                return
            if not status.get("saved"):
                status["saved"] = True
                app.processEvents()
                ok = win.grab().save(str(out))
                if not ok:
                    print(f"mammo-review: could not write {out}", file=sys.stderr)
                    status["code"] = 1
                else:
                    n = len(state.runner.predictions)
                    print(f"mammo-review: wrote {out} ({n} predictions, {len(state.files.problems)} problems)")
                win.close()

        def check() -> None:
            if state.files.study_set.studies and not state.activity.busy[0] and not state.pool.running():
                QTimer.singleShot(600, save)
                timer.stop()

        timer = QTimer()
        timer.timeout.connect(check)
        timer.start(200)

        def give_up() -> None:
            print(
                f"mammo-review: the model did not finish within {args.timeout:g} s; saving what is on screen",
                file=sys.stderr,
            )
            status["code"] = 2
            save(final=True)

        deadline = QTimer()  # an object, not QTimer.singleShot: it must not outlive main() (tests call main)
        deadline.setSingleShot(True)
        deadline.timeout.connect(give_up)
        deadline.start(int(args.timeout * 1000))
        timers += [timer, deadline]
    app.exec()
    for t in timers:
        t.stop()
    state.shutdown()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
