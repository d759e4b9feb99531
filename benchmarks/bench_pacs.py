"""From the PACS to predictions: prints figures, asserts nothing.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_pacs.py [--shape 3000x2400] [--repeats 3] [--no-app]

Starts a private Orthanc with DICOMweb on loopback (Debian packages orthanc, orthanc-dicomweb;
tests/inference/pacs/orthanc.py), stores an uncompressed 16-bit 4-view phantom study, then times,
with an empty cache each round: the retrieve (WADO-RS, and C-GET), the scan of the cache folder,
and decode + preprocess + the bundled model (Monte-Carlo dropout included) for the four images; the
model session is loaded once before. Then the app: File > Open from PACS's state retrieves a study
(WADO-RS) and the main window opens it; the clock stops when its four predictions are in and the
hanging is drawn (a first study warms the model session; each round is a study not seen before),
with where the time went: retrieve (until the dialog's state has the study in its cache), scan,
wait (scan done to the first decode: the model run starting), decode (the app's backend, first
start to last end), model (preprocess + network) and UI (the last prediction to the hanging drawn),
and how many decodes the backend ran for the study's four images.
Target (issue 17): <= 3 s from the PACS to predictions on screen, uncompressed 4-view, loopback.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_app import wait_until_shown

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class _Clock:
    """When each stage of one study's way to the screen started and ended (seconds from t0)."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.marks: dict[str, list[float]] = {}

    def start(self) -> None:
        self.t0, self.marks = time.perf_counter(), {}

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, []).append(time.perf_counter() - self.t0)

    def timed(self, name: str, fn: Any) -> Any:
        def run(*args: Any) -> Any:
            self.mark(f"{name}+")
            try:
                return fn(*args)
            finally:
                self.mark(f"{name}-")

        return run

    def stages(self, total: float) -> dict[str, float]:
        m = self.marks
        first = lambda k: min(m.get(k, [math.nan]))  # noqa: E731
        last = lambda k: max(m.get(k, [math.nan]))  # noqa: E731
        return {"retrieve": last("retrieved"), "scan": last("scanned") - last("retrieved"),
                "wait": first("decode+") - last("scanned"), "decode": last("decode-") - first("decode+"),
                "model": last("predict-") - first("predict+"), "UI": total - last("predict-"),
                "decodes": len(m.get("decode-", []))}  # fmt: skip


