"""The hanging: the current study's images in a grid, breasts back to back, zoom and pan in sync.

Standard screening hanging: R-CC and L-CC above R-MLO and L-MLO; right-breast images on the left of
the screen with their chest wall on the right, left-breast images on the right with the chest wall
on the left, so the chest walls meet in the middle. Whether an image needs a mirror is decided from
its pixels (``LoadedImage.chest_wall_right``), and each image is pinned by its breast's chest-wall
edge (padding beyond it is left off screen). An image whose file names no view hangs by the model's
view prediction, marked "(model)" (``DisplayState.hanging_view``). Layouts: the four views, the CC or
MLO pair, one image; the reconstruction can be shown beside the current image. An empty cell says
"no image".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtWidgets import QFrame, QGridLayout, QVBoxLayout, QWidget

from app.models.state import AppState
from app.widgets.browser import side_and_view
from app.widgets.image_view import ImageView, ViewContent, window_for
from app.widgets.overlays import overlay_map, overlay_rgba
from inference.imaging.studies import Study

__all__ = ["HangingViewer", "Slot", "hanging_slots"]

_HANGING = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


@dataclass(frozen=True)
class Slot:
    """One cell of the grid: which image (or "" for an empty cell) and how it faces."""

    key: str
    row: int
    col: int
    chest_wall_right: bool
    marker: str
    reconstruction: bool = False


def hanging_slots(state: AppState, layout: str, reconstruction: bool) -> list[Slot]:
    """The cells to show for the current study and layout (pure: reads the state only)."""
    study: Study | None = state.files.current_study
    cur = state.files.current_key
    if study is None or cur is None:
        return []
    recs = list(study.images)

    def marker(key: str) -> str:  # as the browser words it; the file's name when neither side nor view is known
        text = side_and_view(state, key)
        return state.files.record(key).path.name if text == "? ?" else text

    def facing(key: str, default_col: int) -> bool:
        lat = state.files.laterality(key)
        if lat:
            return lat == "R"
        img = state.memory.image(key)
        return bool(img.chest_wall_right) if img is not None else default_col == 0

    if reconstruction:
        right = facing(cur, 0)
        return [
            Slot(cur, 0, 0, right, marker(cur)),
            Slot(cur, 0, 1, right, marker(cur) + "  reconstruction", reconstruction=True),
        ]
    if layout == "single":
        return [Slot(cur, 0, 0, facing(cur, 0), marker(cur))]
    wanted = {"hanging": _HANGING, "cc": _HANGING[:2], "mlo": _HANGING[2:]}[layout]
    found: dict[tuple[str, str], str] = {}
    for r in recs:
        slot = (state.files.laterality(r.key), state.display.hanging_view(r.key)[0])
        if slot in wanted and slot not in found:
            found[slot] = r.key
    if cur in found.values() or (found and layout != "hanging"):
        cells = []
        for i, (lat, view) in enumerate(wanted):
            key = found.get((lat, view), "")
            row, col = divmod(i, 2)
            cells.append(Slot(key, row, col, lat == "R", marker(key) if key else f"{lat} {view}"))
        return cells
    # The current image is not one of the standard views (or the study has none): show the
    # study's images in order, up to four, each facing by its own laterality.
    keys = [r.key for r in recs]
    start = max(0, min(keys.index(cur) - keys.index(cur) % 4, len(keys) - 1))
    chosen = keys[start : start + 4]
    n = len(chosen)
    cols = 1 if n == 1 else 2
    return [Slot(k, i // cols, i % cols, facing(k, i % cols), marker(k)) for i, k in enumerate(chosen)]


class _Cell(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = ImageView(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.view)
        self.set_active(False)

    def set_active(self, active: bool) -> None:
        colour = "#ffd34d" if active else "#202020"
        self.setStyleSheet(f"_Cell {{ border: 2px solid {colour}; background: black; }}")


class HangingViewer(QWidget):
    """Renders the state's current study; every interaction goes back to the state as a request."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setStyleSheet("background: black;")
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.cells: list[_Cell] = []
        self.slots: list[Slot] = []
        self._maps: dict[tuple[str, str], np.ndarray | None] = {}
        self._drawn_range: tuple[str, tuple[float, float]] = ("none", (0.0, 1.0))  # the overlays' colouring
        self._syncing = False
        for _ in range(4):
            cell = _Cell(self)
            cell.view.window_requested.connect(self.state.display.set_window)
            cell.view.range_changed_by_user.connect(self._sync_from)
            cell.view.clicked.connect(self._on_view_clicked)
            cell.hide()
            self.cells.append(cell)
        s = state
        s.files.current_changed.connect(self._on_current_changed)
        s.files.studies_changed.connect(self._rebuild)
        s.memory.images_changed.connect(self._on_images_changed)
        s.runner.predictions_changed.connect(self._on_predictions_changed)
        s.display.display_changed.connect(self._on_display_changed)
        s.display.overlay_changed.connect(self._on_overlay_changed)
        s.runner.operating_point_changed.connect(lambda _t: self._update_contents())

    @property
    def views(self) -> list[ImageView]:
        """The visible views, in slot order."""
        return [c.view for c, _ in zip(self.cells, self.slots, strict=False)]

    def view_of(self, key: str, reconstruction: bool = False) -> ImageView | None:
        for cell, slot in zip(self.cells, self.slots, strict=False):
            if slot.key == key and slot.reconstruction == reconstruction:
                return cell.view
        return None

    # ------------------------------------------------------------------ state -> screen
    def _on_current_changed(self, key: str) -> None:
        study_keys = [s.key for s in self.slots]
        if (
            key
            and key in study_keys
            and self.state.display.view.layout != "single"
            and not self.state.display.overlay.reconstruction
        ):
            same_cells = hanging_slots(self.state, self.state.display.view.layout, False) == self.slots
            if same_cells:
                self._update_active()
                return
        self._rebuild()

    def _on_display_changed(self) -> None:
        slots = hanging_slots(self.state, self.state.display.view.layout, self.state.display.overlay.reconstruction)
        if slots != self.slots:
            self._rebuild()
        else:
            self._update_levels()

    def _on_overlay_changed(self) -> None:
        slots = hanging_slots(self.state, self.state.display.view.layout, self.state.display.overlay.reconstruction)
        if slots != self.slots:
            self._rebuild()
        else:
            self._update_overlays()

    def _on_images_changed(self, keys: tuple[str, ...]) -> None:
        if any(s.key in keys for s in self.slots) or not self.slots:
            self._rebuild()

    def _on_predictions_changed(self, keys: tuple[str, ...]) -> None:
        for k in list(self._maps):
            if k[0] in keys:
                del self._maps[k]
        layout, recon = self.state.display.view.layout, self.state.display.overlay.reconstruction
        if hanging_slots(self.state, layout, recon) != self.slots:  # a view from the model moved an image
            self._rebuild()
        elif any(s.key in keys for s in self.slots):
            self._update_contents()
            self._update_overlays()
        elif self._drawn_range != (self.state.display.overlay.kind, self.state.display.overlay_range):
            self._update_overlays()  # another image of the study changed the shared colour range

    def _rebuild(self) -> None:
        self.slots = hanging_slots(
            self.state, self.state.display.view.layout, self.state.display.overlay.reconstruction
        )
        for i, cell in enumerate(self.cells):
            self.grid.removeWidget(cell)
            if i < len(self.slots):
                slot = self.slots[i]
                self.grid.addWidget(cell, slot.row, slot.col)
                cell.show()
            else:
                cell.view.set_content(None)
                cell.hide()
        rows = 1 + max((s.row for s in self.slots), default=0)
        cols = 1 + max((s.col for s in self.slots), default=0)
        for r in range(2):
            self.grid.setRowStretch(r, 1 if r < rows else 0)
        for c in range(2):
            self.grid.setColumnStretch(c, 1 if c < cols else 0)
        self._update_contents()
        self._update_levels()
        self._update_overlays()
        self._update_active()

    def _content(self, slot: Slot) -> ViewContent | None:
        pinned = len(self.slots) > 1 and not any(s.reconstruction for s in self.slots)
        if not slot.key:
            return ViewContent("", None, slot.marker, slot.chest_wall_right, caption="no image")
        img = self.state.memory.image(slot.key)
        problem = self.state.files.load_problems.get(slot.key)
        if img is None and problem is not None:
            caption = "not shown: " + problem.reason
            return ViewContent(slot.key, None, slot.marker, slot.chest_wall_right, caption=caption)
        if slot.reconstruction:
            full = self.state.runner.prediction_with_maps(slot.key)
            recon = full.reconstruction_original() if full is not None else None
            if recon is None:
                return ViewContent(slot.key, None, slot.marker, slot.chest_wall_right, caption="no reconstruction yet")
            return ViewContent(slot.key, img, slot.marker, slot.chest_wall_right, reconstruction=recon, pinned=False)
        pred = self.state.runner.prediction(slot.key)
        caption, flagged = "", False
        if pred is not None and pred.p_malignant == pred.p_malignant:
            flagged = bool(self.state.runner.flagged(slot.key))
            std = pred.p_malignant_std
            caption = f"P(malignant) {pred.p_malignant:.2f}" + (f" ± {std:.2f}" if std == std else "")
            caption += "  ▲ above operating point" if flagged else ""
        return ViewContent(
            slot.key, img, slot.marker, slot.chest_wall_right, caption=caption, flagged=flagged, pinned=pinned
        )

    def _update_contents(self) -> None:
        for cell, slot in zip(self.cells, self.slots, strict=False):
            cell.view.set_content(self._content(slot))

    def _update_levels(self) -> None:
        d = self.state.display.view
        for cell, slot in zip(self.cells, self.slots, strict=False):
            v = cell.view
            v.set_magnifier(d.magnifier)
            img = self.state.memory.image(slot.key) if slot.key else None
            if slot.reconstruction:
                v.set_levels(0.5, 1.0)
                v.set_inverted(d.inverted)
                continue
            if img is None:
                continue
            c, w = d.window if d.window is not None else window_for(img, d.preset)
            v.set_levels(c, w)
            v.set_inverted(d.inverted != bool(img.inverted))

    def _update_overlays(self) -> None:
        ov = self.state.display.overlay
        vrange = self.state.display.overlay_range
        self._drawn_range = (ov.kind, vrange)
        for cell, slot in zip(self.cells, self.slots, strict=False):
            pred = self.state.runner.prediction(slot.key) if slot.key else None
            if ov.kind == "none" or pred is None or slot.reconstruction:
                cell.view.set_overlay(None)
                continue
            m = self.map_of(slot.key, ov.kind)
            cell.view.set_overlay(None if m is None else overlay_rgba(m, ov.kind, vrange, ov.opacity))

    def map_of(self, key: str, kind: str) -> np.ndarray | None:
        """The overlay map of an image on its original grid (computed once per prediction)."""
        k = (key, kind)
        if k not in self._maps:
            pred = self.state.runner.prediction_with_maps(key)
            self._maps[k] = None if pred is None else overlay_map(pred, kind)
            if len(self._maps) > 16:
                self._maps.pop(next(iter(self._maps)))
        return self._maps[k]

    def _update_active(self) -> None:
        multi = len(self.slots) > 1 and not any(s.reconstruction for s in self.slots)
        for cell, slot in zip(self.cells, self.slots, strict=False):
            cell.set_active(multi and bool(slot.key) and slot.key == self.state.files.current_key)

    # ------------------------------------------------------------------ screen -> requests
    def _on_view_clicked(self, key: str) -> None:
        if key and key != self.state.files.current_key:
            self.state.files.set_current(key)

    def _sync_from(self, source: ImageView) -> None:
        if self._syncing:
            return
        st = source.view_state()
        if st is None:
            return
        self._syncing = True
        try:
            for v in self.views:
                if v is not source:
                    v.apply_view_state(st)
        finally:
            self._syncing = False

    def reset_views(self) -> None:
        """Fit every image again (zoom and pan reset)."""
        for v in self.views:
            v.fit()
