"""Thumbnails of images by key, and the "Similar cases" strip of the latent-space explorer.

:class:`Thumbnails` makes small grey previews: from the network's input of a prediction (already
cropped, chest wall left), else the decoded image in memory, else (archive images that are not
opened) by reading the file in a worker of AppState's pool. :class:`SimilarStrip` shows, for the
current image, its nearest neighbours in the full latent space (cosine), each tile with its file
name, patient, laterality and view, the person's label ("no label" when none), the distance and the
map's colouring value; a click shows one in the viewer.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence

import numpy as np
from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from app.models.explorer import ExplorerState
from inference.errors import MammoReviewError
from inference.latent.projection import Neighbour
from inference.model.predict import Prediction, PredictionSummary

__all__ = ["Thumbnails", "SimilarStrip", "thumbnail_array", "THUMB_HEIGHT"]

THUMB_HEIGHT = 96
_TILE_LINES = 5  # file name, patient and side, label, distance and p, the colouring's value
_LINE = 14
_TEXT_HEIGHT = _TILE_LINES * _LINE + 6
log = logging.getLogger(__name__)
_MEMORY = 400
_QUEUE = 64  # previews waiting to be read at most (older requests fall off)


def thumbnail_array(pixels: np.ndarray, height: int = THUMB_HEIGHT, flip: bool = False) -> np.ndarray:
    """A uint8 grey thumbnail ``height`` rows high (area-averaged), optionally mirrored."""
    a = np.asarray(pixels, np.float32)
    if a.ndim != 2 or not a.size:
        return np.zeros((height, max(1, height * 3 // 4)), np.uint8)
    step = max(1, a.shape[0] // height)
    h, w = (a.shape[0] // step) * step, (a.shape[1] // step) * step
    if step > 1 and h and w:
        a = a[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))
    if flip:
        a = a[:, ::-1]
    return np.ascontiguousarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _pixmap(gray: np.ndarray) -> QPixmap:
    h, w = gray.shape
    img = QImage(gray.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    pm = QPixmap.fromImage(img)
    if h != THUMB_HEIGHT:
        pm = pm.scaledToHeight(THUMB_HEIGHT, Qt.TransformationMode.SmoothTransformation)
    return pm


def _model_thumbnail(pred: PredictionSummary | None) -> np.ndarray | None:
    """The thumbnail of what the network saw (cropped to the breast, chest wall left), if kept."""
    if not isinstance(pred, Prediction):  # none, or its maps were let go
        return None
    mi = pred.model_input
    return thumbnail_array(mi[:, : max(1, pred.geometry.content_shape[1])])


def _load_thumbnail(path: str, cached: Callable[[], Prediction | None] | None) -> np.ndarray:
    """From the prediction cache on disk when it has the image, else from the file itself."""
    if cached is not None:
        gray = _model_thumbnail(cached())
        if gray is not None:
            return gray
    from inference.imaging.decode import load_image

    img = load_image(path)
    return thumbnail_array(img.pixels, flip=img.chest_wall_right)


class Thumbnails(QObject):
    """Previews by image key; ``ready(key)`` when one read in the background arrives."""

    ready = Signal(str)

    def __init__(self, explorer: ExplorerState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.explorer = explorer
        self.app = explorer.app
        self._cache: OrderedDict[str, QPixmap] = OrderedDict()
        self._failed: set[str] = set()
        self._queue: list[
            tuple[str, str, Callable[[], Prediction | None] | None]
        ] = []  # (key, path, cache reader), most wanted first
        self._running = False
        self._jobs = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> QPixmap | None:
        """The preview now, or None (then it is read in the background when the file is known)."""
        pm = self._cache.get(key)
        if pm is not None:
            self._cache.move_to_end(key)
            return pm
        gray = self._from_memory(key)
        if gray is not None:
            return self._keep(key, _pixmap(gray))
        if key not in self._failed and self.explorer.path_of(key):
            self.request([key])
        return None

    def _from_memory(self, key: str) -> np.ndarray | None:
        gray = _model_thumbnail(self.app.runner.predictions.get(key))
        if gray is not None:
            return gray
        img = self.app.memory.image(key)
        if img is not None:
            return thumbnail_array(img.pixels, flip=img.chest_wall_right)
        return None

    def _cache_reader(self, key: str) -> Callable[[], Prediction | None] | None:
        """Reads a prediction whose maps the model runner let go back from its on-disk cache (in the worker)."""
        pred = self.app.runner.predictions.get(key)
        if pred is None:
            return None
        cache, version = self.app.runner.cache, pred.model_version
        return lambda: cache.get(key, version)

    def _keep(self, key: str, pm: QPixmap) -> QPixmap:
        self._cache[key] = pm
        self._cache.move_to_end(key)
        while len(self._cache) > _MEMORY:
            self._cache.popitem(last=False)
        return pm

    def request(self, keys: Sequence[str]) -> None:
        """Read the previews of these archive images in the background, newest request first.

        One job drains a shared queue, so requests (hover, similar cases) never cancel each other.
        """
        todo = [
            (k, p, self._cache_reader(k))
            for k in keys
            if k not in self._cache and k not in self._failed and (p := self.explorer.path_of(k))
        ]
        if not todo:
            return
        with self._lock:
            queued = {item[0] for item in self._queue}
            self._queue[:0] = [item for item in todo if item[0] not in queued]
            del self._queue[_QUEUE:]
            if self._running:
                return
            self._running = True

        def job(
            progress: Callable[[int, int], None], cancelled: Callable[[], bool]
        ) -> Generator[tuple[str, np.ndarray | None], None, int]:
            done = 0
            try:
                while True:
                    with self._lock:
                        if not self._queue or cancelled():
                            self._running = False
                            return done
                        key, path, cached = self._queue.pop(0)
                    try:
                        gray: np.ndarray | None = _load_thumbnail(path, cached)
                    except (MammoReviewError, OSError, ValueError):
                        gray = None  # unreadable or gone: no preview
                    except Exception:  # a preview must never stop the queue; keep the reason in the log
                        log.exception("preview of %s (%s) failed", key, path)
                        gray = None
                    yield key, gray
                    done += 1
            except GeneratorExit:  # the pool cancelled and closed this job (on quit)
                with self._lock:
                    self._running = False
                raise

        def arrived(item: tuple[str, np.ndarray | None]) -> None:
            key, gray = item
            if gray is None:
                self._failed.add(key)
                return
            self._keep(key, _pixmap(gray))
            self.ready.emit(key)

        # One job at a time (it alone clears ``_running``, under the lock, when the queue is empty). Each job
        # has its own channel: a new job must not turn the previews its predecessor already sent into stale ones.
        self._jobs += 1
        self.app.pool.submit(job, channel=f"explorer-thumbnails-{self._jobs}", on_yield=arrived, owner=self)


class _Tile(QWidget):
    """One similar case: thumbnail and its lines (file, patient and side, label, distance, value);
    click shows it, double-click opens its file."""

    clicked = Signal(str)
    double_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = ""
        self.pixmap: QPixmap | None = None
        self.lines: tuple[str, ...] = ()
        self.accent = QColor("#888888")
        self.setFixedSize(QSize(124, THUMB_HEIGHT + 8 + _TEXT_HEIGHT))
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def set_case(self, key: str, pixmap: QPixmap | None, lines: Sequence[str], accent: QColor, tip: str) -> None:
        self.key, self.pixmap, self.lines, self.accent = key, pixmap, tuple(lines), accent
        self.setToolTip(tip)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt name
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(28, 28, 28))
        box = self.rect().adjusted(4, 4, -4, -(_TEXT_HEIGHT + 4))
        if self.pixmap is not None and not self.pixmap.isNull():
            pm = self.pixmap.scaled(
                box.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
            p.drawPixmap(box.x() + (box.width() - pm.width()) // 2, box.y(), pm)
        else:
            p.setPen(QColor(90, 90, 90))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, "…")
        p.fillRect(4, box.bottom() + 3, 4, _TEXT_HEIGHT - 4, self.accent)
        fm = p.fontMetrics()
        for i, line in enumerate(self.lines[:_TILE_LINES]):
            p.setPen(QColor(235, 235, 235) if i != 2 or line != "no label" else QColor(150, 150, 150))
            text = fm.elidedText(line, Qt.TextElideMode.ElideMiddle, self.width() - 14)
            p.drawText(12, box.bottom() + 16 + _LINE * i, text)
        p.end()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt name
        if event.button() == Qt.MouseButton.LeftButton and self.key:
            self.clicked.emit(self.key)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt name
        if self.key:
            self.double_clicked.emit(self.key)


class SimilarStrip(QWidget):
    """The k nearest images of the current one (cosine, full latent space), as thumbnails."""

    def __init__(
        self,
        explorer: ExplorerState,
        thumbnails: Thumbnails,
        accent: Callable[[str], QColor],
        k: int = 8,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.explorer = explorer
        self.thumbnails = thumbnails
        self.accent = accent
        self.k = k
        self.cases: tuple[Neighbour, ...] = ()
        self.title = QLabel("Similar cases")
        self.title.setStyleSheet("color: #bbbbbb; font-weight: bold;")
        self.tiles = [_Tile() for _ in range(k)]
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        for t in self.tiles:
            t.clicked.connect(explorer.open)
            t.double_clicked.connect(explorer.open_file)
            row.addWidget(t)
        row.addStretch(1)
        inner = QWidget()
        inner.setLayout(row)
        scroll = QScrollArea()
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setFixedHeight(THUMB_HEIGHT + 8 + _TEXT_HEIGHT + 18)
        scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.title)
        lay.addWidget(scroll)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        app = explorer.app
        app.files.current_changed.connect(lambda _k: self.refresh())
        explorer.points_changed.connect(self.refresh)
        explorer.colour_changed.connect(self._repaint_labels)
        thumbnails.ready.connect(self._on_thumbnail)
        self.refresh()

    def refresh(self) -> None:
        key = self.explorer.app.files.current_key
        self.cases = self.explorer.similar(key, self.k) if key else ()
        if key and not self.cases:
            self.title.setText("Similar cases: the current image is not in the explorer")
        elif key:
            self.title.setText(
                f"Similar cases ({len(self.cases)} nearest, cosine distance in the {self._dim()}-d latent space)"
            )
        else:
            self.title.setText("Similar cases")
        self.thumbnails.request([n.key for n in self.cases if self.thumbnails.get(n.key) is None])
        self._repaint_labels()

    def _dim(self) -> int:
        emb = self.explorer.embeddings
        return int(emb.z.shape[1]) if emb is not None else 0

    def _repaint_labels(self) -> None:
        ex = self.explorer
        colouring = ex.colouring() if len(ex.keys) else None
        for i, tile in enumerate(self.tiles):
            if i >= len(self.cases):
                tile.set_case("", None, (), QColor(0, 0, 0, 0), "")
                tile.setVisible(False)
                continue
            n = self.cases[i]
            row = ex.row(n.key)
            value = colouring.describe(row) if colouring is not None and row is not None else ""
            pred = ex.app.runner.predictions.get(n.key)
            p = f"p {pred.p_malignant:.2f}" if pred is not None and pred.p_malignant == pred.p_malignant else ""
            case = ex.case(n.key)
            who = f"{case.patient or 'patient ?'} · {case.side}"
            lines = (case.name or n.key, who, case.label, f"d {n.distance:.3f}  {p}".rstrip(), value)
            path = ex.path_of(n.key)
            tip = (
                f"{case.name or n.key}\n{path}\n{who}\nlabel: {case.label}\ncosine distance {n.distance:.4f}\n"
                f"{colouring.label if colouring else ''}: {value}"
            )
            tile.set_case(n.key, self.thumbnails.get(n.key), lines, self.accent(n.key), tip)
            tile.setVisible(True)

    def _on_thumbnail(self, key: str) -> None:
        if any(n.key == key for n in self.cases):
            self._repaint_labels()