def app_figures(url: str, study_uids: list[str], tmp: Path) -> tuple[list[float], list[dict[str, float]]]:
    """Seconds from "retrieve" in the PACS dialog's state to 4 predictions on screen, per study, and
    the stages of each."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    from app.models.backend import Backend
    from app.models.cache import PredictionCache
    from app.models.pacs import PacsState
    from app.models.settings import Settings
    from app.models.state import AppState
    from app.widgets.main_window import MainWindow

    clock = _Clock()
    plain = Backend()
    backend = Backend(scan=plain.scan, load_model=plain.load_model,  # decode: one request per image, preprocessed
                      load_prepared=clock.timed("decode", plain.decode),
                      predict_prepared=clock.timed("predict", plain.run_model))  # fmt: skip
    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = Settings(tmp / "settings.ini")
    settings.device = "cpu"
    settings.set_value("pacs/cache_dir", str(tmp / "app-cache"))
    state = AppState(settings, backend=backend, cache=PredictionCache(tmp / "predictions"))
    win = MainWindow(state)
    win.resize(1600, 1000)
    win.show()
    from keyring.backends import fail

    from inference.pacs.credentials import PasswordStore

    pacs = PacsState(state, passwords=PasswordStore(fail.Keyring()))  # the test password: never the system's keyring
    pacs.server = url
    pacs.retrieved.connect(lambda _folder: clock.mark("retrieved"))
    state.files.studies_changed.connect(lambda: clock.mark("scanned"))
    times, stages = [], []
    for uid in study_uids:
        clock.start()
        pacs.retrieve(uid)
        times.append(wait_until_shown(app, state, win, clock.t0, lambda study, uid=uid: study.study_uid == uid))
        stages.append(clock.stages(times[-1]))
    win.close()
    state.shutdown()
    return times, stages


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--shape", default="3000x2400", help="rows x columns of each image (default 3000x2400)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per retrieve method")
    ap.add_argument("--no-app", action="store_true", help="leave out the app's figures")
    args = ap.parse_args()
    rows, cols = (int(v) for v in args.shape.lower().split("x"))

    from pydicom import dcmread

    from inference.imaging.decode import load_image
    from inference.imaging.studies import scan
    from inference.model.predict import predict_inputs, prepare
    from inference.model.session import ModelSession
    from inference.pacs.cache import InstanceCache
    from inference.pacs.dicomweb import DicomWebServer
    from inference.pacs.dimse import DimsePeer
    from inference.phantoms.generator import write_study
    from tests.inference.pacs.orthanc import missing_programs, running_orthanc

    if missing_programs():
        print(f"missing: {', '.join(missing_programs())} (apt-get install orthanc orthanc-dicomweb)")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_pacs_"))
    try:
        files = write_study(tmp / "study", shape=(rows, cols), malignant_side="L", seed=11)
        mb = sum(p.stat().st_size for p in files) / 1e6
        session = ModelSession.load(device="cpu")
        print(f"{platform.processor() or platform.machine()}, {session.threads} threads; model "
              f"{session.manifest.name} {session.version} at height {session.height}")  # fmt: skip
        print(f"study: 4 x {rows} x {cols} uncompressed 16-bit, {mb:.1f} MB")
        with running_orthanc(tmp / "orthanc") as orthanc:
            web = DicomWebServer(orthanc.dicomweb_with_credentials)
            t = time.perf_counter()
            web.store([dcmread(p) for p in files])
            print(f"STOW-RS of the study: {time.perf_counter() - t:.2f} s")
            study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
            peer = DimsePeer("127.0.0.1", orthanc.dicom_port, orthanc.ae_title, calling_ae=orthanc.client_ae)
            methods = {
                "WADO-RS": lambda cache: web.retrieve_study(study_uid, cache),
                "C-GET": lambda cache: peer.get_study(study_uid, cache),
            }
            for name, fetch in methods.items():
                figures: dict[str, list[float]] = {"retrieve": [], "scan": [], "predict": [], "total": []}
                for r in range(args.repeats):
                    cache = InstanceCache(tmp / f"cache-{name}-{r}")
                    t0 = time.perf_counter()
                    fetch(cache)
                    t1 = time.perf_counter()
                    found = scan([cache.study_folder(study_uid)])
                    t2 = time.perf_counter()
                    items = [prepare(load_image(rec), session.height) for rec in found.images]
                    preds = predict_inputs(session, items)
                    t3 = time.perf_counter()
                    assert len(preds) == 4
                    for key, value in (("retrieve", t1 - t0), ("scan", t2 - t1), ("predict", t3 - t2),
                                       ("total", t3 - t0)):  # fmt: skip
                        figures[key].append(value)
                cells = ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in figures.items())
                print(f"{name:8s} (median of {args.repeats}): {cells}  [target total <= 3 s]")
            if not args.no_app:
                uids = []
                for i in range(args.repeats + 1):
                    more = write_study(tmp / f"app{i}", patient_id=f"APP{i}", shape=(rows, cols), seed=200 + i)
                    web.store([dcmread(p) for p in more])
                    uids.append(str(dcmread(more[0], stop_before_pixels=True).StudyInstanceUID))
                times, stages = app_figures(orthanc.dicomweb_with_credentials, uids, tmp)
                warm = statistics.median(times[1:])
                print(f"app, PACS -> 4 predictions on screen: cold (model loads) {times[0]:.2f} s, "
                      f"warm median {warm:.2f} s over {len(times) - 1} studies  [target <= 3 s]")  # fmt: skip
                for t, st in zip(times, stages, strict=True):
                    print(f"  {t:.2f} s = " + ", ".join(f"{k} {v:.2f}" for k, v in st.items()))
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            print(f"load average during the run: {load:.1f} on {os.cpu_count()} CPUs (other work slows every figure)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
