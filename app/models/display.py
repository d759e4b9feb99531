"""DisplayState: how the images are shown (layout, window/level, inversion, magnifier) and what is
drawn over them (overlay kind and opacity, the reconstruction beside), with the overlay's colour
range that the study's images share (derived here, read by the viewer and the colour bar alike).

A window/level set by hand (or a preset) holds for the study it was set on: moving to another study
goes back to each file's own window, unless the person locked it (``window_locked``, kept in the
settings). So a 16-bit mammogram's manual window never leaves an 8-bit JPEG opened next black.

The lesion overlay is offered only while the loaded model has a ``lesion`` output (:attr:`DisplayState.choices`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.models.files import FilesState
from app.models.runner import ModelRunner
from app.models.settings import Settings
from inference.formats import TASK_CLASSES
from inference.model.predict import Prediction, smooth_evidence

__all__ = ["DisplayState", "Display", "Overlay", "LAYOUTS", "OVERLAYS", "EVIDENCE_SMOOTHING", "overlay_range"]

LAYOUTS = ("hanging", "cc", "mlo", "single")
OVERLAYS = ("none", "evidence", "error", "lesion")
#: Overlays offered only when the model's manifest lists the output of that name.
_OPTIONAL_OVERLAYS = ("lesion",)
#: Gaussian blur (in H/16 cells) of the evidence grid before display: the deepest level's evidence
#: is spread evenly over 4 x 4 cells, which would read as hard blocks on the image.
EVIDENCE_SMOOTHING = 1.0


@dataclass(frozen=True)
class Overlay:
    """What is drawn over the images."""

    kind: str = "none"  # one of OVERLAYS
    opacity: float = 0.5
    reconstruction: bool = False  # show the reconstruction beside the current image


@dataclass(frozen=True)
class Display:
    """How the images are shown."""

    layout: str = "hanging"  # one of LAYOUTS
    inverted: bool = False
    window: tuple[float, float] | None = None  # (centre, width) in modality values, None = preset
    preset: str = "default"  # "default" (the file's first window), "dicom:<i>", "auto", "full", "soft", "dense"
    magnifier: bool = False
    window_locked: bool = False  # keep the window/level (and preset) from study to study


def overlay_range(kind: str, predictions: list[Prediction]) -> tuple[float, float]:
    """Colour range shared by a study's images so their overlays compare: (vmin, vmax)."""
    values: list[float] = []
    for p in predictions:
        if kind == "evidence" and p.evidence is not None:
            values.append(float(np.max(np.abs(smooth_evidence(p.evidence, EVIDENCE_SMOOTHING)))))
        elif kind == "error":
            err = p.error_map()
            if err is not None:
                values.append(float(np.percentile(err[:, : p.geometry.content_shape[1]], 99.5)))
    if kind == "lesion":
        return (0.0, 1.0)  # a probability: the same scale on every image and every study
    top = max(values) if values else 1.0
    top = top if top > 1e-12 else 1.0
    return (-top, top) if kind == "evidence" else (0.0, top)


