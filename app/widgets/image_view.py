"""One image on screen: pixels at explicit levels, optional mirror, overlay, markers, readout, magnifier.

The view shows the modality values (``LoadedImage.raw``) through a window (centre, width) set
explicitly (never auto levels). A mirror, when the hanging needs one, is a transform on the image
and overlay items, so both share exactly the same pixel-to-screen mapping and the pixel readout
still reports the original pixel. Right-drag (or Shift + left-drag) changes the window as OHIF and
cornerstone do (cornerstoneTools' wwwc tool: ``windowWidth += dx``, ``windowCenter += dy``): right
widens, left narrows, down raises the centre (darker), up lowers it (brighter); the view emits the
request and the state decides. The magnifier goes at once when switched off and follows the
window and the inversion while shown.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Qt, Signal
from PySide6.QtGui import QImage, QPixmap, QResizeEvent, QTransform
from PySide6.QtWidgets import QLabel, QWidget

from inference.errors import MammoReviewError
from inference.imaging.decode import LoadedImage

__all__ = ["ImageView", "ViewContent", "window_for", "PRESETS"]

#: Window presets besides the file's own windows: name -> title.
PRESETS = {
    "default": "File window",
    "auto": "Breast (auto)",
    "full": "Full range",
    "dense": "Dense tissue",
    "soft": "Fatty tissue / skin",
}
_MAG_RADIUS = 48  # image pixels around the cursor
_MAG_SIZE = 240  # on-screen pixels
_FULL_RES_MAX = 2048  # larger images are drawn from 2 x 2 block means (the magnifier and readout use every pixel)


_STATS: dict[int, tuple[weakref.ref[LoadedImage], tuple[float, float, float, float, float]]] = {}


def _breast_stats(img: LoadedImage) -> tuple[float, float, float, float, float]:
    """(min, p1, p50, p99.5, max) of modality values inside the breast (coarse, fast), once per image:
    the viewer asks again each time a study's image lands or the layout changes."""
    seen = _STATS.get(id(img))
    if seen is not None and seen[0]() is img:
        return seen[1]
    stats = _stats(img)
    if len(_STATS) >= 64:
        _STATS.pop(next(iter(_STATS)))
    _STATS[id(img)] = (weakref.ref(img), stats)
    return stats


