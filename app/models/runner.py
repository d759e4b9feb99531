"""ModelRunner: the model session, the predictions and their summaries, and the run that makes them.

One run predicts every opened image that has no prediction of the current model yet, the current
study first, a study at a time: cache hits come back at once, the rest are decoded two at a time
through :meth:`ImageMemory.decode <app.models.images.ImageMemory.decode>` (one request per image:
the decode workers preprocess it for the model too; an image the display is already decoding is
waited for, not decoded again) and predicted together, while the next study is already decoding.
The pixels of the current and the next study come back and go to memory, so they are on screen
before their prediction and moving on shows them at once; the other images' pixels stay in the
workers (only their model input travels).
Everything reaches the state on the main thread as items yielded by the worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.models.activity import Activity
from app.models.backend import Backend, error_text, reason
from app.models.cache import PredictionCache
from app.models.files import FilesState
from app.models.images import ImageMemory
from app.models.settings import Settings
from app.models.workers import Cancelled, WorkerError, WorkerPool
from inference.errors import ImageReadError, ModelError, PreprocessError
from inference.formats import ModelManifest
from inference.imaging.studies import ImageRecord
from inference.model.pipeline import Prepared
from inference.model.predict import Prediction, PredictionSummary
from inference.model.summary import BreastSummary, ExamSummary, summarise

__all__ = ["ModelRunner"]

_TASK = "Running the model"


class ModelRunner(QObject):
    """The model and what it said: ``predictions`` hold a :class:`Prediction` (with maps) or, for older
    images beyond the maps memory, its :class:`PredictionSummary`."""

    predictions_changed = Signal(tuple)  # image keys
    model_changed = Signal()
    operating_point_changed = Signal(float)

    def __init__(
        self,
        settings: Settings,
        files: FilesState,
        memory: ImageMemory,
        pool: WorkerPool,
        backend: Backend,
        cache: PredictionCache,
        activity: Activity,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.files = files
        self.memory = memory
        self.pool = pool
        self.backend = backend
        self.cache = cache
        self.activity = activity
        self.session: Any = None
        self.model_error = ""
        self.predictions: dict[str, PredictionSummary] = {}
        self.breasts: dict[str, BreastSummary] = {}
        self.exams: dict[str, ExamSummary] = {}
        self.model_runs = 0  # images the model actually ran on (cache misses)
        self._operating_point: float | None = settings.operating_point

    # ------------------------------------------------------------------ read access
    @property
    def manifest(self) -> ModelManifest | None:
        return None if self.session is None else self.session.manifest

    @property
    def operating_point(self) -> float:
        if self._operating_point is not None:
            return self._operating_point
        return self.manifest.threshold("default") if self.manifest is not None else 0.5

    def prediction(self, key: str | None) -> PredictionSummary | None:
        return None if key is None else self.predictions.get(key)

    def prediction_with_maps(self, key: str | None) -> Prediction | None:
        """The prediction with its model-space maps (reloaded from the cache when they were let go)."""
        p = self.prediction(key)
        if p is None or isinstance(p, Prediction):
            return p
        return self.cache.get(p.key, p.model_version)

    def flagged(self, key: str) -> bool | None:
        """True when the image's malignancy probability reaches the operating point; None without one."""
        p = self.predictions.get(key)
        if p is None or p.p_malignant != p.p_malignant:
            return None
        return p.p_malignant >= self.operating_point

    def breast_of(self, key: str) -> BreastSummary | None:
        for b in self.breasts.values():
            if key in b.image_keys:
                return b
        return None

    def exam_of(self, key: str) -> ExamSummary | None:
        study = self.files.study_of(key)
        if study is None:
            return None
        keys = {r.key for r in study.images}
        for e in self.exams.values():
            if e.source_key in keys:
                return e
        return None

    # ------------------------------------------------------------------ requests
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
        self.summarise()
        # an image that decoded but failed to preprocess may pass with the other model
        self.files.load_problems = {k: p for k, p in self.files.load_problems.items() if self.memory.image(k) is None}
        self.model_changed.emit()
        if dropped:
            self.predictions_changed.emit(dropped)
        self.files.problems_changed.emit()
        self.run_inference()

    def set_cache_dir(self, folder: str | Path) -> None:
        """Keep predictions in another folder from now on (the settings keep it)."""
        self.settings.cache_dir = folder
        self.cache = PredictionCache(Path(folder))

    def forget(self, keep: set[str]) -> None:
        """Drop the predictions of images no longer opened, and summarise again (no signal)."""
        self.predictions = {k: v for k, v in self.predictions.items() if k in keep}
        self.summarise()

    def cancel(self) -> None:
        self.pool.cancel("inference")
        self.memory.loading.clear()

    def run_inference(self) -> None:
        """Predict every opened image that has no prediction of the current model yet."""
        problems = self.files.load_problems
        records = [r for r in self.files.ordered_records() if r.key not in self.predictions and r.key not in problems]
        if not records:
            self.memory.loading.clear()  # nothing is on its way: the display decodes what it shows
            self.activity.idle()
            self.memory.ensure_current()
            return
        want_pixels = self.files.current_study_keys() | self.memory.next_study_keys()
        self.memory.loading |= want_pixels
        self.pool.cancel("prefetch")  # the run decodes the next study itself
        job = _inference_job(
            records, self.session, self.backend, self.cache, self.settings.model_path, self.settings.device,
            want_pixels, self.memory,
        )  # fmt: skip
        self.activity.set_busy(_TASK, 0, len(records))
        self.pool.submit(
            job,
            channel="inference",
            on_yield=self._on_item,
            on_progress=lambda d, t: self.activity.set_busy(_TASK, d, t),
            on_error=self._on_error,
            on_finished=self._on_finished,
        )

    # ------------------------------------------------------------------ results (main thread)
    def _on_item(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "model":
            self.session = item[1]
            self.memory.height = getattr(self.session, "height", None)
            self.model_error = ""
            if getattr(self.session, "notice", ""):
                self.activity.say("warning", self.session.notice)
            self.model_changed.emit()
            self.operating_point_changed.emit(self.operating_point)
        elif kind == "image":
            self.memory.store([item[1]])
        elif kind == "laterality":
            if self.files.has(item[1]):
                self.files.note_pixel_laterality(item[1], item[2])
        elif kind == "problem":
            _, key, why = item
            if self.files.has(key):
                self.memory.loading.discard(key)
                self.files.add_problem(key, why)
                self.activity.say("warning", f"{self.files.record(key).path.name} was not predicted: {why}")
        elif kind == "prediction":
            _, key, img, pred, ran = item
            if img is not None:
                self.memory.store([img])
            if ran:
                self.model_runs += 1
            if self.files.has(key):
                self._keep(pred)
                self.summarise()
                self.predictions_changed.emit((key,))

    def _keep(self, pred: Prediction) -> None:
        """Store a prediction; beyond the maps memory, older ones outside the current study keep their
        summary and leave their maps to the on-disk cache (:meth:`prediction_with_maps`)."""
        self.predictions[pred.key] = pred
        for old in self.memory.keep_maps(pred.key):
            p = self.predictions.get(old)
            if isinstance(p, Prediction):
                self.predictions[old] = p.without_maps()

    def _on_finished(self, cancelled: bool) -> None:
        self.memory.loading.clear()
        self.activity.idle()
        if cancelled:
            self.activity.say("info", "Model run cancelled; the predictions made so far are kept")
        self.memory.ensure_current()

    def _on_error(self, err: WorkerError) -> None:
        text = error_text(err)
        if isinstance(err.exception, ModelError):
            self.model_error = text
            self.model_changed.emit()
        self.memory.loading.clear()
        self.activity.idle()
        self.activity.say("error", text)

    def summarise(self) -> None:
        records = self.files.study_set.images
        preds = [self.predictions[r.key] for r in records if r.key in self.predictions]
        lat = {r.key: self.files.laterality(r.key) for r in records}
        breasts, exams = summarise(records, preds, laterality=lat) if preds else ([], [])
        self.breasts = {b.key: b for b in breasts}
        self.exams = {e.key: e for e in exams}


def _inference_job(
    records: list[ImageRecord],
    session: Any,
    backend: Backend,
    cache: PredictionCache,
    model_path: str,
    device: str,
    want_pixels: set[str],
    memory: ImageMemory,
) -> Callable[[Callable[[int, int], None], Callable[[], bool]], Generator[tuple[Any, ...], None, int]]:
    """The worker function of one model run: yields ("model", session), ("image", img), ("laterality",
    key, seen in the pixels) for images not kept, ("problem", key, reason) and ("prediction", key, img
    or None, prediction, ran)."""

    def job(
        progress: Callable[[int, int], None], cancelled: Callable[[], bool]
    ) -> Generator[tuple[Any, ...], None, int]:
        nonlocal session
        if session is None:
            session = backend.load_model(model_path, device)
            yield ("model", session)
        height = getattr(session, "height", None)
        total = len(records)
        progress(0, total)
        done = 0
        studies = iter(_group_by_study(records))
        ahead: deque[tuple[list[tuple[ImageRecord, Prediction]], list[tuple[ImageRecord, Prediction | None]],
                           list[Future[Prepared | str]]]] = deque()  # fmt: skip
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as ex:
            try:

                def start_next() -> None:
                    """Start decoding the next study that needs it: its decodes overlap this study's model run."""
                    while len(ahead) < 2 and (study := next(studies, None)) is not None:
                        hits: list[tuple[ImageRecord, Prediction]] = []
                        need: list[tuple[ImageRecord, Prediction | None]] = []
                        for rec in study:
                            hit = cache.get(rec.key, session.version)
                            if hit is not None and (rec.key not in want_pixels or memory.image(rec.key) is not None):
                                hits.append((rec, hit))
                            else:
                                need.append((rec, hit))
                        futures = [ex.submit(_load_one, memory, rec, height, rec.key in want_pixels) for rec, _ in need]
                        ahead.append((hits, need, futures))

                start_next()
                while ahead:
                    hits, need, futures = ahead.popleft()
                    start_next()
                    for rec, cached in hits:
                        yield ("prediction", rec.key, None, cached, False)
                        done += 1
                        progress(done, total)
                    todo: list[Prepared] = []
                    for (rec, hit), future in zip(need, futures, strict=True):
                        if cancelled():
                            raise Cancelled()
                        got = future.result()
                        if isinstance(got, str):
                            yield ("problem", rec.key, got)
                            done += 1
                            progress(done, total)
                            continue
                        shown = rec.key in want_pixels and got.image is not None
                        if not shown:  # the laterality seen in the pixels counts where the file has none
                            yield ("laterality", rec.key, got.pixel_laterality)
                        if hit is not None:
                            yield ("prediction", rec.key, got.image if shown else None, hit, False)
                            done += 1
                            progress(done, total)
                            continue
                        if shown:
                            yield ("image", got.image)  # on screen before its prediction
                        if got.item is None and got.problem:  # decoded, but the worker could not preprocess it
                            yield ("problem", rec.key, got.problem)
                            done += 1
                            progress(done, total)
                        else:
                            todo.append(got)
                    if cancelled():
                        raise Cancelled()
                    for got, pred, err in _predict_all(backend, session, todo):
                        if pred is not None:
                            cache.put(pred, background=True)  # to disk off the model's thread
                            yield ("prediction", got.record.key, None, pred, True)
                        else:
                            yield ("problem", got.record.key, err)
                        done += 1
                        progress(done, total)
            finally:  # a cancelled (or closed) run leaves no decode queued
                for _, _, futures in ahead:
                    for future in futures:
                        future.cancel()
        return done

    return job


def _group_by_study(records: Sequence[ImageRecord]) -> list[list[ImageRecord]]:
    groups: dict[str, list[ImageRecord]] = {}
    for r in records:
        groups.setdefault(r.study_uid or f"{r.patient_id}/{r.path.parent}", []).append(r)
    return list(groups.values())


def _load_one(memory: ImageMemory, rec: ImageRecord, height: int | None, keep: bool) -> Prepared | str:
    """Decode (and preprocess) one image, once; a failure becomes its reason. Only a kept image's
    pixels come back from the workers: the others are predicted, not shown."""
    try:
        return memory.decode(rec, height, keep=keep)
    except (ImageReadError, PreprocessError, OSError, ValueError) as exc:
        return reason(exc)


def _predict_all(
    backend: Backend, session: Any, prepared: list[Prepared]
) -> list[tuple[Prepared, Prediction | None, str]]:
    """Predict a study's images together; one image that cannot be preprocessed fails alone."""
    if not prepared:
        return []
    try:
        preds = backend.run_model(session, prepared)
        return [(p, pred, "") for p, pred in zip(prepared, preds, strict=False)]
    except PreprocessError:
        pass
    out: list[tuple[Prepared, Prediction | None, str]] = []
    for p in prepared:
        try:
            out.append((p, backend.run_model(session, [p])[0], ""))
        except PreprocessError as exc:
            out.append((p, None, reason(exc)))
    return out