class DisplayState(QObject):
    """``view`` (a :class:`Display`) and ``overlay`` (an :class:`Overlay`); requests replace them."""

    display_changed = Signal()
    overlay_changed = Signal()

    def __init__(
        self, settings: Settings, files: FilesState, runner: ModelRunner, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.files = files
        self.runner = runner
        locked = str(settings.value("display/window_locked", "false")).lower() in ("1", "true", "yes")
        self.view = Display(layout=settings.layout if settings.layout in LAYOUTS else "hanging", window_locked=locked)
        self.overlay = Overlay(opacity=settings.overlay_opacity)
        # (kind, the study's keys, their prediction objects) -> range; the objects are held, so identity is safe
        self._range: tuple[str, tuple[str, ...], tuple[object, ...], tuple[float, float]] | None = None
        self._study = files.current_study
        files.current_changed.connect(self._on_current_changed)
        runner.model_changed.connect(self._on_model_changed)

    @property
    def choices(self) -> tuple[str, ...]:
        """The overlay kinds on offer: every one, less those whose output the loaded model lacks."""
        manifest = self.runner.manifest
        outputs = manifest.outputs if manifest is not None else {}
        return tuple(k for k in OVERLAYS if k not in _OPTIONAL_OVERLAYS or k in outputs)

    def _on_model_changed(self) -> None:
        if self.overlay.kind not in self.choices:
            self.overlay = replace(self.overlay, kind="none")
        self.overlay_changed.emit()  # the choices may have changed with the model

    @property
    def overlay_range(self) -> tuple[float, float]:
        """The colour range of the overlay over the current study's predictions ((0, 1) without one).

        Derived on demand from what it depends on (overlay kind, the current study, its predictions),
        so every reader sees the same value whatever order the signals reach them in."""
        kind = self.overlay.kind
        study = self.files.current_study
        if kind == "none" or study is None:
            return (0.0, 1.0)
        keys = tuple(r.key for r in study.images)
        preds = tuple(self.runner.predictions.get(k) for k in keys)
        memo = self._range
        if memo is None or memo[:2] != (kind, keys) or any(a is not b for a, b in zip(memo[2], preds, strict=True)):
            maps = [p for k in keys if (p := self.runner.prediction_with_maps(k)) is not None]
            memo = self._range = (kind, keys, preds, overlay_range(kind, maps))
        return memo[3]

    # ------------------------------------------------------------------ requests
    def set_overlay(
        self, kind: str | None = None, opacity: float | None = None, reconstruction: bool | None = None
    ) -> None:
        changes: dict[str, Any] = {}
        if kind is not None:
            if kind not in OVERLAYS:
                raise ValueError(f"unknown overlay {kind!r}")
            if kind not in self.choices:
                raise ValueError(f"the loaded model has no {kind!r} output")
            changes["kind"] = kind
        if opacity is not None:
            changes["opacity"] = float(min(1.0, max(0.0, opacity)))
            self.settings.overlay_opacity = changes["opacity"]
        if reconstruction is not None:
            changes["reconstruction"] = bool(reconstruction)
        new = replace(self.overlay, **changes)
        if new != self.overlay:
            self.overlay = new
            self.overlay_changed.emit()

    def toggle_overlay(self, kind: str) -> None:
        self.set_overlay(kind="none" if self.overlay.kind == kind else kind)

    def set_view(self, **changes: Any) -> None:
        if "layout" in changes:
            if changes["layout"] not in LAYOUTS:
                raise ValueError(f"unknown layout {changes['layout']!r}")
            self.settings.layout = changes["layout"]
        if "preset" in changes and "window" not in changes:
            changes["window"] = None
        if "window_locked" in changes:
            changes["window_locked"] = bool(changes["window_locked"])
            self.settings.set_value("display/window_locked", changes["window_locked"])
        new = replace(self.view, **changes)
        if new != self.view:
            self.view = new
            self.display_changed.emit()

    def set_window(self, center: float, width: float) -> None:
        """Window every view with this (centre, width) in modality values."""
        self.set_view(window=(float(center), max(1e-6, float(width))))

    def reset(self) -> None:
        self.set_view(window=None, preset="default", inverted=False)

    # ------------------------------------------------------------------ the hanging
    def hanging_view(self, key: str) -> tuple[str, bool]:
        """(view as the model knows it, from the model?) for hanging an image: the file's view ("CC"
        or "MLO", from tags, text or the file name), else the model's view prediction (True), else
        ("", False). The model's view only places the image; it is never a label."""
        try:
            rec = self.files.record(key)
        except KeyError:
            return "", False
        if rec.model_view:
            return rec.model_view, False
        pred = self.runner.prediction(key)
        probs = pred.probabilities.get("view", ()) if pred is not None else ()
        classes = TASK_CLASSES["view"]
        if len(probs) != len(classes) or any(p != p for p in probs):
            return "", False
        return classes[int(np.argmax(probs))], True

    def set_window_locked(self, locked: bool) -> None:
        """Keep (True) or reset per study (False) the window/level; kept in the settings."""
        self.set_view(window_locked=locked)

    def _on_current_changed(self, _key: str) -> None:
        study = self.files.current_study
        if study is self._study:
            return
        self._study = study
        if not self.view.window_locked:
            self.set_view(window=None, preset="default")  # each study starts at its files' own windows
