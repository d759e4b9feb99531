"""The pieces of the latent-space map: palettes and point sizes, the view box that draws a box or lasso
selection, the legend, and the hover card (used by :class:`app.widgets.explorer.ExplorerPanel`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QLinearGradient, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QFrame, QGraphicsPathItem, QHBoxLayout, QLabel, QSizePolicy, QWidget

from app.models.explorer import Colouring

__all__ = [
    "BACKGROUND",
    "CATEGORY_COLOURS",
    "CURRENT_PEN",
    "LEGEND_ENTRIES",
    "SELECTION_PEN",
    "SELECTION_RINGS",
    "UNKNOWN_COLOUR",
    "VALUE_BINS",
    "HoverCard",
    "Legend",
    "SelectViewBox",
    "palette",
    "point_size",
    "value_colours",
]

BACKGROUND = "#161616"
UNKNOWN_COLOUR = "#5c5c5c"
#: Bright, distinguishable on a dark background (Okabe-Ito / Tableau inspired).
CATEGORY_COLOURS = (
    "#4ea1ff", "#ff9f43", "#3ddc97", "#ff5c7a", "#b48cff",
    "#ffd166", "#5ad1e8", "#f78fb3", "#a3cb38", "#c8a27c",
)  # fmt: skip
CURRENT_PEN = "#ffffff"
SELECTION_PEN = "#00e5ff"
SELECTION_RINGS = 300
LEGEND_ENTRIES = 10
VALUE_BINS = 32


def value_colours(n: int = VALUE_BINS) -> list[QColor]:
    """``n`` colours of the 'plasma' map without its darkest end (invisible on a dark background)."""
    cmap = pg.colormap.get("plasma")
    return [cmap.mapToQColor(0.18 + 0.82 * i / max(n - 1, 1)) for i in range(n)]


def point_size(n: int) -> float:
    """Point diameter in pixels for ``n`` points: big for a study, small for an archive."""
    return 8.0 if n <= 2000 else 6.0 if n <= 10000 else 4.0 if n <= 50000 else 3.0


class SelectViewBox(pg.ViewBox):  # type: ignore[misc]  # pyqtgraph has no type information (its classes are Any)
    """A ViewBox that pans/zooms, or draws a selection box or lasso with the left button."""

    sigSelect = Signal(str, object, bool)  # "box" | "lasso", (x0, y0, x1, y1) or (M, 2) polygon, add

    def __init__(self) -> None:
        super().__init__(enableMenu=False)
        self.mode = "pan"
        self._start: QPointF | None = None
        self._path: list[QPointF] = []
        self._outline = QGraphicsPathItem()
        pen = QPen(QColor(SELECTION_PEN), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._outline.setPen(pen)
        self._outline.setBrush(QBrush(QColor(0, 229, 255, 30)))
        self._outline.setZValue(1e6)
        self._outline.hide()
        self.addItem(self._outline, ignoreBounds=True)

    def mouseDragEvent(self, ev: Any, axis: int | None = None) -> None:  # noqa: N802 - pyqtgraph name
        if self.mode == "pan" or ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        p = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            self._start = self.mapSceneToView(ev.buttonDownScenePos())
            self._path = [self._start]
        self._path.append(p)
        path = QPainterPath()
        if self.mode == "box" and self._start is not None:
            path.addRect(QRectF(self._start, p).normalized())
        else:
            path.moveTo(self._path[0])
            for q in self._path[1:]:
                path.lineTo(q)
            path.closeSubpath()
        self._outline.setPath(path)
        self._outline.show()
        if ev.isFinish():
            self._outline.hide()
            add = bool(ev.modifiers() & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier))
            if self.mode == "box" and self._start is not None:
                self.sigSelect.emit("box", (self._start.x(), self._start.y(), p.x(), p.y()), add)
            elif len(self._path) >= 3:
                self.sigSelect.emit("lasso", np.array([(q.x(), q.y()) for q in self._path]), add)
            self._start, self._path = None, []


class HoverCard(QFrame):
    """The tooltip-like card of the point under the mouse: thumbnail and values."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.key = ""
        self.setStyleSheet(
            "QFrame { background: #1f1f1f; border: 1px solid #5a5a5a; border-radius: 4px; }"
            "QLabel { border: none; background: transparent; color: #e6e6e6; }"
        )
        self.image = QLabel()
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.RichText)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 6, 8, 6)
        lay.setSpacing(8)
        lay.addWidget(self.image)
        lay.addWidget(self.text)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAutoFillBackground(True)
        self.hide()


class Legend(QWidget):
    """Category swatches with counts, or a colour bar with its range."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colouring: Colouring | None = None
        self.entries: list[tuple[QColor, str]] = []
        self.setMinimumHeight(22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_colouring(self, colouring: Colouring, entries: list[tuple[QColor, str]]) -> None:
        self.colouring, self.entries = colouring, entries
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt name
        c = self.colouring
        if c is None:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = p.fontMetrics()
        y = (self.height() - fm.height()) // 2 + fm.ascent()
        p.setPen(QColor(170, 170, 170))
        p.drawText(4, y, c.label + ":")
        x = 12 + fm.horizontalAdvance(c.label + ":")
        if c.kind == "value":
            bar = QRectF(x, self.height() / 2 - 5, min(220, self.width() - x - 120), 10)
            grad = QLinearGradient(bar.topLeft(), bar.topRight())
            cols = value_colours(8)
            for i, col in enumerate(cols):
                grad.setColorAt(i / (len(cols) - 1), col)
            p.fillRect(bar, grad)
            p.setPen(QColor(220, 220, 220))
            p.drawText(int(bar.left()) - 2 - fm.horizontalAdvance(f"{c.vmin:.2g}") - 2, y, f"{c.vmin:.2g}")
            p.drawText(int(bar.right()) + 4, y, f"{c.vmax:.2g}")
            x = int(bar.right()) + 12 + fm.horizontalAdvance(f"{c.vmax:.2g}")
            entries = self.entries[-1:]  # "unknown"
        else:
            entries = self.entries
        for colour, text in entries:
            p.setBrush(colour)
            p.setPen(Qt.PenStyle.NoPen)
            p.drawEllipse(QRectF(x, self.height() / 2 - 5, 10, 10))
            p.setPen(QColor(220, 220, 220))
            p.drawText(x + 14, y, text)
            x += 26 + fm.horizontalAdvance(text)
        p.end()


def palette(c: Colouring) -> list[QColor]:
    """The colours of a colouring; the last one is for unknown values."""
    colours = [QColor(h) for h in CATEGORY_COLOURS] if c.kind == "category" else value_colours()
    return colours + [QColor(UNKNOWN_COLOUR)]
