"""The latent-space explorer panel: a 2-D map of the images' 496-d latent vectors.

One pyqtgraph ScatterPlotItem holds every point (``data=`` carries the image keys; brushes come from
a small palette, sizes from an array, so 100,000 points need no per-point Python object). Colour by
any task's prediction or label, correction status, laterality, view or source; point size by the
model's uncertainty. Hover shows a card (thumbnail, file, patient, side and view, the label); a click
shows the image in the viewer and makes it the selection (replacing a box or lasso selection); box
and lasso selections become the selection of FilesState (the label panel acts on it); the current
image is ringed. A "Similar cases" strip shows the current image's nearest neighbours. The panel
renders :class:`app.models.explorer.ExplorerState` and sends it requests; projections run in its
worker.
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QAction, QColor, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.models.explorer import Colouring, ExplorerState, colour_modes
from app.models.state import AppState
from app.widgets.explorer_map import (
    BACKGROUND,
    CATEGORY_COLOURS,
    CURRENT_PEN,
    LEGEND_ENTRIES,
    SELECTION_PEN,
    SELECTION_RINGS,
    UNKNOWN_COLOUR,
    VALUE_BINS,
    HoverCard,
    Legend,
    SelectViewBox,
    palette,
    point_size,
    value_colours,
)
from app.widgets.similar import SimilarStrip, Thumbnails
from inference.latent.projection import METHOD_NAMES, METHODS, ProjectionParams

__all__ = ["ExplorerPanel", "CATEGORY_COLOURS", "UNKNOWN_COLOUR", "value_colours", "point_size"]

class ExplorerPanel(QWidget):
    """The latent-space explorer: controls, the map, a legend and the similar-cases strip."""

    def __init__(self, state: AppState, labels: Any | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.explorer = ExplorerState(state, labels, parent=self)
        self.thumbnails = Thumbnails(self.explorer, self)
        self.hovered = ""
        self._order = np.zeros(0, np.int64)  # draw position -> row
        self._colours: list[QColor] = []
        self._build()
        ex = self.explorer
        ex.points_changed.connect(self._render_points)
        ex.colour_changed.connect(self._render_colours)
        ex.busy_changed.connect(self._on_busy)
        ex.source_changed.connect(self._render_source)
        state.files.current_changed.connect(self._render_current)
        state.runner.predictions_changed.connect(lambda _k: self._render_source())
        self.thumbnails.ready.connect(lambda key: self._show_hover(key) if key == self.hovered else None)
        self._render_source()
        self._render_points()
        ex.set_active(False)  # computes once shown (showEvent)
        ex.recompute()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self.view = SelectViewBox()
        self.view.sigSelect.connect(self._on_select)
        self.source_label = QLabel()
        self.source_label.setStyleSheet("color: #bbbbbb;")
        self.load_button = QPushButton("Load embeddings…")
        self.load_button.setToolTip(
            "Show an archive's embeddings file (python -m inference predict … --embeddings FILE)"
        )
        self.load_button.clicked.connect(self.load_embeddings_dialog)
        self.load_action = QAction("Load embeddings…", self)  # the main window puts it in its File menu
        self.load_action.setToolTip(self.load_button.toolTip())
        self.load_action.triggered.connect(self.load_embeddings_dialog)
        self.opened_button = QPushButton("Opened images")
        self.opened_button.setToolTip("Show the opened images (those the model has run on)")
        self.opened_button.clicked.connect(self.explorer.use_opened)
        top = QHBoxLayout()
        top.addWidget(self.source_label, 1)
        top.addWidget(self.opened_button)
        top.addWidget(self.load_button)

        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(METHOD_NAMES[m], m)
        self.neighbours = QSpinBox()
        self.neighbours.setRange(2, 200)
        self.neighbours.setValue(15)
        self.neighbours.setPrefix("neighbours ")
        self.min_dist = QDoubleSpinBox()
        self.min_dist.setRange(0.0, 1.0)
        self.min_dist.setSingleStep(0.05)
        self.min_dist.setValue(0.1)
        self.min_dist.setPrefix("min dist ")
        self.perplexity = QDoubleSpinBox()
        self.perplexity.setRange(2.0, 200.0)
        self.perplexity.setValue(30.0)
        self.perplexity.setPrefix("perplexity ")
        self.compute_button = QPushButton("Compute")
        self.compute_button.clicked.connect(self.apply_params)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.explorer.cancel)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(True)
        self.method.currentIndexChanged.connect(self._on_method)
        row = QHBoxLayout()
        params = (self.method, self.neighbours, self.min_dist, self.perplexity)
        for w in (*params, self.compute_button, self.cancel_button, self.progress):
            row.addWidget(w)
        row.addStretch(1)

        self.colour = QComboBox()
        for mode, text in colour_modes(self.explorer.labels is not None):
            self.colour.addItem(text, mode)
        self.colour.currentIndexChanged.connect(lambda _i: self.explorer.set_colour_mode(self.colour.currentData()))
        self.size_check = QCheckBox("Size by uncertainty")
        self.size_check.toggled.connect(self.explorer.set_size_by_uncertainty)
        self.tool_group = QButtonGroup(self)
        self.tools: dict[str, QToolButton] = {}
        for mode, text, tip in (
            ("pan", "Pan", "Drag to pan, wheel to zoom"),
            ("box", "Box", "Drag a box to select (Shift/Ctrl adds)"),
            ("lasso", "Lasso", "Draw around points to select (Shift/Ctrl adds)"),
        ):
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.setCheckable(True)
            b.setStyleSheet("QToolButton:checked { background: #3d5a80; color: white; }")
            b.toggled.connect(lambda on, m=mode: self.set_tool(m) if on else None)
            self.tool_group.addButton(b)
            self.tools[mode] = b
        self.tools["pan"].setChecked(True)
        self.clear_button = QToolButton()
        self.clear_button.setText("Clear")
        self.clear_button.setToolTip("Clear the selection")
        self.clear_button.clicked.connect(lambda: self.explorer.select_rows(np.zeros(0, int)))
        self.fit_button = QToolButton()
        self.fit_button.setText("Fit")
        self.fit_button.setToolTip("Show every point")
        self.fit_button.clicked.connect(self.fit_view)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Colour"))
        row2.addWidget(self.colour, 1)
        row2.addWidget(self.size_check)
        for b in (*self.tools.values(), self.clear_button, self.fit_button):
            row2.addWidget(b)

        self.plot = pg.PlotWidget(viewBox=self.view, background=BACKGROUND)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMinimumHeight(260)
        self.scatter = pg.ScatterPlotItem(pxMode=True, useCache=True, antialias=False, pen=None, hoverable=False)
        self.selection_item = pg.ScatterPlotItem(
            pxMode=True, antialias=True, brush=None, pen=pg.mkPen(SELECTION_PEN, width=1)
        )
        ring = pg.mkPen(CURRENT_PEN, width=2.5)
        self.current_item = pg.ScatterPlotItem(pxMode=True, antialias=True, brush=None, size=20, pen=ring)
        self.selection_item.setZValue(5)
        self.current_item.setZValue(10)
        for item in (self.scatter, self.selection_item, self.current_item):
            self.view.addItem(item)
        self.placeholder = pg.TextItem("", color="#8a8a8a", anchor=(0.5, 0.5))
        self.view.addItem(self.placeholder, ignoreBounds=True)
        self.hover = HoverCard(self.plot)
        self._mouse = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=60, slot=self._on_mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._on_scene_clicked)
        self.plot.viewport().installEventFilter(self)  # the card goes when the mouse leaves the map

        self.legend = Legend()
        self.info = QLabel()
        self.info.setStyleSheet("color: #9a9a9a;")
        self.similar = SimilarStrip(self.explorer, self.thumbnails, self.accent_of)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        lay.addLayout(top)
        lay.addLayout(row)
        lay.addLayout(row2)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.legend)
        lay.addWidget(self.info)
        lay.addWidget(self.similar)
        self._on_method()
        self._on_busy("", 0, 0)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt name
        super().showEvent(event)
        self.explorer.set_active(True)

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 - Qt name
        super().hideEvent(event)
        self.explorer.set_active(False)

    # ------------------------------------------------------------------ requests
    def params(self) -> ProjectionParams:
        return ProjectionParams(
            method=str(self.method.currentData()),
            n_neighbors=self.neighbours.value(),
            min_dist=self.min_dist.value(),
            perplexity=self.perplexity.value(),
        )

    def apply_params(self) -> None:
        self.explorer.set_params(self.params())

    def set_tool(self, mode: str) -> None:
        self.view.mode = mode
        if not self.tools[mode].isChecked():
            self.tools[mode].setChecked(True)

    def set_colour_mode(self, mode: str) -> None:
        i = self.colour.findData(mode)
        if i < 0:
            raise ValueError(f"unknown colour mode {mode!r}")
        self.colour.setCurrentIndex(i)

    def load_embeddings_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load embeddings", "", "Embeddings (*.npz);;All files (*)")
        if path:
            self.explorer.load_embeddings(path)

    def fit_view(self) -> None:
        xy = self.explorer.xy
        if len(xy):
            lo, hi = xy.min(axis=0).astype(float), xy.max(axis=0).astype(float)
            pad = np.maximum((hi - lo) * 0.04, 1e-3)
            x0, y0, x1, y1 = (float(v) for v in (lo[0] - pad[0], lo[1] - pad[1], hi[0] + pad[0], hi[1] + pad[1]))
            self.view.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)

    def _on_method(self, *_args: object) -> None:
        m = self.method.currentData()
        self.neighbours.setVisible(m == "umap")
        self.min_dist.setVisible(m == "umap")
        self.perplexity.setVisible(m == "tsne")
        if m == "pca":  # instant: no need to press Compute
            self.apply_params()

    def _on_select(self, kind: str, shape: Any, add: bool) -> None:
        if kind == "box":
            x0, y0, x1, y1 = shape
            self.explorer.select_box(x0, y0, x1, y1, add=add)
        else:
            self.explorer.select_polygon(shape, add=add)

    def _on_scene_clicked(self, ev: Any) -> None:
        """Any click in the map, whichever item took it (the selection rings and the current-image ring
        lie over the points): the nearest point within reach is shown and becomes the selection; a
        double-click opens an archive image's file."""
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        key = self.key_at(ev.scenePos())
        if not key:
            return
        if ev.double():
            self.explorer.open_file(key)
        else:
            self.explorer.click(key)

    # ------------------------------------------------------------------ hover
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt name
        if event.type() == QEvent.Type.Leave and watched is self.plot.viewport():
            self.hovered = ""
            self.hover.hide()
        return super().eventFilter(watched, event)

    def key_at(self, scene_pos: QPointF, radius_px: float = 8.0) -> str:
        """The key of the point nearest to a scene position, within ``radius_px`` pixels ("" if none)."""
        xy = self.explorer.xy
        if not len(xy) or not self.view.sceneBoundingRect().contains(scene_pos):
            return ""
        p = self.view.mapSceneToView(scene_pos)
        pw, ph = self.view.viewPixelSize()
        if not pw or not ph:
            return ""
        d2 = ((xy[:, 0] - p.x()) / pw) ** 2 + ((xy[:, 1] - p.y()) / ph) ** 2
        i = int(np.argmin(d2))
        return self.explorer.keys[i] if d2[i] <= radius_px**2 else ""

    def _on_mouse_moved(self, args: tuple[QPointF, ...]) -> None:
        pos = args[0]
        key = self.key_at(pos)
        if key != self.hovered or not key:
            self.hovered = key
            self._show_hover(key, self.plot.mapFromScene(pos))

    def _show_hover(self, key: str, at: Any = None) -> None:
        card = self.hover
        if not key:
            card.hide()
            return
        ex = self.explorer
        row = ex.row(key)
        pm = self.thumbnails.get(key)
        if pm is not None:
            card.image.setPixmap(pm)
        card.image.setVisible(pm is not None)
        case = ex.case(key)
        lines = [f"<b>{escape(case.name or _short(key))}</b>"]
        try:
            date = self.state.files.record(key).study_date
        except KeyError:
            date = ""
        where = "" if self.state.files.has(key) else " · archive, not opened"
        who = f"{case.patient or 'patient unknown'} · {case.side}" + (f" · {date}" if date else "")
        lines.append(escape(who + where))
        pred = self.state.runner.predictions.get(key)
        if pred is not None:
            lines.append(f"p(malignant) {pred.p_malignant:.3f} ± {pred.p_malignant_std:.3f}")
        c = ex.colouring()
        if row is not None and not (c.kind == "value" and c.label == "p(malignant)" and pred is not None):
            lines.append(escape(f"{c.label}: {c.describe(row)}"))
        status = ex.correction_status(key) if ex.labels is not None else "unreviewed"
        lines.append(escape(f"label: {case.label}" + (f" ({status})" if status == "corrected" else "")))
        card.text.setText("<br>".join(lines))
        card.key = key
        card.adjustSize()
        if at is not None:
            x, y = int(at.x()) + 16, int(at.y()) + 16
            if x + card.width() > self.plot.width():
                x = int(at.x()) - card.width() - 16
            if y + card.height() > self.plot.height():
                y = int(at.y()) - card.height() - 16
            card.move(max(0, x), max(0, y))
        card.show()
        card.raise_()

    # ------------------------------------------------------------------ rendering
    def accent_of(self, key: str) -> QColor:
        """The colour the map gives ``key`` (for the similar-cases strip)."""
        row = self.explorer.row(key)
        if row is None:
            return QColor(UNKNOWN_COLOUR)
        c = self.explorer.colouring()
        colours = palette(c)
        return colours[int(self._colour_index(c, len(colours))[row])]

    def _render_source(self) -> None:
        ex = self.explorer
        if ex.source == "file" and ex.file_path is not None:
            text = f"Archive: {ex.file_path.name} · {len(ex.keys):,} images"
        else:
            n = sum(1 for r in self.state.files.study_set.images if r.key in self.state.runner.predictions)
            text = f"Opened images: {n} with a prediction"
            if ex.pending:
                text += f" ({ex.pending} not on the map yet)"
        if ex.projection is not None and len(ex.keys):
            p = ex.projection
            text += f" · {p.params.describe()}" + (" (cached)" if p.from_cache else f" in {p.seconds:.1f} s")
        self.source_label.setText(text)

    def _colour_index(self, c: Colouring, n_colours: int) -> np.ndarray:
        """Per row: an index into the colouring's palette (its last entry = unknown)."""
        unknown = n_colours - 1
        if c.kind == "category" and c.codes is not None:
            codes = c.codes.astype(np.int64)
            pal = np.where(codes >= 0, codes % len(CATEGORY_COLOURS), unknown)
            return pal
        v = c.values if c.values is not None else np.full(len(self.explorer.keys), np.nan, np.float32)
        span = max(c.vmax - c.vmin, 1e-12)
        bins = np.clip(((v - c.vmin) / span * VALUE_BINS).astype(np.float64), 0, VALUE_BINS - 1)
        return np.where(np.isfinite(v), np.nan_to_num(bins).astype(np.int64), unknown)

    def _render_points(self) -> None:
        ex = self.explorer
        n = len(ex.keys)
        self.placeholder.setText(
            "" if n else ex.note or "No image with a prediction yet: open studies, or load an embeddings file"
        )
        self.placeholder.setPos(0, 0)
        if not n:
            self.scatter.clear()
            self.selection_item.clear()
            self.current_item.clear()
            self.view.setRange(xRange=(-1.0, 1.0), yRange=(-1.0, 1.0), padding=0)  # the text in the middle
            self._render_source()
            return
        self._render_colours(fit=True)
        self._render_source()

    def _render_colours(self, fit: bool = False) -> None:
        ex = self.explorer
        n = len(ex.keys)
        if not n:
            return
        c = ex.colouring()
        self._colours = palette(c)
        idx = self._colour_index(c, len(self._colours))
        # draw unknown first, then by colour (high values on top), so rare findings stay visible
        key = np.where(idx == len(self._colours) - 1, -1, idx)
        self._order = np.argsort(key, kind="stable")
        # with a selection, the other points fade so the selected ones keep their colours
        faded = [QColor(col.red(), col.green(), col.blue(), 55) for col in self._colours]
        brushes = np.array([pg.mkBrush(col) for col in self._colours + faded], dtype=object)
        pick = idx.copy()
        rows = self._selected_rows()
        if len(rows):
            chosen = np.zeros(n, bool)
            chosen[rows] = True
            pick[~chosen] += len(self._colours)
        base = point_size(n)
        sizes = np.full(n, base, np.float32)
        if ex.size_by_uncertainty:
            u = ex.uncertainty()
            top = np.nanmax(u) if np.isfinite(u).any() else 0.0
            if top > 0:
                level = np.clip(np.nan_to_num(u / top, nan=0.0) * 4.999, 0, 4).astype(np.int64)
                sizes = (base * np.array([0.7, 1.0, 1.4, 1.9, 2.5], np.float32))[level]
        o = self._order
        keys = np.asarray(ex.keys, dtype=object)
        self.scatter.setData(pos=ex.xy[o], brush=list(brushes[pick[o]]), size=sizes[o], data=keys[o], pen=None)
        entries = []
        if c.kind == "category" and c.codes is not None:
            counts = np.bincount(c.codes[c.codes >= 0].astype(np.int64), minlength=len(c.names))
            entries = [
                (self._colours[i % len(CATEGORY_COLOURS)], f"{name} ({counts[i]:,})") for i, name in enumerate(c.names)
            ]
            if len(entries) > LEGEND_ENTRIES:
                rest = len(entries) - LEGEND_ENTRIES + 1
                entries = entries[: LEGEND_ENTRIES - 1] + [(QColor(0, 0, 0, 0), f"+{rest} more (colours repeat)")]
        unknown = int(np.count_nonzero(idx == len(self._colours) - 1))
        if unknown:
            entries.append((QColor(UNKNOWN_COLOUR), f"unknown ({unknown:,})"))
        self.legend.set_colouring(c, entries)
        self._render_selection()
        self._render_current(self.state.files.current_key or "")
        if fit:
            self.fit_view()

    def _selected_rows(self) -> np.ndarray:
        ex = self.explorer
        return np.fromiter((r for k in ex.selected if (r := ex.row(k)) is not None), np.int64)

    def _render_selection(self) -> None:
        """Rings around the selected points (a few thousand at most; beyond, the fading shows it)."""
        ex = self.explorer
        rows = self._selected_rows()
        if 0 < len(rows) <= SELECTION_RINGS:
            self.selection_item.setData(pos=ex.xy[rows], size=point_size(len(ex.keys)) + 4)
        else:
            self.selection_item.clear()
        if not len(rows):
            self.info.setText("Click a point to show the image · hover for a preview · Box / Lasso to select")
            return
        outside = sum(1 for r in rows if not ex.is_open(ex.keys[int(r)]))
        note = " (the label panel acts on them)"
        if outside:
            note = f" ({outside:,} archive images are not opened and cannot be labelled here)"
        self.info.setText(f"{len(rows):,} selected{note}")

    def _render_current(self, key: str) -> None:
        row = self.explorer.row(key) if key else None
        if row is None:
            self.current_item.clear()
        else:
            self.current_item.setData(pos=self.explorer.xy[[row]], data=[key])

    def _on_busy(self, task: str, done: int, total: int) -> None:
        busy = bool(task)
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.compute_button.setEnabled(not busy)
        self.progress.setRange(0, total if total > 0 else 0)
        self.progress.setValue(done)
        self.progress.setFormat(task)


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
