"""The runtime functions the app's state objects call from their workers (the real ``inference`` by default).

Images are decoded in the worker processes of one :class:`inference.model.pipeline.Pipeline` per
process (:func:`decode_pipeline`: started on the first decode, closed at exit), the one the CLI uses
too: a decoder that panics, crashes or runs out of memory costs that image a problem, never the app.
The worker also finds the breast, which comes back with the image, so preprocessing here only crops
and resizes. Tests pass their own :class:`Backend` to drive the state without a model.
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
from inference.model.pipeline import Pipeline
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


def reason(exc: BaseException) -> str:
    """What to tell the user about a file that failed."""
    return exc.reason if isinstance(exc, MammoReviewError) else f"{type(exc).__name__}: {exc}"


def error_text(err: WorkerError) -> str:
    """The message of a worker's error: the runtime's own words, else the exception and its traceback."""
    exc = err.exception
    if isinstance(exc, MammoReviewError):
        return str(exc)
    return f"Unexpected error: {type(exc).__name__}: {exc}\n{err.traceback}"
