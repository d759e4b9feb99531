"""Coloured overlays of the model's maps, their colour bar, and the overlay controls.

The maps are drawn on the original pixel grid (``Prediction.*_original``, i.e. ``Geometry.to_original``),
so an overlay uses exactly the image item's transform and lands on the same pixels. Colours: the
reconstruction error in *inferno*; the malignancy evidence diverging, blue (toward benign) through
transparent to red-yellow (toward malignant); the lesion probability (models with the segmentation
output) in *viridis* on a fixed 0-1 scale. Transparency grows where the map is weak, so the
anatomy stays visible.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QWidget

from app.models.display import EVIDENCE_SMOOTHING, overlay_range
from inference.model.predict import Prediction

__all__ = ["OVERLAY_TITLES", "lut", "overlay_map", "overlay_range", "overlay_rgba", "ColorBar", "OverlayControls"]

OVERLAY_TITLES = {
    "none": "No overlay",
    "evidence": "Malignancy evidence",
    "error": "Reconstruction error",
    "lesion": "Lesion probability",
}
#: The window's keys that toggle each overlay (app/widgets/main_window.py), for the combo's tooltip.
_KEYS = {"evidence": "E", "error": "R", "lesion": "S"}
_LUT_SIZE = 256


def lut(kind: str) -> np.ndarray:
    """RGBA lookup table [256, 4] uint8 of an overlay kind, alpha before the opacity."""
    if kind in ("error", "lesion"):
        name = "inferno" if kind == "error" else "viridis"
        rgb = pg.colormap.get(name).getLookupTable(0.0, 1.0, _LUT_SIZE, alpha=False)
        ramp = np.linspace(0.0, 1.0, _LUT_SIZE)
        alpha = np.clip(ramp * 1.6, 0.0, 1.0)
    elif kind == "evidence":
        v = np.linspace(-1.0, 1.0, _LUT_SIZE)
        pos = np.clip(v, 0.0, 1.0)
        neg = np.clip(-v, 0.0, 1.0)
        # positive: red -> yellow; negative: blue -> cyan
        r = np.where(v >= 0, 255.0, 40.0 * (1 - neg))
        g = np.where(v >= 0, 255.0 * np.clip(pos * 1.4 - 0.4, 0.0, 1.0), 120.0 + 100.0 * neg)
        b = np.where(v >= 0, 30.0, 255.0)
        rgb = np.stack([r, g, b], axis=1)
        alpha = np.clip(np.abs(v) * 1.6, 0.0, 1.0)
    else:
        raise ValueError(f"no colour table for overlay {kind!r}")
    out = np.zeros((_LUT_SIZE, 4), np.uint8)
    out[:, :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    out[:, 3] = np.round(alpha * 255).astype(np.uint8)
    return out


def overlay_map(pred: Prediction, kind: str) -> np.ndarray | None:
    """The map of ``kind`` on the original image's pixel grid, zero outside the breast the model saw
    (None when the model has no such output)."""
    if kind == "evidence":
        m = pred.evidence_original(smooth=EVIDENCE_SMOOTHING)
    elif kind == "error":
        m = pred.error_map_original()
    elif kind == "lesion":
        m = pred.lesion_original()
    else:
        return None
    if m is None:
        return None
    breast = pred.geometry.to_original((pred.model_input > 0).astype(np.float32)) > 0.5
    return np.where(breast, m, 0.0).astype(np.float32)


def overlay_rgba(data: np.ndarray, kind: str, vrange: tuple[float, float], opacity: float) -> np.ndarray:
    """Colour a map: [H, W, 4] uint8; alpha follows the map's strength (zero where it is zero) times ``opacity``."""
    lo, hi = vrange
    v = np.asarray(data, np.float32)
    norm = np.clip((v - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    out: np.ndarray = lut(kind)[np.round(norm * (_LUT_SIZE - 1)).astype(np.intp)]
    strength = np.abs(v) / max(abs(lo), abs(hi), 1e-12) if kind == "evidence" else norm
    alpha = np.clip(strength * 1.6, 0.0, 1.0) * float(np.clip(opacity, 0.0, 1.0)) * 255.0
    out[..., 3] = np.round(alpha).astype(np.uint8)
    return out


class ColorBar(QWidget):
    """A horizontal colour bar with its range and title."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = "none"
        self.vrange = (0.0, 1.0)
        self.setMinimumSize(200, 34)
        self.setMaximumWidth(260)
        self.setToolTip("Overlay colour scale (shared by the study's images)")

    def set_scale(self, kind: str, vrange: tuple[float, float]) -> None:
        self.kind, self.vrange = kind, vrange
        self.setVisible(kind != "none")
        self.update()

    def paintEvent(self, event: object) -> None:  # noqa: N802 - Qt name
        if self.kind == "none":
            return
        p = QPainter(self)
        table = lut(self.kind)
        bar = QRectF(4, 4, self.width() - 8, 12)
        grad = QLinearGradient(bar.left(), 0, bar.right(), 0)
        for i in range(0, _LUT_SIZE, 8):
            r, g, b, a = (int(v) for v in table[i])
            grad.setColorAt(i / (_LUT_SIZE - 1), QColor(r, g, b, max(a, 60)))
        p.fillRect(bar, QColor(20, 20, 20))
        p.fillRect(bar, grad)
        p.setPen(QPen(QColor(120, 120, 120)))
        p.drawRect(bar)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        p.setFont(font)
        p.setPen(QColor(220, 220, 220))
        lo, hi = self.vrange
        text_rect = QRectF(4, 17, self.width() - 8, 14)
        if self.kind == "evidence":
            p.drawText(text_rect, Qt.AlignmentFlag.AlignLeft, "benign")
            p.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter, f"±{hi:.2g}")
            p.drawText(text_rect, Qt.AlignmentFlag.AlignRight, "malignant")
        else:
            middle = "lesion probability" if self.kind == "lesion" else "|input − reconstruction|"
            p.drawText(text_rect, Qt.AlignmentFlag.AlignLeft, f"{lo:.2g}")
            p.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter, middle)
            p.drawText(text_rect, Qt.AlignmentFlag.AlignRight, f"{hi:.2g}")
        p.end()


class OverlayControls(QWidget):
    """Overlay kind, opacity and the colour bar; emits requests, changes nothing itself."""

    kind_requested = Signal(str)
    opacity_requested = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        self.combo = QComboBox()
        self._set_choices(tuple(k for k in OVERLAY_TITLES if k != "lesion"))
        self.combo.setFixedWidth(170)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setFixedWidth(80)
        self.slider.setToolTip("Overlay opacity")
        self.colorbar = ColorBar()
        lay.addWidget(self.combo)
        lay.addWidget(QLabel("Opacity"))
        lay.addWidget(self.slider)
        lay.addWidget(self.colorbar)
        lay.addStretch(1)
        self.combo.currentIndexChanged.connect(lambda i: self.kind_requested.emit(self.combo.itemData(i)))
        self.slider.valueChanged.connect(lambda v: self.opacity_requested.emit(v / 100.0))

    def _set_choices(self, choices: tuple[str, ...]) -> None:
        if tuple(self.combo.itemData(i) for i in range(self.combo.count())) == choices:
            return
        self.combo.clear()
        for kind in choices:
            self.combo.addItem(OVERLAY_TITLES[kind], kind)
        keys = ", ".join(f"{key}: {OVERLAY_TITLES[kind].lower()}" for kind, key in _KEYS.items() if kind in choices)
        self.combo.setToolTip(f"Overlay drawn on every image ({keys})")

    def show_state(
        self, kind: str, opacity: float, vrange: tuple[float, float], choices: tuple[str, ...] | None = None
    ) -> None:
        """Render the state without echoing requests back; ``choices``: the overlay kinds on offer."""
        for w in (self.combo, self.slider):
            w.blockSignals(True)
        if choices is not None:
            self._set_choices(choices)
        self.combo.setCurrentIndex(max(0, self.combo.findData(kind)))
        self.slider.setValue(int(round(opacity * 100)))
        for w in (self.combo, self.slider):
            w.blockSignals(False)
        self.slider.setEnabled(kind != "none")
        self.colorbar.set_scale(kind, vrange)
