"""ImageMemory: the decoded images kept for display (an LRU), and which predictions keep their maps.

Every decode of the app goes through :meth:`ImageMemory.decode`: one request per image to the decode
workers, which also preprocess it for the model once its height is known. A second caller asking
for an image on its way (the display job and the model run of a study just opened) waits for that
decode instead of starting another, so each image of a study is decoded once.

Decoding the current study's images runs on the worker pool's ``display`` channel; the model runner
hands over the images it decoded on its way. Once nothing else runs, the next study (in the opened
set's order) is decoded on the ``prefetch`` channel, one study ahead; moving elsewhere cancels it.
Images of the current and the next study are never let go.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.models.activity import Activity
from app.models.backend import Backend, error_text, reason
from app.models.files import FilesState
from app.models.workers import Cancelled, WorkerError, WorkerPool
from inference.errors import ImageReadError, PreprocessError
from inference.imaging.decode import LoadedImage
from inference.imaging.studies import ImageRecord
from inference.model.pipeline import Prepared
from inference.model.predict import ModelInput

_LOG = logging.getLogger(__name__)

__all__ = ["ImageMemory", "IMAGE_MEMORY", "MAPS_MEMORY"]

IMAGE_MEMORY = 16  # decoded images kept for display
# Predictions that keep their model-space maps in memory (about 1.6 MB each at height 512);
# older ones outside the current study reload them from the on-disk cache.
MAPS_MEMORY = 200


class ImageMemory(QObject):
    """Decoded pixels by image key (thread-safe reads), and the LRU of predictions with maps."""

    images_changed = Signal(tuple)  # decoded pixels arrived for these keys

    def __init__(
        self,
        files: FilesState,
        pool: WorkerPool,
        backend: Backend,
        activity: Activity,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.files = files
        self.pool = pool
        self.backend = backend
        self.activity = activity
        self.loading: set[str] = set()  # keys whose pixels are on their way (the model run decodes them)
        self._images: OrderedDict[str, LoadedImage] = OrderedDict()
        self._lock = threading.Lock()
        self._with_maps: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, tuple[Future[Prepared], bool]] = {}  # decodes on their way (and with pixels?)
        self._inputs: OrderedDict[str, ModelInput] = OrderedDict()  # model inputs made with kept images
        self._pinned: frozenset[str] = frozenset()  # the current and the next study (main thread sets it)
        self.height: int | None = None  # the model's input height once known: decodes preprocess for it
        self.decodes = 0  # requests sent to the decode workers (a benchmark and the tests read it)
        files.current_changed.connect(lambda _key: self._on_current())

    def image(self, key: str) -> LoadedImage | None:
        """The decoded image when it is in memory (thread-safe: the workers peek)."""
        with self._lock:
            return self._images.get(key)

    def store(self, images: Sequence[LoadedImage]) -> None:
        """Keep decoded images (the oldest outside the current and the next study go beyond IMAGE_MEMORY)."""
        keys = []
        for img in images:
            key = img.record.key
            with self._lock:
                self._put(key, img)
            self.files.note_pixel_laterality(key, getattr(img, "pixel_laterality", ""))
            keys.append(key)
        if keys:
            self.images_changed.emit(tuple(keys))

    def _put(self, key: str, img: LoadedImage) -> None:  # under the lock
        self._images[key] = img
        self._images.move_to_end(key)
        keep = self._pinned
        for old in list(self._images):
            if len(self._images) <= IMAGE_MEMORY:
                break
            if old not in keep and old != key:
                del self._images[old]
                self._inputs.pop(old, None)

    def retain(self, keys: set[str]) -> None:
        """Let go of the images whose keys are not in ``keys`` (a new set was opened)."""
        with self._lock:
            for k in [k for k in self._images if k not in keys]:
                del self._images[k]
            for k in [k for k in self._inputs if k not in keys]:
                del self._inputs[k]

    def decode(self, record: ImageRecord, height: int | None = None, keep: bool = True) -> Prepared:
        """The image (and, at ``height``, its model input) through one request to the decode workers;
        thread-safe. An image in memory is not decoded again; one on its way is waited for. ``keep``:
        put the pixels in memory at once (they are shown or soon will be); without it the full-size
        pixels may stay in the worker (``image`` None: only the model input is wanted) and a problem
        preprocessing raises ImageReadError too. Raises ImageReadError."""
        key = record.key
        with self._lock:
            image = self._images.get(key)
            if image is not None:
                item = self._inputs.get(key)
                item = item if item is not None and height is not None and item.array.shape[0] == height else None
                return Prepared(record, item, image.pixel_laterality, image=image)
            mine = key not in self._pending
            if mine:
                self._pending[key] = (Future(), keep)
                self.decodes += 1
            pending, with_pixels = self._pending[key]
        if not mine:
            if with_pixels or not keep:
                return pending.result()
            try:  # decoded for the model only; the pixels are wanted: again, with them
                pending.result()
            except (ImageReadError, PreprocessError):
                pass  # (a file that cannot be read fails again, with its pixels asked for)
            return self.decode(record, height, keep)
        try:
            prepared = self._decode_a_copy(record, height, image=keep)
        except BaseException as exc:
            with self._lock:
                self._pending.pop(key, None)
            pending.set_exception(exc)
            raise
        with self._lock:
            if keep and prepared.image is not None:
                self._put(key, prepared.image)
                if prepared.item is not None:
                    self._inputs[key] = prepared.item
            self._pending.pop(key, None)
        pending.set_result(prepared)
        return prepared

    def _decode_a_copy(self, record: ImageRecord, height: int | None, image: bool = True) -> Prepared:
        """``record`` decoded, else the first other file of the same image (same SOP instance) that
        decodes: a corrupt copy sorted first must not hide an intact one. Raises the first error."""
        try:
            return self.backend.decode(record, height, image)
        except ImageReadError as first:
            for copy in self.files.study_set.duplicates.get(record.key, ()):
                try:
                    prepared = self.backend.decode(copy, height, image)
                except ImageReadError:
                    continue
                _LOG.warning("%s: %s; shown from its copy %s", record.path, first.reason, copy.path)
                return prepared
            raise

    def next_study_keys(self) -> set[str]:
        """The keys of the study after the current one in the opened set's order (none after the last)."""
        studies = self.files.study_set.studies
        current = self.files.current_study
        for i, study in enumerate(studies[:-1]):
            if study is current:
                return {r.key for r in studies[i + 1].images}
        return set()

    def _on_current(self) -> None:
        self._pinned = frozenset(self.files.current_study_keys() | self.next_study_keys())
        self.pool.cancel("prefetch")  # the person moved: the old next study is not wanted first
        self.ensure_current()

    def keep_maps(self, key: str) -> list[str]:
        """Note that ``key``'s prediction has its maps; returns the keys whose maps must go (beyond
        MAPS_MEMORY, the oldest outside the current study)."""
        self._with_maps[key] = None
        self._with_maps.move_to_end(key)
        keep = self.files.current_study_keys()
        dropped = []
        for old in list(self._with_maps):
            if len(self._with_maps) <= MAPS_MEMORY:
                break
            if old in keep:
                continue
            del self._with_maps[old]
            dropped.append(old)
        return dropped

    # ------------------------------------------------------------------ decoding for display
    def ensure_current(self) -> None:
        """Decode the current study's images that are neither in memory nor on their way; when
        nothing else decodes, prefetch the next study."""
        study = self.files.current_study
        if study is None:
            return
        missing = self._missing(study.images)
        if missing:
            self.pool.submit(
                self._decode_job(missing), channel="display", on_yield=self._on_item, on_error=self._on_error,
                on_finished=lambda cancelled: None if cancelled else self.prefetch(),
            )  # fmt: skip
        else:
            self.prefetch()

    def prefetch(self) -> None:
        """Decode the next study's images in the background (one study ahead) while nothing else runs;
        the model run predicts every opened image, so moving on shows pixels and predictions at once."""
        if self.pool.running("inference") or self.pool.running("display"):
            return  # the run's end (or the display job's) asks again
        study = self.files.study_of(next(iter(self.next_study_keys()), None))
        missing = self._missing(study.images) if study is not None else []
        if missing:
            self.pool.submit(self._decode_job(missing), channel="prefetch", on_yield=self._on_item)

    def _missing(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        problems = self.files.load_problems
        return [r for r in records if self.image(r.key) is None and r.key not in self.loading and r.key not in problems]

    def _decode_job(
        self, records: list[ImageRecord]
    ) -> Callable[[Callable[[int, int], None], Callable[[], bool]], Iterator[tuple[Any, ...]]]:
        height = self.height

        def job(progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> Iterator[tuple[Any, ...]]:
            for i, rec in enumerate(records):
                if cancelled():
                    raise Cancelled()
                try:
                    prepared = self.decode(rec, height)
                    assert prepared.image is not None
                    yield ("image", prepared.image)
                except (ImageReadError, OSError, ValueError) as exc:
                    yield ("problem", rec.key, reason(exc))
                progress(i + 1, len(records))

        return job

    def _on_item(self, item: tuple[Any, ...]) -> None:
        if item[0] == "image":
            self.store([item[1]])
        else:
            _, key, why = item
            self.loading.discard(key)
            self.files.add_problem(key, why)

    def _on_error(self, err: WorkerError) -> None:
        self.loading.clear()
        self.activity.idle()
        self.activity.say("error", error_text(err))

