"""The one image pipeline of the CLI and the app: untrusted pixels decoded and preprocessed in worker processes.

An image's way to the model, in a worker of the shared :class:`~inference.imaging.isolation.DecodePool`
(spawned processes, reused across images; a panic, crash, abort, out-of-memory or timeout in a
native decoder costs that one file an :class:`~inference.errors.ImageReadError` with the reason):

1. the limits checked from the header before decoding (:func:`inference.imaging.limits.check_file`:
   pixels per frame, claimed vs stored size, the inflated size of a deflated data set);
2. :func:`inference.imaging.decode.load_image` (pixels, LUTs, the chest-wall side);
3. :func:`inference.model.predict.prepare` (preprocessing with the breast the decoder found).

The parent receives a :class:`Prepared`: the model input (``[H, W]`` float32 at the model's height, a
few hundred kB), the chest-wall side seen in the pixels and, only when asked for, the full
:class:`~inference.imaging.decode.LoadedImage` (the app's display) or a small preview (the CLI's maps).
The parent runs the ONNX model; :meth:`Pipeline.prepared` streams the results in input order while
the workers go on with the next images::

    with Pipeline() as pipeline:
        for record, prepared in pipeline.prepared(records, session.height):
            ...  # Prepared, or the ImageReadError of that file

The pool is started on first use (a worker takes about a second to import numpy and pydicom) and
closed by :meth:`Pipeline.close`. Settings come from the environment (``MAMMO_DECODE_WORKERS``,
``MAMMO_DECODE_MEMORY_MB``, ``MAMMO_DECODE_TIMEOUT_S``, ``MAMMO_MAX_PIXELS`` ...) unless given.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inference.errors import ImageReadError, PreprocessError
from inference.imaging.decode import LoadedImage, load_image
from inference.imaging.isolation import DecodePool, settings_from_env
from inference.imaging.limits import Limits, check_file, limits_from_env
from inference.imaging.pilview import float_image
from inference.imaging.studies import ImageRecord
from inference.model.predict import ModelInput, prepare

__all__ = ["Request", "Prepared", "Pipeline", "work", "thumbnail", "PREVIEW_HEIGHT"]

#: Height of the preview a worker makes for the CLI's maps folder.
PREVIEW_HEIGHT = 256


@dataclass(frozen=True)
class Request:
    """What a worker is sent for one image. ``height`` None: decode only (the app's display)."""

    record: ImageRecord
    height: int | None
    limits: Limits = Limits()
    image: bool = False  # send the LoadedImage back (full-size pixels: only where they are shown)
    preview: bool = False  # send a PREVIEW_HEIGHT preview back

    @property
    def path(self) -> Path:  # the pool names the file of an error by this
        return self.record.path


@dataclass(frozen=True, eq=False)
class Prepared:
    """One image through the workers' half of the pipeline.

    ``item`` is None when the image decoded but could not be preprocessed (``problem`` says why) or
    when no height was asked for."""

    record: ImageRecord
    item: ModelInput | None
    pixel_laterality: str  # "R" | "L" from the pixels, "" when no breast was found
    problem: str = ""
    image: LoadedImage | None = None
    preview: np.ndarray | None = None  # float32 [<=PREVIEW_HEIGHT, w] in [0, 1]


def thumbnail(pixels: np.ndarray, height: int = PREVIEW_HEIGHT) -> np.ndarray:
    """The image scaled to ``height`` rows (box filter), float32 in [0, 1]."""
    h, w = pixels.shape
    th = min(height, h)
    tw = max(1, int(round(w * th / h)))
    img = float_image(pixels).resize((tw, th), Image.Resampling.BOX)
    out: np.ndarray = np.clip(np.asarray(img), 0.0, 1.0)
    return out


def work(request: Request) -> Prepared:
    """The worker's function (module level: the pool pickles it). Raises ImageReadError (or a
    subclass) for a file that cannot be read; a file that decodes but has no breast comes back with
    its ``problem`` when the image was asked for (the app shows it anyway), else raises PreprocessError."""
    record = request.record
    if record.kind == "dicom":
        check_file(record.path, request.limits)
    loaded = load_image(record)
    item: ModelInput | None = None
    problem = ""
    if request.height is None and request.image:
        try:  # found here, the breast travels with the image: preprocessing will not search again
            loaded.breast  # noqa: B018 - the property finds and keeps the mask
        except PreprocessError as exc:
            problem = exc.reason
    if request.height is not None:
        try:
            item = prepare(loaded, request.height)
        except PreprocessError as exc:
            if not request.image:
                raise
            problem = exc.reason
    return Prepared(
        record=record,
        item=item,
        pixel_laterality=loaded.pixel_laterality,
        problem=problem,
        image=loaded if request.image else None,
        preview=thumbnail(loaded.pixels) if request.preview else None,
    )


class Pipeline:
    """The shared decode pool and the limits it checks; see the module's docstring.

    ``workers``, ``memory_limit_mb``, ``timeout_s``: the pool's (:class:`DecodePool`; absent: the
    environment's, else its defaults); ``limits``: the header limits (absent: the environment's).
    Thread-safe: the app's workers share one pipeline."""

    def __init__(self, limits: Limits | None = None, **pool_settings: Any) -> None:
        self.limits = limits_from_env() if limits is None else limits
        self._settings = {**settings_from_env(), **{k: v for k, v in pool_settings.items() if v is not None}}
        self._pool: DecodePool[Prepared] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pool(self) -> DecodePool[Prepared]:
        """The decode pool, started on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the pipeline is closed")
            if self._pool is None:
                self._pool = DecodePool(decode=work, **self._settings)
            return self._pool

    def start(self) -> int:
        """Start the decode workers now rather than on the first image (see DecodePool.start)."""
        return self.pool.start()

    @property
    def workers(self) -> int:
        return self.pool.workers

    def prepared(
        self, records: Iterable[ImageRecord], height: int | None, image: bool = False, preview: bool = False
    ) -> Iterator[tuple[ImageRecord, Prepared | ImageReadError]]:
        """(record, Prepared or that file's error) for every record, in order, streaming."""
        requests = (Request(r, height, self.limits, image, preview) for r in records)
        for request, result in self.pool.map(requests):
            yield request.record, result

    def load(self, record: ImageRecord) -> LoadedImage:
        """Decode one image in a worker, its breast found there too (:attr:`LoadedImage.breast`, kept
        with the image; an image without a breast still comes back); raises ImageReadError with the reason."""
        result = self.pool.load(Request(record, None, self.limits, image=True))
        assert result.image is not None
        return result.image

    def load_prepared(self, record: ImageRecord, height: int | None, image: bool = True) -> Prepared:
        """Decode one image in a worker and, at ``height``, preprocess it there too (the app's one
        request per image: the display's pixels and the model's input together). The breast is found
        either way; a problem preprocessing comes back in ``problem``. ``image`` False: the full-size
        pixels stay in the worker (an image only predicted, not shown), and a problem preprocessing
        raises too. Raises ImageReadError."""
        result = self.pool.load(Request(record, height, self.limits, image=image))
        assert result.image is not None or not image
        return result

    def close(self) -> None:
        """Stop the workers; the pipeline cannot be used afterwards."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