def _stats(img: LoadedImage) -> tuple[float, float, float, float, float]:
    step = max(1, int(max(img.raw.shape) // 512))
    raw = img.raw[::step, ::step]
    disp = img.pixels[::step, ::step]
    inside = raw[disp > 0.04]
    if inside.size < 16:
        inside = raw.ravel()
    p1, p50, p995 = (float(v) for v in np.percentile(inside, [1.0, 50.0, 99.5]))
    return float(raw.min()), p1, p50, p995, float(raw.max())


def _display_copy(data: np.ndarray) -> tuple[np.ndarray, int]:
    """What the image item draws: the pixels, or for a large image their 2 x 2 block means (drawn at
    twice the size, so the original pixel grid is kept) which makes re-windowing four times cheaper."""
    h, w = data.shape
    if max(h, w) <= _FULL_RES_MAX:
        return data, 1
    d = data[: h - h % 2, : w - w % 2].astype(np.float32, copy=False)
    return (d[0::2, 0::2] + d[1::2, 0::2] + d[0::2, 1::2] + d[1::2, 1::2]) * np.float32(0.25), 2


def _chest_wall_column(img: LoadedImage) -> float:
    """The column of the breast's chest-wall edge in the original pixels: the image's edge on that
    side, or inside it when the image is padded beyond the breast (black columns at the chest wall)."""
    w = int(img.pixels.shape[1])
    try:
        breast = img.breast
    except MammoReviewError:  # no breast found: the image's edge
        return float(w) if img.chest_wall_right else 0.0
    cols = np.flatnonzero(breast.grid.any(axis=0))
    if cols.size == 0 or breast.shape[1] != w:
        return float(w) if img.chest_wall_right else 0.0
    if img.chest_wall_right:
        return float(min(w, (int(cols[-1]) + 1) * breast.factor))
    return float(int(cols[0]) * breast.factor)


def window_for(img: LoadedImage, preset: str) -> tuple[float, float]:
    """(centre, width) in modality values of a preset for one image."""
    if preset.startswith("dicom:"):
        i = int(preset.split(":", 1)[1])
        if 0 <= i < len(img.windows):
            return float(img.windows[i].center), max(1e-6, float(img.windows[i].width))
        preset = "default"
    if preset == "default" and img.windows:
        return float(img.windows[0].center), max(1e-6, float(img.windows[0].width))
    lo_all, p1, p50, p995, hi_all = _breast_stats(img)
    lo, hi = p1, p995
    # MONOCHROME1 files hold dense tissue in their low modality values
    dense, soft = ("soft", "dense") if img.inverted else ("dense", "soft")
    if preset == "full":
        lo, hi = lo_all, hi_all
    elif preset == dense:
        lo = (lo + p50) / 2
    elif preset == soft:
        hi = (p50 + hi) / 2
    return (lo + hi) / 2, max(1e-6, hi - lo)


@dataclass(frozen=True)
class ViewContent:
    """What one view shows."""

    key: str
    image: LoadedImage | None
    marker: str  # e.g. "R CC"
    chest_wall_right: bool  # where the chest wall should appear on screen
    reconstruction: np.ndarray | None = None  # show this [0, 1] array instead of the pixels
    caption: str = ""  # extra line under the marker, e.g. "p 0.83"
    flagged: bool = False
    pinned: bool = True  # fit with the chest wall against the inner edge (a pair), else centred


class _ViewBox(pg.ViewBox):  # type: ignore[misc]  # pyqtgraph has no type information (its classes are Any)
    """A ViewBox whose right-drag (or Shift + left-drag) asks for a new window instead of zooming."""

    window_drag = Signal(float, float, bool)  # dx, dy (screen pixels since the drag began), start

    def mouseDragEvent(self, ev: Any, axis: object = None) -> None:  # noqa: N802 - pyqtgraph name
        button = ev.button()
        mods = ev.modifiers()
        shift_left = button == Qt.MouseButton.LeftButton and bool(mods & Qt.KeyboardModifier.ShiftModifier)
        if button == Qt.MouseButton.RightButton or shift_left:
            ev.accept()
            d = ev.screenPos() - ev.buttonDownScreenPos()
            self.window_drag.emit(float(d.x()), float(d.y()), bool(ev.isStart()))
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev: Any) -> None:  # noqa: N802 - pyqtgraph name (its events are untyped)
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()  # right button is for the window: no export menu
            return
        super().mouseClickEvent(ev)


def _label(parent: QWidget, style: str) -> QLabel:
    lab = QLabel(parent)
    lab.setStyleSheet(style)
    lab.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    return lab


_MARKER_STYLE = (
    "color: #ffd34d; font: bold 15pt 'DejaVu Sans'; background: rgba(0,0,0,140); padding: 2px 6px; border-radius: 3px;"
)
_SMALL_STYLE = "color: #d8d8d8; font: 9pt 'DejaVu Sans Mono'; background: rgba(0,0,0,150); padding: 1px 4px;"
_EDGE_STYLE = "color: #9fb7d9; font: bold 10pt 'DejaVu Sans'; background: transparent;"


class ImageView(QWidget):
    """A single image with its markers; emits window and range requests, holds no app state."""

    window_requested = Signal(float, float)  # centre, width
    range_changed_by_user = Signal(object)  # self
    clicked = Signal(str)  # the image key

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(120, 120)
        self.gv = pg.GraphicsView(self, background="k")
        self.vb = _ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.vb.setBackgroundColor("k")
        self.vb.disableAutoRange()
        self.gv.setCentralItem(self.vb)
        self.image_item = pg.ImageItem(autoDownsample=True)
        self.overlay_item = pg.ImageItem()
        self.overlay_item.setZValue(10)
        self.vb.addItem(self.image_item)
        self.vb.addItem(self.overlay_item)
        self.content: ViewContent | None = None
        self.mirrored = False
        self.levels: tuple[float, float] = (0.0, 1.0)
        self.inverted = False
        self._apply_lut()
        self.magnifier = False
        self._mag_at: tuple[int, int, Any] | None = None  # the pixel under the mouse and where, for redraws
        self._data: np.ndarray | None = None
        self._tr = QTransform()  # original pixel coordinates -> view coordinates (the mirror, if any)
        self._chest_wall_x = 0.0  # the breast's chest-wall edge in view coordinates
        self._fitted = True
        self._drag_start: tuple[float, float] = (0.5, 1.0)
        self.marker = _label(self, _MARKER_STYLE)
        self.caption = _label(self, _SMALL_STYLE)
        self.readout = _label(self, _SMALL_STYLE)
        self.edge_outer = _label(self, _EDGE_STYLE)
        self.edge_inner = _label(self, _EDGE_STYLE)
        self.mag = _label(self, "border: 1px solid #ffd34d; background: black;")
        self.mag.hide()
        self.readout.hide()
        self.vb.window_drag.connect(self._on_window_drag)
        self.vb.sigRangeChangedManually.connect(self._on_manual_range)
        self.gv.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.gv.scene().sigMouseClicked.connect(self._on_click)

    # ------------------------------------------------------------------ content
    def set_content(self, content: ViewContent | None) -> None:
        same = (
            self._data is not None
            and self.content is not None
            and content is not None
            and (self.content.key, self.content.pinned, self.content.chest_wall_right)
            == (content.key, content.pinned, content.chest_wall_right)
        )
        self.content = content
        if content is None or (content.image is None and content.reconstruction is None):
            self._data = None
            self.image_item.clear()
            self.overlay_item.clear()
            self.marker.setText(content.marker if content else "")
            self.caption.setText((content.caption or ("loading…" if content.key else "no image")) if content else "")
            self._place_labels()
            return
        if content.reconstruction is not None:
            data = content.reconstruction
        else:
            assert content.image is not None  # the early return above handles neither
            data = content.image.raw
        h, w = data.shape
        cw_right_in_pixels = (
            bool(content.image.chest_wall_right) if content.image is not None else content.chest_wall_right
        )
        mirrored = cw_right_in_pixels != content.chest_wall_right
        if data is not self._data or mirrored != self.mirrored:  # a caption change alone redraws no pixels
            self._data = data
            self.mirrored = mirrored
            tr = QTransform(-1, 0, 0, 1, w, 0) if mirrored else QTransform()
            self._tr = tr
            shown, f = _display_copy(data)
            self.image_item.setTransform(QTransform.fromScale(f, f) * tr)  # item pixel -> original pixel -> view
            self.overlay_item.setTransform(tr)
            self.image_item.setImage(shown, autoLevels=False, levels=self.levels)
        edge = _chest_wall_column(content.image) if content.image is not None else (w if cw_right_in_pixels else 0)
        self._chest_wall_x = w - edge if mirrored else float(edge)
        self.marker.setText(content.marker)
        self.caption.setText(content.caption)
        self.caption.setStyleSheet(_SMALL_STYLE + ("color: #ff6b6b; font-weight: bold;" if content.flagged else ""))
        outer, inner = ("A", "P")
        self.edge_outer.setText(outer)
        self.edge_inner.setText(inner)
        self.edge_outer.setToolTip("anterior (nipple side)")
        self.edge_inner.setToolTip("posterior (chest wall)")
        if not same:
            self._fitted = True
            self.fit()
        self._place_labels()

    @property
    def data_shape(self) -> tuple[int, int] | None:
        return None if self._data is None else (int(self._data.shape[0]), int(self._data.shape[1]))

    def set_levels(self, center: float, width: float) -> None:
        levels = (center - width / 2, center + width / 2)
        if levels != self.levels:
            self.levels = levels
            if self._data is not None:
                self.image_item.setLevels(self.levels)
            self._redraw_magnifier()

    def set_inverted(self, inverted: bool) -> None:
        if inverted != self.inverted:
            self.inverted = inverted
            self._apply_lut()
            self._redraw_magnifier()

    def set_magnifier(self, on: bool) -> None:
        """Show the magnifier under the mouse; off hides it at once (not at the next mouse move)."""
        self.magnifier = on
        if not on:
            self.mag.hide()
        else:
            self._redraw_magnifier()

    def _redraw_magnifier(self) -> None:
        """Draw the shown magnifier again (after a new window or inversion)."""
        if self.magnifier and self._mag_at is not None and self._data is not None:
            row, col, at = self._mag_at
            h, w = self._data.shape
            if 0 <= row < h and 0 <= col < w:
                self._show_magnifier(row, col, at)

    def _apply_lut(self) -> None:
        ramp = np.arange(256, dtype=np.uint8)
        if self.inverted:
            ramp = ramp[::-1].copy()
        self.image_item.setLookupTable(np.stack([ramp] * 3, axis=1))

    def set_overlay(self, rgba: np.ndarray | None) -> None:
        if rgba is None or self._data is None:
            self.overlay_item.clear()
            self.overlay_item.hide()
            return
        self.overlay_item.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.overlay_item.show()

    # ------------------------------------------------------------------ geometry
    def image_to_view(self, row: float, col: float) -> QPointF:
        """Where the centre of original pixel (row, col) lands in the view's coordinates."""
        return self._tr.map(QPointF(col + 0.5, row + 0.5))

    def fit(self) -> None:
        """Whole image in view, the breast's chest-wall edge against the inner edge (the middle of the
        hanging), so a padded image leaves no black gap between the breasts."""
        shape = self.data_shape
        if shape is None:
            return
        h, w = shape
        vw, vh = float(self.vb.width()), float(self.vb.height())
        if vw < 2 or vh < 2:
            self.vb.setRange(xRange=(0, w), yRange=(0, h), padding=0)
            return
        scale = min(vw / w, vh / h)
        xspan, yspan = vw / scale, vh / scale
        y0 = (h - yspan) / 2
        if self.content is not None and not self.content.pinned:
            x0 = (w - xspan) / 2
        else:
            cw = self._chest_wall_x
            x0 = cw - xspan if self.content is not None and self.content.chest_wall_right else cw
        self.vb.setRange(xRange=(x0, x0 + xspan), yRange=(y0, y0 + yspan), padding=0)
        self._fitted = True

    def view_state(self) -> tuple[float, float, float] | None:
        """(distance of the view centre from the breast's chest wall, centre row, visible rows) for syncing."""
        shape = self.data_shape
        if shape is None or self.content is None:
            return None
        (x0, x1), (y0, y1) = self.vb.viewRange()
        cx = (x0 + x1) / 2
        d = self._chest_wall_x - cx if self.content.chest_wall_right else cx - self._chest_wall_x
        return d, (y0 + y1) / 2, y1 - y0

    def apply_view_state(self, state: tuple[float, float, float]) -> None:
        shape = self.data_shape
        if shape is None or self.content is None:
            return
        d, cy, span = state
        vw, vh = float(self.vb.width()), float(self.vb.height())
        xspan = span * (vw / vh) if vh > 1 else span
        cx = self._chest_wall_x - d if self.content.chest_wall_right else self._chest_wall_x + d
        self.vb.setRange(xRange=(cx - xspan / 2, cx + xspan / 2), yRange=(cy - span / 2, cy + span / 2), padding=0)
        self._fitted = False

    def _on_manual_range(self, *args: object) -> None:
        self._fitted = False
        self.range_changed_by_user.emit(self)

    # ------------------------------------------------------------------ mouse
    def _on_window_drag(self, dx: float, dy: float, start: bool) -> None:
        lo, hi = self.levels
        if start:
            self._drag_start = ((lo + hi) / 2, hi - lo)
        c0, w0 = self._drag_start
        width = max(1e-6, w0 * float(np.exp(dx / 200.0)))
        center = c0 + dy * w0 / 300.0  # screen y grows downward: down = higher centre = darker
        self.window_requested.emit(center, width)

    def pixel_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """Original (row, col) under a scene position, None outside the image."""
        if self._data is None:
            return None
        p = self._tr.inverted()[0].map(self.vb.mapSceneToView(scene_pos))
        col, row = int(np.floor(p.x())), int(np.floor(p.y()))
        h, w = self._data.shape
        if 0 <= row < h and 0 <= col < w:
            return row, col
        return None

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        px = self.pixel_at(scene_pos)
        if px is None or self._data is None:
            self.readout.hide()
            self.mag.hide()
            self._mag_at = None
            return
        row, col = px
        value = float(self._data[row, col])
        what = "recon" if self.content is not None and self.content.reconstruction is not None else "value"
        self.readout.setText(f"x {col}  y {row}  {what} {value:.6g}")
        self.readout.adjustSize()
        self.readout.show()
        self._place_labels()
        if self.magnifier:
            self._show_magnifier(row, col, self.gv.mapFromScene(scene_pos))
        else:
            self.mag.hide()
        self._mag_at = (row, col, self.gv.mapFromScene(scene_pos))

    def _show_magnifier(self, row: int, col: int, at: object) -> None:
        assert self._data is not None
        r = _MAG_RADIUS
        h, w = self._data.shape
        crop = np.zeros((2 * r, 2 * r), np.float32)
        y0, x0 = row - r, col - r
        ys, xs = slice(max(0, y0), min(h, y0 + 2 * r)), slice(max(0, x0), min(w, x0 + 2 * r))
        crop[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = self._data[ys, xs]
        lo, hi = self.levels
        g = np.clip((crop - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        if self.inverted:
            g = 1.0 - g
        if self.mirrored:
            g = g[:, ::-1]
        g8 = np.ascontiguousarray((g * 255).astype(np.uint8))
        img = QImage(g8.data, g8.shape[1], g8.shape[0], g8.strides[0], QImage.Format.Format_Grayscale8).copy()
        pix = QPixmap.fromImage(img).scaled(
            _MAG_SIZE, _MAG_SIZE, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.FastTransformation
        )
        self.mag.setPixmap(pix)
        self.mag.resize(_MAG_SIZE, _MAG_SIZE)
        pos = self.gv.mapTo(self, at)
        x = min(max(0, pos.x() + 20), max(0, self.width() - _MAG_SIZE))
        y = min(max(0, pos.y() + 20), max(0, self.height() - _MAG_SIZE))
        self.mag.move(x, y)
        self.mag.show()
        self.mag.raise_()

    def _on_click(self, ev: object) -> None:
        if self.content is not None:
            self.clicked.emit(self.content.key)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt name
        self._mag_at = None
        self.mag.hide()
        self.readout.hide()
        super().leaveEvent(event)

    # ------------------------------------------------------------------ layout
    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt name
        self.gv.setGeometry(0, 0, self.width(), self.height())
        super().resizeEvent(event)
        if self._fitted:
            self.fit()
        self._place_labels()

    def _place_labels(self) -> None:
        right_cw = self.content.chest_wall_right if self.content is not None else True
        m = 8
        for lab in (self.marker, self.caption, self.edge_outer, self.edge_inner):
            lab.adjustSize()
        # markers in the outer top corner, away from the chest wall
        if right_cw:
            self.marker.move(m, m)
            self.caption.move(m, m + self.marker.height() + 4)
            self.edge_outer.move(m, self.height() // 2)
            self.edge_inner.move(self.width() - self.edge_inner.width() - m, self.height() // 2)
        else:
            self.marker.move(self.width() - self.marker.width() - m, m)
            self.caption.move(self.width() - self.caption.width() - m, m + self.marker.height() + 4)
            self.edge_outer.move(self.width() - self.edge_outer.width() - m, self.height() // 2)
            self.edge_inner.move(m, self.height() // 2)
        self.readout.move(m, self.height() - self.readout.height() - m)
        for lab in (self.marker, self.caption, self.edge_outer, self.edge_inner, self.readout):
            lab.raise_()
        self.caption.setVisible(bool(self.caption.text()))
        has = self._data is not None
        self.edge_outer.setVisible(has)
        self.edge_inner.setVisible(has)
