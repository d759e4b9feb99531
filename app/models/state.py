"""AppState: the one state object of the app. Widgets render it and call its request methods.

Long work (scanning, decoding, the model) runs in :class:`app.models.workers.WorkerPool`; results come back
on the main thread and change the state, which then emits its typed signals. Nothing here touches a
widget. The runtime is reached through a :class:`Backend` (the real ``inference`` functions by
default) so the state can be driven in tests without a model.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from inference.errors import ImageReadError, MammoReviewError, PreprocessError
from inference.formats import ModelManifest
from inference.imaging.decode import LoadedImage
from inference.model.predict import Prediction
from inference.imaging.studies import ImageRecord, Problem, Study, StudySet
from inference.model.summary import BreastSummary, ExamSummary, summarise

from app.models.cache import PredictionCache
from app.models.settings import Settings
from app.models.workers import Cancelled, WorkerError, WorkerPool

__all__ = ["AppState", "Backend", "Display", "Overlay", "LAYOUTS", "OVERLAYS", "IMAGE_MEMORY", "MAPS_MEMORY"]

LAYOUTS = ("hanging", "cc", "mlo", "single")
OVERLAYS = ("none", "evidence", "error")
IMAGE_MEMORY = 16  # decoded images kept for display
# Predictions that keep their model-space maps in memory (about 1.6 MB each at height 512);
# older ones outside the current study reload them from the on-disk cache.
MAPS_MEMORY = 200


def _default_scan(paths: Sequence[Path], progress: Any, cancelled: Any) -> StudySet:
    from inference.imaging.studies import scan

    return scan(paths, progress=progress, cancelled=cancelled)


def _default_load(record: ImageRecord) -> LoadedImage:
    from inference.imaging.decode import load_image

    return load_image(record)


def _default_model(path: str, device: str) -> Any:
    from inference.model.session import ModelSession

    return ModelSession.load(path or None, device=device)


def _default_predict(session: Any, images: Sequence[LoadedImage]) -> list[Prediction]:
    """Preprocess two images at a time, then run them in batches of equal width."""
    from inference.model.predict import predict_inputs, prepare

    if len(images) < 2:
        inputs = [prepare(im, session.height) for im in images]
    else:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare") as ex:
            inputs = list(ex.map(lambda im: prepare(im, session.height), images))
    return predict_inputs(session, inputs, batch_size=4)


@dataclass(frozen=True)
class Backend:
    """The runtime functions the state calls from its workers."""

    scan: Callable[[Sequence[Path], Any, Any], StudySet] = _default_scan
    load_image: Callable[[ImageRecord], LoadedImage] = _default_load
    load_model: Callable[[str, str], Any] = _default_model  # (model path or "", device) -> ModelSession
    predict: Callable[[Any, Sequence[LoadedImage]], list[Prediction]] = _default_predict


@dataclass(frozen=True)
class Overlay:
    """What is drawn over the images."""

    kind: str = "none"  # one of OVERLAYS
    opacity: float = 0.5
    reconstruction: bool = False  # show the reconstruction beside the current image


@dataclass(frozen=True)
class Display:
    """How the images are shown."""

    layout: str = "hanging"  # one of LAYOUTS
    inverted: bool = False
    window: tuple[float, float] | None = None  # (centre, width) in modality values, None = preset
    preset: str = "default"  # "default" (the file's first window), "dicom:<i>", "auto", "full", "soft", "dense"
    magnifier: bool = False


class AppState(QObject):
    """Everything the windows show, and the requests that change it."""

    studies_changed = Signal()
    current_changed = Signal(str)
    selection_changed = Signal(tuple)
    predictions_changed = Signal(tuple)
    images_changed = Signal(tuple)  # decoded pixels arrived for these keys
    model_changed = Signal()
    operating_point_changed = Signal(float)
    overlay_changed = Signal()
    display_changed = Signal()
    problems_changed = Signal()
    busy_changed = Signal(str, int, int)  # task ("" = idle), done, total
    message = Signal(str, str)  # level ("info" | "warning" | "error"), text for the user

    def __init__(
        self,
        settings: Settings,
        backend: Backend | None = None,
        cache: PredictionCache | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.backend = backend or Backend()
        self.cache = cache if cache is not None else PredictionCache(settings.cache_dir)
        self.pool = WorkerPool(max_threads=3, parent=self)  # the model, display decoding, one panel job
        self.study_set = StudySet((), ())
        self.paths: tuple[Path, ...] = ()
        self.current_key: str | None = None
        self.selection: tuple[str, ...] = ()
        self.predictions: dict[str, Prediction] = {}
        self.breasts: dict[str, BreastSummary] = {}
        self.exams: dict[str, ExamSummary] = {}
        self.load_problems: dict[str, Problem] = {}
        self.pixel_laterality: dict[str, str] = {}
        self.session: Any = None
        self.model_error = ""
        self.overlay = Overlay(opacity=settings.overlay_opacity)
        self.display = Display(layout=settings.layout if settings.layout in LAYOUTS else "hanging")
        self._operating_point: float | None = settings.operating_point
        self.busy: tuple[str, int, int] = ("", 0, 0)
        self.model_runs = 0  # images the model actually ran on (cache misses)
        self._images: OrderedDict[str, LoadedImage] = OrderedDict()
        self._images_lock = threading.Lock()
        self._records: dict[str, ImageRecord] = {}
        self._study_of: dict[str, Study] = {}
        self._loading: set[str] = set()
        self._with_maps: OrderedDict[str, None] = OrderedDict()

    # ------------------------------------------------------------------ read access
    @property
    def manifest(self) -> ModelManifest | None:
        return None if self.session is None else self.session.manifest

    @property
    def operating_point(self) -> float:
        if self._operating_point is not None:
            return self._operating_point
        return self.manifest.threshold("default") if self.manifest is not None else 0.5

    @property
    def problems(self) -> tuple[Problem, ...]:
        """Files that could not be read: the scan's, then those that failed to decode or preprocess."""
        return self.study_set.problems + tuple(self.load_problems.values())

    def record(self, key: str) -> ImageRecord:
        return self._records[key]

    def study_of(self, key: str | None) -> Study | None:
        return None if key is None else self._study_of.get(key)

    @property
    def current_study(self) -> Study | None:
        return self.study_of(self.current_key)

    @property
    def current_record(self) -> ImageRecord | None:
        return None if self.current_key is None else self._records.get(self.current_key)

    def image(self, key: str) -> LoadedImage | None:
        """The decoded image when it is in memory (thread-safe)."""
        with self._images_lock:
            return self._images.get(key)

    def prediction(self, key: str | None) -> Prediction | None:
        return None if key is None else self.predictions.get(key)

    def flagged(self, key: str) -> bool | None:
        """True when the image's malignancy probability reaches the operating point; None without one."""
        p = self.predictions.get(key)
        if p is None or p.p_malignant != p.p_malignant:
            return None
        return p.p_malignant >= self.operating_point

    def laterality(self, key: str) -> str:
        """The tag's (or text's) laterality, else the one seen in the pixels, else ""."""
        rec = self._records.get(key)
        if rec is not None and rec.laterality:
            return rec.laterality
        return self.pixel_laterality.get(key, "")

    def breast_of(self, key: str) -> BreastSummary | None:
        for b in self.breasts.values():
            if key in b.image_keys:
                return b
        return None

    def exam_of(self, key: str) -> ExamSummary | None:
        study = self.study_of(key)
        if study is None:
            return None
        keys = {r.key for r in study.images}
        for e in self.exams.values():
            if e.source_key in keys:
                return e
        return None

    # ------------------------------------------------------------------ requests: files
    def open_paths(self, paths: Iterable[str | Path]) -> None:
        """Scan files and folders, show them, and run the model on every image."""
        self.paths = tuple(Path(p) for p in paths)
        if not self.paths:
            return
        self.settings.add_recent([str(p) for p in self.paths])
        self.pool.cancel("inference")
        self.pool.cancel("display")
        scan = self.backend.scan
        paths_now = self.paths
        self._set_busy("Scanning", 0, 0)
        self.pool.submit(
            lambda progress, cancelled: scan(paths_now, progress, cancelled),
            channel="scan",
            on_progress=lambda d, t: self._set_busy("Scanning", d, t),
            on_result=self._on_scanned,
            on_error=self._on_worker_error,
            on_finished=lambda cancelled: self._set_busy("", 0, 0) if cancelled else None,
        )

    def _on_scanned(self, study_set: StudySet) -> None:
        self.study_set = study_set
        self._records = {r.key: r for r in study_set.images}
        self._study_of = {r.key: s for s in study_set.studies for r in s.images}
        self.predictions = {k: v for k, v in self.predictions.items() if k in self._records}
        self.load_problems = {}
        self.selection = ()
        with self._images_lock:
            for k in [k for k in self._images if k not in self._records]:
                del self._images[k]
        self._summarise()
        self.studies_changed.emit()
        self.problems_changed.emit()
        images = study_set.images
        self.current_key = None
        if images:
            self.set_current(images[0].key)
        else:
            self.current_changed.emit("")
        self._set_busy("", 0, 0)
        if not images and study_set.problems:
            self.message.emit("warning", f"No readable image in the opened files ({len(study_set.problems)} problem(s))")
        self.run_inference()

    # ------------------------------------------------------------------ requests: navigation
    def set_current(self, key: str | None) -> None:
        if key is not None and key not in self._records:
            raise KeyError(key)
        if key == self.current_key:
            return
        self.current_key = key
        self.current_changed.emit(key or "")
        self._ensure_images()

    def set_selection(self, keys: Sequence[str]) -> None:
        keys = tuple(k for k in keys if k in self._records)
        if keys != self.selection:
            self.selection = keys
            self.selection_changed.emit(keys)

    def step_image(self, step: int) -> None:
        """Move to the next (+1) or previous (-1) image of the opened set."""
        keys = [r.key for r in self.study_set.images]
        if not keys:
            return
        i = keys.index(self.current_key) if self.current_key in keys else -1
        self.set_current(keys[max(0, min(len(keys) - 1, i + step))])

    def step_study(self, step: int) -> None:
        """Move to the first image of the next (+1) or previous (-1) study."""
        studies = [s for s in self.study_set.studies if s.images]
        if not studies:
            return
        cur = self.current_study
        i = next((n for n, s in enumerate(studies) if s is cur), -1)
        target = studies[max(0, min(len(studies) - 1, i + step))]
        self.set_current(target.images[0].key)

    # ------------------------------------------------------------------ requests: model
    def set_operating_point(self, threshold: float) -> None:
        t = float(min(1.0, max(0.0, threshold)))
        if self._operating_point is not None and abs(t - self._operating_point) < 1e-9:
            return
        self._operating_point = t
        self.settings.operating_point = t
        self.operating_point_changed.emit(t)

    def set_device(self, device: str) -> None:
        """Use another device from the next model run on (the settings keep it)."""
        self.settings.device = device
        if self.session is not None and device not in ("auto", self.session.device):
            self.session = None
            self.model_changed.emit()
        self.run_inference()

    def set_model_path(self, path: str) -> None:
        """Use another model file ("" = the bundled one); its predictions replace the old model's."""
        self.pool.cancel("inference")
        self.settings.model_path = path
        self.session = None
        self.model_error = ""
        dropped = tuple(self.predictions)
        self.predictions = {}
        self.load_problems = {k: p for k, p in self.load_problems.items() if self.image(k) is None}
        self._summarise()
        self.model_changed.emit()
        if dropped:
            self.predictions_changed.emit(dropped)
        self.problems_changed.emit()
        self.run_inference()

    def set_cache_dir(self, folder: str | Path) -> None:
        """Keep predictions in another folder from now on (the settings keep it)."""
        self.settings.cache_dir = folder
        self.cache = PredictionCache(Path(folder))

    def run_inference(self) -> None:
        """Predict every opened image that has no prediction of the current model yet."""
        records = [r for r in self._ordered_records() if r.key not in self.predictions and r.key not in self.load_problems]
        if not records:
            self._set_busy("", 0, 0)
            return
        session = self.session
        backend = self.backend
        cache = self.cache
        device = self.settings.device
        model_path = self.settings.model_path
        peek = self.image
        want_pixels = {r.key for r in self.current_study.images} if self.current_study else set()
        self._loading |= want_pixels

        def job(progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> Any:
            nonlocal session
            if session is None:
                session = backend.load_model(model_path, device)
                yield ("model", session)
            total = len(records)
            progress(0, total)
            done = 0
            for study in _group_by_study(records):
                if cancelled():
                    raise Cancelled()
                need: list[tuple[ImageRecord, Prediction | None]] = []
                for rec in study:
                    hit = cache.get(rec.key, session.version)
                    if hit is not None and (rec.key not in want_pixels or peek(rec.key) is not None):
                        yield ("prediction", rec.key, None, hit, False)
                        done += 1
                        progress(done, total)
                    else:
                        need.append((rec, hit))
                todo: list[LoadedImage] = []
                for (rec, hit), img in zip(need, _load_all(backend, [r for r, _ in need], peek)):
                    if cancelled():
                        raise Cancelled()
                    if not isinstance(img, LoadedImage):
                        yield ("problem", rec.key, img)
                        done += 1
                        progress(done, total)
                    elif hit is not None:
                        yield ("prediction", rec.key, img, hit, False)
                        done += 1
                        progress(done, total)
                    else:
                        yield ("image", img)  # on screen before its prediction
                        todo.append(img)
                if cancelled():
                    raise Cancelled()
                for img, pred, err in _predict_all(backend, session, todo):
                    if pred is not None:
                        cache.put(pred)
                        yield ("prediction", img.record.key, None, pred, True)
                    else:
                        yield ("problem", img.record.key, err)
                    done += 1
                    progress(done, total)
            return done

        self._set_busy("Running the model", 0, len(records))
        self.pool.submit(
            job,
            channel="inference",
            on_yield=self._on_inference_item,
            on_progress=lambda d, t: self._set_busy("Running the model", d, t),
            on_error=self._on_worker_error,
            on_finished=self._on_inference_finished,
        )

    def _ordered_records(self) -> list[ImageRecord]:
        """Every record, the current study's first."""
        cur = self.current_study
        first = list(cur.images) if cur is not None else []
        return first + [r for r in self.study_set.images if cur is None or self._study_of.get(r.key) is not cur]

    def _on_inference_item(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "model":
            self.session = item[1]
            self.model_error = ""
            if getattr(self.session, "notice", ""):
                self.message.emit("warning", self.session.notice)
            self.model_changed.emit()
            self.operating_point_changed.emit(self.operating_point)
        elif kind == "image":
            self._store_images([item[1]])
        elif kind == "problem":
            _, key, reason = item
            rec = self._records.get(key)
            if rec is not None:
                self.load_problems[key] = Problem(rec.path, reason, False)
                self._loading.discard(key)
                self.problems_changed.emit()
        elif kind == "prediction":
            _, key, img, pred, ran = item
            if img is not None:
                self._store_images([img])
            if ran:
                self.model_runs += 1
            if key in self._records:
                self._keep_prediction(pred)
                self._summarise()
                self.predictions_changed.emit((key,))

    def _keep_prediction(self, pred: Prediction) -> None:
        """Store a prediction; beyond MAPS_MEMORY, older ones outside the current study keep their
        numbers and ``z`` but leave their maps to the on-disk cache (:meth:`prediction_with_maps`)."""
        self.predictions[pred.key] = pred
        self._with_maps[pred.key] = None
        self._with_maps.move_to_end(pred.key)
        keep = {r.key for r in self.current_study.images} if self.current_study else set()
        for old in list(self._with_maps):
            if len(self._with_maps) <= MAPS_MEMORY:
                break
            if old in keep:
                continue
            del self._with_maps[old]
            p = self.predictions.get(old)
            if p is not None:
                self.predictions[old] = replace(p, model_input=np.zeros((0, 0), np.float32), reconstruction=None, evidence=None)

    def prediction_with_maps(self, key: str | None) -> Prediction | None:
        """The prediction with its model-space maps (reloaded from the cache when they were let go)."""
        p = self.prediction(key)
        if p is None or p.model_input.size:
            return p
        full = self.cache.get(p.key, p.model_version)
        return full if full is not None else p

    def _on_inference_finished(self, cancelled: bool) -> None:
        self._loading.clear()
        self._set_busy("", 0, 0)
        if cancelled:
            self.message.emit("info", "Model run cancelled; the predictions made so far are kept")
        self._ensure_images()

    def cancel(self) -> None:
        """Stop the scan and the model run (what is done stays)."""
        self.pool.cancel("scan")
        self.pool.cancel("inference")
        self._loading.clear()
        self._set_busy("", 0, 0)
        self._ensure_images()

    def _summarise(self) -> None:
        records = self.study_set.images
        preds = [self.predictions[r.key] for r in records if r.key in self.predictions]
        lat = {r.key: self.laterality(r.key) for r in records}
        breasts, exams = summarise(records, preds, laterality=lat) if preds else ([], [])
        self.breasts = {b.key: b for b in breasts}
        self.exams = {e.key: e for e in exams}

    # ------------------------------------------------------------------ decoded images
    def _ensure_images(self) -> None:
        """Decode the current study's images that are neither in memory nor on their way."""
        study = self.current_study
        if study is None:
            return
        missing = [
            r for r in study.images if self.image(r.key) is None and r.key not in self._loading and r.key not in self.load_problems
        ]
        if not missing:
            return
        load = self.backend.load_image

        def job(progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> Any:
            for i, rec in enumerate(missing):
                if cancelled():
                    raise Cancelled()
                try:
                    yield ("image", load(rec))
                except (ImageReadError, OSError, ValueError) as exc:
                    yield ("problem", rec.key, _reason(exc))
                progress(i + 1, len(missing))

        self.pool.submit(job, channel="display", on_yield=self._on_inference_item, on_error=self._on_worker_error)

    def _store_images(self, images: Sequence[LoadedImage]) -> None:
        keys = []
        for img in images:
            key = img.record.key
            keep = {r.key for r in self.current_study.images} if self.current_study else set()
            with self._images_lock:
                self._images[key] = img
                self._images.move_to_end(key)
                for old in list(self._images):
                    if len(self._images) <= IMAGE_MEMORY:
                        break
                    if old not in keep:
                        del self._images[old]
            lat = getattr(img, "pixel_laterality", "")
            if lat and self.pixel_laterality.get(key) != lat:
                self.pixel_laterality[key] = lat
            keys.append(key)
        if keys:
            self.images_changed.emit(tuple(keys))

    # ------------------------------------------------------------------ requests: display
    def set_overlay(self, kind: str | None = None, opacity: float | None = None, reconstruction: bool | None = None) -> None:
        changes: dict[str, Any] = {}
        if kind is not None:
            if kind not in OVERLAYS:
                raise ValueError(f"unknown overlay {kind!r}")
            changes["kind"] = kind
        if opacity is not None:
            changes["opacity"] = float(min(1.0, max(0.0, opacity)))
            self.settings.overlay_opacity = changes["opacity"]
        if reconstruction is not None:
            changes["reconstruction"] = bool(reconstruction)
        new = replace(self.overlay, **changes)
        if new != self.overlay:
            self.overlay = new
            self.overlay_changed.emit()

    def toggle_overlay(self, kind: str) -> None:
        self.set_overlay(kind="none" if self.overlay.kind == kind else kind)

    def set_display(self, **changes: Any) -> None:
        if "layout" in changes:
            if changes["layout"] not in LAYOUTS:
                raise ValueError(f"unknown layout {changes['layout']!r}")
            self.settings.layout = changes["layout"]
        if "preset" in changes and "window" not in changes:
            changes["window"] = None
        new = replace(self.display, **changes)
        if new != self.display:
            self.display = new
            self.display_changed.emit()

    def set_window(self, center: float, width: float) -> None:
        """Window every view with this (centre, width) in modality values."""
        self.set_display(window=(float(center), max(1e-6, float(width))))

    def reset_display(self) -> None:
        self.set_display(window=None, preset="default", inverted=False)

    # ------------------------------------------------------------------ busy and errors
    def _set_busy(self, task: str, done: int, total: int) -> None:
        busy = (task, int(done), int(total))
        if busy != self.busy:
            self.busy = busy
            self.busy_changed.emit(*busy)

    def _on_worker_error(self, err: WorkerError) -> None:
        exc = err.exception
        if isinstance(exc, MammoReviewError):
            text = str(exc)
        else:
            text = f"Unexpected error: {type(exc).__name__}: {exc}\n{err.traceback}"
        from inference.errors import ModelError

        if isinstance(exc, ModelError):
            self.model_error = text
            self.model_changed.emit()
        self._loading.clear()
        self._set_busy("", 0, 0)
        self.message.emit("error", text)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel every worker and join them (on quit)."""
        self.pool.cancel_all()
        return self.pool.wait(timeout_ms)


def _reason(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, MammoReviewError) else f"{type(exc).__name__}: {exc}"


def _group_by_study(records: Sequence[ImageRecord]) -> list[list[ImageRecord]]:
    groups: dict[str, list[ImageRecord]] = {}
    for r in records:
        groups.setdefault(r.study_uid or f"{r.patient_id}/{r.path.parent}", []).append(r)
    return list(groups.values())


def _load_all(backend: Backend, records: list[ImageRecord], peek: Callable[[str], LoadedImage | None]) -> list[LoadedImage | str]:
    """Decode images two at a time (decoders release the GIL); a failure becomes its reason."""

    def one(rec: ImageRecord) -> LoadedImage | str:
        img = peek(rec.key)
        if img is not None:
            return img
        try:
            return backend.load_image(rec)
        except (ImageReadError, OSError, ValueError) as exc:
            return _reason(exc)

    if len(records) < 2:
        return [one(r) for r in records]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as ex:
        return list(ex.map(one, records))


def _predict_all(backend: Backend, session: Any, images: list[LoadedImage]) -> list[tuple[LoadedImage, Prediction | None, str]]:
    """Predict a study's images together; one image that cannot be preprocessed fails alone."""
    if not images:
        return []
    try:
        preds = backend.predict(session, images)
        return [(img, p, "") for img, p in zip(images, preds)]
    except PreprocessError:
        pass
    out: list[tuple[LoadedImage, Prediction | None, str]] = []
    for img in images:
        try:
            out.append((img, backend.predict(session, [img])[0], ""))
        except PreprocessError as exc:
            out.append((img, None, _reason(exc)))
    return out
