"""The runtime functions the app's state objects call from their workers (the real ``inference`` by default).

Images are decoded in the worker processes of one :class:`inference.model.pipeline.Pipeline` per
process (:func:`decode_pipeline`: started on the first decode, closed at exit), the one the CLI uses
too: a decoder that panics, crashes or runs out of memory costs that image a problem, never the app.
One request per image (:meth:`Backend.decode`) brings back both the display's pixels and, at the
model's height, the model's input, preprocessed in the worker as in the CLI; the parent only runs
the model (:meth:`Backend.run_model`). Tests pass their own :class:`Backend` to drive the state
without a model; one given only image-level functions (``load_image``, ``predict``) is driven
through them (preprocessing then happens in ``predict``).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.models.workers import WorkerError
from inference.errors import MammoReviewError
from inference.imaging.decode import LoadedImage
from inference.imaging.studies import ImageRecord, StudySet
from inference.model.pipeline import Pipeline, Prepared
from inference.model.predict import Prediction

__all__ = ["Backend", "reason", "error_text", "decode_pipeline", "close_decode_pipeline"]

_LOCK = threading.Lock()
_PIPELINE: Pipeline | None = None


def decode_pipeline() -> Pipeline:
    """The process's decode pipeline, created on first use (its workers start on the first decode)."""
    global _PIPELINE
    with _LOCK:
        if _PIPELINE is None:
            _PIPELINE = Pipeline()
            atexit.register(close_decode_pipeline)
        return _PIPELINE


def close_decode_pipeline() -> None:
    """Stop the decode workers (at exit; a later decode starts a new pipeline)."""
    global _PIPELINE
    with _LOCK:
        pipeline, _PIPELINE = _PIPELINE, None
    if pipeline is not None:
        pipeline.close()


def _default_scan(paths: Sequence[Path], progress: Any, cancelled: Any) -> StudySet:
    from inference.imaging.studies import scan

    return scan(paths, progress=progress, cancelled=cancelled)


def _default_load(record: ImageRecord) -> LoadedImage:
    return decode_pipeline().load(record)


def _default_model(path: str, device: str) -> Any:
    from inference.model.session import ModelSession

    return ModelSession.load(path or None, device=device)


def _default_load_prepared(record: ImageRecord, height: int | None, image: bool = True) -> Prepared:
    return decode_pipeline().load_prepared(record, height, image)


def _model_input(session: Any, prepared: Prepared) -> Any:
    """The worker's model input when it was made at the session's height, else preprocess here."""
    from inference.model.predict import prepare

    if prepared.item is not None and prepared.item.array.shape[0] == session.height:
        return prepared.item
    assert prepared.image is not None, "an image without a model input comes with its pixels"
    return prepare(prepared.image, session.height)


def _default_predict_prepared(session: Any, prepared: Sequence[Prepared]) -> list[Prediction]:
    """Run the inputs the workers prepared (those made at another height are prepared here, two at a
    time), in batches of equal width."""
    from inference.model.predict import predict_inputs

    if sum(p.item is None or p.item.array.shape[0] != session.height for p in prepared) < 2:
        inputs = [_model_input(session, p) for p in prepared]
    else:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare") as ex:
            inputs = list(ex.map(lambda p: _model_input(session, p), prepared))
    return predict_inputs(session, inputs, batch_size=4)


def _as_prepared(image: LoadedImage) -> Prepared:
    return Prepared(record=image.record, item=None, pixel_laterality=image.pixel_laterality, image=image)


def _with_breast(image: LoadedImage) -> LoadedImage:
    """Find the breast off the GUI thread (``LoadedImage.breast`` keeps it; the pipeline's workers do
    this themselves): the viewer pins each image by the breast's chest-wall edge."""
    try:
        image.breast  # noqa: B018 - computed for its cache
    except MammoReviewError:  # no breast: the viewer pins the image's edge
        pass
    return image


def _default_predict(session: Any, images: Sequence[LoadedImage]) -> list[Prediction]:
    """Preprocess decoded images (two at a time) and run them."""
    return _default_predict_prepared(session, [_as_prepared(im) for im in images])


@dataclass(frozen=True)
class Backend:
    """The runtime functions the state calls from its workers.

    The state calls :meth:`decode` and :meth:`run_model`. ``load_prepared(record, height)``: one image
    decoded and, at ``height`` (None: decode only), preprocessed, in one request (raises
    ImageReadError); ``predict_prepared(session, prepared)``: the model on those. Absent, they are the
    pipeline's, or, where a test gives its own image-level ``load_image`` or ``predict``, built on it."""

    scan: Callable[[Sequence[Path], Any, Any], StudySet] = _default_scan
    load_image: Callable[[ImageRecord], LoadedImage] = _default_load
    load_model: Callable[[str, str], Any] = _default_model  # (model path or "", device) -> ModelSession
    predict: Callable[[Any, Sequence[LoadedImage]], list[Prediction]] = _default_predict
    load_prepared: Callable[[ImageRecord, int | None], Prepared] | None = None
    predict_prepared: Callable[[Any, Sequence[Prepared]], list[Prediction]] | None = None

    def decode(self, record: ImageRecord, height: int | None, image: bool = True) -> Prepared:
        """One request for the image and, at ``height``, its model input. ``image`` False: the pixels
        need not come back (only the model input is wanted; the pipeline's workers keep them, and a
        problem preprocessing raises ImageReadError); functions given by a test may send them anyway."""
        if self.load_prepared is not None:
            return self.load_prepared(record, height)
        if self.load_image is _default_load:
            image_level = self.predict_prepared is None and self.predict is not _default_predict
            return _default_load_prepared(record, height, image or image_level)  # an image-level model needs them
        return _as_prepared(_with_breast(self.load_image(record)))

    def run_model(self, session: Any, prepared: Sequence[Prepared]) -> list[Prediction]:
        """The model on decoded images (their model inputs where the workers made them)."""
        if self.predict_prepared is not None:
            return self.predict_prepared(session, prepared)
        if self.predict is _default_predict:
            return _default_predict_prepared(session, prepared)
        images = [p.image for p in prepared]
        assert all(im is not None for im in images), "the image-level model needs the pixels"
        return self.predict(session, [im for im in images if im is not None])


def reason(exc: BaseException) -> str:
    """What to tell the user about a file that failed."""
    return exc.reason if isinstance(exc, MammoReviewError) else f"{type(exc).__name__}: {exc}"


def error_text(err: WorkerError) -> str:
    """The message of a worker's error: the runtime's own words, else the exception and its traceback."""
    exc = err.exception
    if isinstance(exc, MammoReviewError):
        return str(exc)
    return f"Unexpected error: {type(exc).__name__}: {exc}\n{err.traceback}"
