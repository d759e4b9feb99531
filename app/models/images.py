"""ImageMemory: the decoded images kept for display (an LRU), and which predictions keep their maps.

Decoding the current study's images runs on the worker pool's ``display`` channel; the model runner
hands over the images it decoded on its way. Images of the current study are never let go.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.models.activity import Activity
from app.models.backend import Backend, error_text, reason
from app.models.files import FilesState
from app.models.workers import Cancelled, WorkerError, WorkerPool
from inference.errors import ImageReadError, MammoReviewError
from inference.imaging.decode import LoadedImage

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
        files.current_changed.connect(lambda _key: self.ensure_current())

    def image(self, key: str) -> LoadedImage | None:
        """The decoded image when it is in memory (thread-safe: the workers peek)."""
        with self._lock:
            return self._images.get(key)

    def store(self, images: Sequence[LoadedImage]) -> None:
        """Keep decoded images (the oldest outside the current study go beyond IMAGE_MEMORY)."""
        keys = []
        for img in images:
            key = img.record.key
            keep = self.files.current_study_keys()
            with self._lock:
                self._images[key] = img
                self._images.move_to_end(key)
                for old in list(self._images):
                    if len(self._images) <= IMAGE_MEMORY:
                        break
                    if old not in keep:
                        del self._images[old]
            self.files.note_pixel_laterality(key, getattr(img, "pixel_laterality", ""))
            keys.append(key)
        if keys:
            self.images_changed.emit(tuple(keys))

    def retain(self, keys: set[str]) -> None:
        """Let go of the images whose keys are not in ``keys`` (a new set was opened)."""
        with self._lock:
            for k in [k for k in self._images if k not in keys]:
                del self._images[k]

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
        """Decode the current study's images that are neither in memory nor on their way."""
        study = self.files.current_study
        if study is None:
            return
        problems = self.files.load_problems
        missing = [
            r for r in study.images if self.image(r.key) is None and r.key not in self.loading and r.key not in problems
        ]
        if not missing:
            return
        load = self.backend.load_image

        def job(progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> Iterator[tuple[Any, ...]]:
            for i, rec in enumerate(missing):
                if cancelled():
                    raise Cancelled()
                try:
                    yield ("image", _with_breast(load(rec)))
                except (ImageReadError, OSError, ValueError) as exc:
                    yield ("problem", rec.key, reason(exc))
                progress(i + 1, len(missing))

        self.pool.submit(job, channel="display", on_yield=self._on_item, on_error=self._on_error)

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


def _with_breast(image: LoadedImage) -> LoadedImage:
    """Find the breast on the display pixels in the worker (``LoadedImage.breast`` keeps it): the
    viewer pins each image by the breast's chest-wall edge and should not find it on the GUI thread."""
    try:
        image.breast  # noqa: B018 - computed for its cache
    except MammoReviewError:  # no breast: the viewer pins the image's edge
        pass
    return image
