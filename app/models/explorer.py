"""ExplorerState: the latent-space explorer's sub-state beside AppState (points, projection, colours).

The points are either the opened images that have a prediction (their ``z``), or an embeddings
file written by ``python -m inference predict ... --embeddings FILE`` for archives too large to
open. Projections run in AppState's worker pool (channel ``explorer``); PCA, UMAP and t-SNE results
are cached on disk by :mod:`inference.latent.projection`. Colourings are computed here as flat arrays
(category codes or values) so the view never builds per-point Python objects. Nothing here touches
a widget; selections and clicks go to the requests of FilesState (AppState's ``files``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from app.models.state import AppState
from app.models.workers import Cancelled, WorkerError
from inference.errors import FormatError, MammoReviewError, ProjectionCancelled
from inference.formats import TASK_CLASSES, TASKS, Embeddings, read_embeddings
from inference.latent.projection import Neighbour, Projection, ProjectionParams, SimilarityIndex, project
from inference.latent.warmup import umap_compiled

__all__ = ["ExplorerState", "Case", "MIN_POINTS", "Colouring", "colour_modes", "points_in_polygon", "STATUSES"]

#: Correction status of an image in the label store.
STATUSES = ("unreviewed", "confirmed", "corrected")
_CHANNEL = "explorer"


@dataclass(frozen=True)
class Colouring:
    """How to colour the points: category codes (-1 = unknown) or values (NaN = unknown)."""

    kind: str  # "category" | "value"
    label: str
    codes: np.ndarray | None = None  # (N,) int16 for "category"
    names: tuple[str, ...] = ()  # category names, code i -> names[i]
    values: np.ndarray | None = None  # (N,) float32 for "value"
    vmin: float = 0.0
    vmax: float = 1.0

    def describe(self, row: int) -> str:
        """The colouring's value of one point, as text."""
        if self.kind == "category" and self.codes is not None:
            c = int(self.codes[row])
            return self.names[c] if c >= 0 else "unknown"
        if self.values is not None:
            v = float(self.values[row])
            return "unknown" if v != v else f"{v:.3f}"
        return ""


@dataclass(frozen=True)
class Case:
    """What a hover card or a similar-case tile says about one image."""

    name: str  # the file name ("" when unknown)
    patient: str  # "" when unknown
    laterality: str  # "L", "R" or ""
    view: str  # "CC", "MLO" or ""
    label: str  # the person's confirmed labels in words, or "no label"

    @property
    def side(self) -> str:
        """E.g. "L CC"; "?" for what is unknown."""
        return f"{self.laterality or '?'} {self.view or '?'}"


#: The fewest points a projection method can place (inference.latent.projection refuses fewer).
MIN_POINTS = {"umap": 5, "tsne": 5}

_TASK_WORDS = {"malignancy": "", "acr": "ACR ", "density": "density ", "view": ""}


def colour_modes(with_labels: bool) -> list[tuple[str, str]]:
    """(mode id, menu text) of every colouring, predictions first."""
    modes = [("prediction:malignancy", "Prediction: p(malignant)"), ("uncertainty", "Prediction: uncertainty (MC std)")]
    modes += [(f"prediction:{t}", f"Prediction: {t}") for t in TASKS if t != "malignancy"]
    if with_labels:
        modes += [(f"label:{t}", f"Label: {t} (current)") for t in TASKS]
        modes += [(f"original:{t}", f"Label: {t} (original)") for t in TASKS]
        modes.append(("status", "Correction status"))
    modes += [("laterality", "Laterality"), ("view", "View"), ("source", "Source")]
    return modes


def points_in_polygon(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of the points inside a closed polygon (even-odd rule, vectorised over points)."""
    xy = np.asarray(xy, np.float64)
    poly = np.asarray(polygon, np.float64)
    inside = np.zeros(len(xy), bool)
    if len(poly) < 3 or not len(xy):
        return inside
    x, y = xy[:, 0], xy[:, 1]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo = np.minimum(poly.min(axis=0), poly.max(axis=0))
    hi = poly.max(axis=0)
    cand = np.flatnonzero((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]))
    cx, cy = x[cand], y[cand]
    hit = np.zeros(len(cand), bool)
    for ax, ay, bx, by in zip(x0, y0, x1, y1, strict=False):
        crosses = (ay > cy) != (by > cy)
        if not crosses.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = ax + (cy - ay) * (bx - ax) / (by - ay)
        hit ^= crosses & (cx < xint)
    inside[cand] = hit
    return inside


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


class ExplorerState(QObject):
    """Points, their 2-D projection, the colouring and the similar-cases index."""

    points_changed = Signal()  # keys / xy changed (a new projection)
    colour_changed = Signal()  # the colouring or the point sizes changed
    busy_changed = Signal(str, int, int)  # task ("" = idle), done, total
    source_changed = Signal()

    def __init__(
        self,
        app_state: AppState,
        labels: Any | None = None,
        cache_dir: str | Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.app = app_state
        self.labels = labels  # app.models.labels.LabelsState, when the label panel exists
        self.cache_dir = (
            Path(cache_dir) if cache_dir is not None else Path(app_state.settings.cache_dir) / "projections"
        )
        self.params = ProjectionParams()
        self.source = "opened"  # "opened" | "file"
        self.file_path: Path | None = None
        self.embeddings: Embeddings | None = None  # the points' latent vectors (file or opened images)
        self.projection: Projection | None = None
        self.keys: tuple[str, ...] = ()
        self.xy = np.zeros((0, 2), np.float32)
        self.colour_mode = "prediction:malignancy"
        self.size_by_uncertainty = False
        self.selected: tuple[str, ...] = ()  # may hold archive keys that are not opened
        self.busy: tuple[str, int, int] = ("", 0, 0)
        self.pending = 0  # opened images with a prediction that the projection does not show yet
        self.active = True  # the panel is on screen: a hidden explorer computes nothing (see set_active)
        self._stale = False  # a projection was asked for while inactive
        self.note = ""  # why the map is empty although there are points (too few for the method)
        self._rows: dict[str, int] = {}
        self._similarity: SimilarityIndex | None = None
        self._colouring: Colouring | None = None
        self._label_cache: dict[str, list[Any]] | None = None
        self._refresh = QTimer(self)
        self._refresh.setSingleShot(True)
        self._refresh.setInterval(400)
        self._refresh.timeout.connect(self._auto_refresh)
        self._recolour = QTimer(self)  # predictions arrive one by one: recolour at most every 150 ms
        self._recolour.setSingleShot(True)
        self._recolour.setInterval(150)
        self._recolour.timeout.connect(self._invalidate_colours)
        s = app_state
        s.runner.predictions_changed.connect(self._on_predictions)
        s.files.studies_changed.connect(self._on_predictions)
        s.activity.busy_changed.connect(
            lambda task, _d, _t: self._refresh.start() if not task and self.pending else None
        )
        s.files.selection_changed.connect(self._on_app_selection)
        s.runner.operating_point_changed.connect(lambda _t: self._invalidate_colours())
        if labels is not None and hasattr(labels, "labels_changed"):
            labels.labels_changed.connect(lambda _keys: self._invalidate_colours(labels_too=True))
        if labels is not None and hasattr(labels, "annotator_changed"):
            labels.annotator_changed.connect(lambda _name: self._invalidate_colours(labels_too=True))

    # ------------------------------------------------------------------ points
    def row(self, key: str) -> int | None:
        return self._rows.get(key)

    def path_of(self, key: str) -> str:
        """Where the image of a point lives ("" when unknown)."""
        try:
            return str(self.app.files.record(key).path)
        except KeyError:
            pass
        emb = self.embeddings
        row = self._rows.get(key)
        if emb is not None and emb.paths and row is not None and row < len(emb.paths) and emb.keys[row] == key:
            return emb.paths[row]
        return ""

    def is_open(self, key: str) -> bool:
        try:
            self.app.files.record(key)
        except KeyError:
            return False
        return True

    def _opened_embeddings(self) -> Embeddings:
        s = self.app
        preds = [
            (r.key, p)
            for r in s.files.study_set.images
            if (p := s.runner.predictions.get(r.key)) is not None and p.z is not None
        ]
        version = preds[0][1].model_version if preds else ""
        keys = tuple(k for k, _ in preds)
        z = np.stack([np.asarray(p.z, np.float32) for _, p in preds]) if preds else np.zeros((0, 496), np.float32)
        return Embeddings(keys, z, version)

    def use_opened(self) -> None:
        """Show the opened images (those with a prediction)."""
        self.source = "opened"
        self.file_path = None
        self.source_changed.emit()
        self.recompute()

    def load_embeddings(self, path: str | Path) -> None:
        """Read an embeddings file in the background and project it."""
        path = Path(path)
        self._set_busy("Reading embeddings", 0, 0)

        def job(progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> Embeddings:
            return read_embeddings(path)

        def loaded(emb: Embeddings) -> None:
            if not len(emb.keys):
                self._set_busy("", 0, 0)
                self.app.activity.message.emit("warning", f"{path}: the embeddings file holds no image")
                return
            self.source = "file"
            self.file_path = path
            self._set_points(emb, None)
            self.source_changed.emit()
            self.recompute()

        self.app.pool.submit(job, channel=_CHANNEL, on_result=loaded, on_error=self._on_error, owner=self)

    # ------------------------------------------------------------------ projection
    def set_params(self, params: ProjectionParams) -> None:
        if params != self.params:
            self.params = params
            self.recompute()

    def set_active(self, on: bool) -> None:
        """The panel is shown (True) or hidden: a hidden explorer projects nothing and reports nothing;
        what it was asked for meanwhile is computed when it is shown."""
        self.active = bool(on)
        if self.active and self._stale:
            self.recompute()

    def recompute(self) -> None:
        """Project the current points with the current parameters (cached results come back at once)."""
        if not self.active:
            self._stale = True
            return
        self._stale = False
        emb = self._opened_embeddings() if self.source == "opened" else self.embeddings
        if emb is None:
            return
        if self.source == "opened":
            self.embeddings = emb
            self.pending = 0
        params, cache_dir = self.params, self.cache_dir
        from inference.latent.projection import METHOD_NAMES

        n, need = len(emb.keys), MIN_POINTS.get(params.method, 0)
        self.note = ""
        if 0 < n < need:
            method = METHOD_NAMES[params.method]
            self.note = f"{method} needs at least {need} images; {n} have a prediction. PCA can show them."
        if not n or n < need:
            self._set_points(emb, Projection((), np.zeros((0, 2), np.float32), params, emb.model_version))
            return

        task = f"{METHOD_NAMES[params.method]} of {len(emb.keys)} images"
        if params.method == "umap" and not umap_compiled():
            task += " (first UMAP on this computer: compiling it, up to a minute, once)"
        self._set_busy(task, 0, 0)

        def job(progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> Projection:
            try:
                return project(emb, params, cache_dir=cache_dir, progress=progress, cancelled=cancelled)
            except ProjectionCancelled as exc:
                raise Cancelled() from exc

        self.app.pool.submit(
            job,
            channel=_CHANNEL,
            on_progress=lambda d, t: self._set_busy(task, d, t),
            on_result=lambda proj: self._set_points(emb, proj),
            on_error=self._on_error,
            on_finished=lambda cancelled: self._set_busy("", 0, 0) if cancelled else None,
            owner=self,
        )

    def cancel(self) -> None:
        self.app.pool.cancel(_CHANNEL)
        self._set_busy("", 0, 0)

    def _set_points(self, emb: Embeddings, proj: Projection | None) -> None:
        if self.embeddings is not emb or self._similarity is None or self._similarity.keys != emb.keys:
            self._similarity = None
        self.embeddings = emb
        if proj is not None:
            self.projection = proj
            self.keys = proj.keys
            self.xy = np.asarray(proj.xy, np.float32)
            self._rows = {k: i for i, k in enumerate(self.keys)}
            self._colouring = None
            self._set_busy("", 0, 0)
            self.points_changed.emit()
            self.colour_changed.emit()

    def _on_predictions(self, *_args: object) -> None:
        if not self._recolour.isActive():
            self._recolour.start()
        if self.source != "opened":
            return
        with_z = {r.key for r in self.app.files.study_set.images if r.key in self.app.runner.predictions}
        self.pending = len(with_z.symmetric_difference(self.keys))  # added (or dropped) since the projection
        if self.pending:
            self._refresh.start()

    def _auto_refresh(self) -> None:
        """New predictions: PCA follows at once; UMAP / t-SNE once the model run has finished."""
        if self.source != "opened" or not self.pending:
            return
        if self.params.method != "pca" and self.app.activity.busy[0]:
            return
        self.recompute()

    # ------------------------------------------------------------------ colours and sizes
    def set_colour_mode(self, mode: str) -> None:
        valid = {m for m, _ in colour_modes(True)}
        if mode not in valid:
            raise ValueError(f"unknown colour mode {mode!r}")
        if mode != self.colour_mode:
            self.colour_mode = mode
            self._colouring = None
            self.colour_changed.emit()

    def set_size_by_uncertainty(self, on: bool) -> None:
        if bool(on) != self.size_by_uncertainty:
            self.size_by_uncertainty = bool(on)
            self.colour_changed.emit()

    def _invalidate_colours(self, labels_too: bool = False) -> None:
        if labels_too:
            self._label_cache = None
        self._colouring = None
        self.colour_changed.emit()

    def colouring(self) -> Colouring:
        if self._colouring is None:
            self._colouring = self._compute_colouring(self.colour_mode)
        return self._colouring

    def uncertainty(self) -> np.ndarray:
        """MC-dropout std of p(malignant) per point (NaN where unknown)."""
        out = np.full(len(self.keys), np.nan, np.float32)
        for i, k in enumerate(self.keys):
            p = self.app.runner.predictions.get(k)
            if p is not None:
                out[i] = p.p_malignant_std
        return out

    def _probabilities(self, task: str) -> np.ndarray:
        """(N, classes) probabilities: the app's predictions, else the model's head applied to z."""
        n, classes = len(self.keys), TASK_CLASSES[task]
        out = np.full((n, len(classes)), np.nan, np.float32)
        missing = []
        for i, k in enumerate(self.keys):
            p = self.app.runner.predictions.get(k)
            probs = None if p is None else p.probabilities.get(task)
            if probs is not None and len(probs) == len(classes):
                out[i] = probs
            else:
                missing.append(i)
        manifest, emb = self.app.runner.manifest, self.embeddings
        if missing and manifest is not None and emb is not None and task in manifest.heads:
            if emb.model_version == manifest.version and emb.keys == self.keys:
                w, b = manifest.head(task)
                rows = np.asarray(missing)
                out[rows] = _softmax(emb.z[rows] @ w.T + b)
        return out

    def _meta(self, name: str) -> list[str]:
        emb = self.embeddings
        col = emb.meta.get(name) if emb is not None and emb.keys == self.keys else None
        out = []
        for i, k in enumerate(self.keys):
            value = ""
            try:
                rec = self.app.files.record(k)
                if name == "laterality":
                    value = self.app.files.laterality(k)
                elif name == "view":
                    value = rec.model_view or rec.view
                else:
                    value = rec.path.parent.name
            except KeyError:
                pass
            if col is not None and i < len(col) and col[i] and (name == "source" or not value):
                value = col[i]  # the CLI's source (input folder) names the archive's sites
            out.append(value)
        return out

    def _store_labels(self) -> dict[str, list[Any]]:
        if self._label_cache is None:
            records: dict[str, list[Any]] = {}
            store = getattr(self.labels, "store", None)
            if store is not None:
                try:
                    for rec in store.labels():
                        records.setdefault(rec.key, []).append(rec)
                except MammoReviewError as exc:
                    self.app.activity.message.emit("error", f"Labels cannot be read for the explorer: {exc}")
            self._label_cache = records
        return self._label_cache

    def _compute_colouring(self, mode: str) -> Colouring:
        kind, _, task = mode.partition(":")
        n = len(self.keys)
        if mode == "uncertainty":
            v = self.uncertainty()
            top = float(np.nanmax(v)) if np.isfinite(v).any() else 1.0
            return Colouring("value", "uncertainty (MC std)", values=v, vmin=0.0, vmax=max(top, 1e-6))
        if kind == "prediction":
            probs = self._probabilities(task)
            if task == "malignancy":
                return Colouring("value", "p(malignant)", values=probs[:, 1].copy(), vmin=0.0, vmax=1.0)
            codes = np.where(np.isnan(probs).any(axis=1), -1, np.nan_to_num(probs, nan=-1.0).argmax(axis=1))
            return Colouring("category", f"predicted {task}", codes=codes.astype(np.int16), names=TASK_CLASSES[task])
        if kind in ("label", "original"):
            return self._label_colouring(kind, task)
        if mode == "status":
            return self._status_colouring()
        values = self._meta(mode)
        names = tuple(sorted({v for v in values if v}))
        index = {name: i for i, name in enumerate(names)}
        codes = np.fromiter((index.get(v, -1) for v in values), np.int16, count=n)
        return Colouring("category", mode, codes=codes, names=names)

    def _original(self, records: Sequence[Any], task: str) -> str | None:
        found = [r for r in records if r.task == task and r.status == "suggested" and r.source != "model" and r.value]
        return found[0].value if found else None

    def _label_colouring(self, kind: str, task: str) -> Colouring:
        from inference.labels.store import combine

        store = self._store_labels()
        names = TASK_CLASSES[task]
        index = {c: i for i, c in enumerate(names)}
        codes = np.full(len(self.keys), -1, np.int16)
        for i, k in enumerate(self.keys):
            records = store.get(k)
            if not records:
                continue
            value = combine(records).get(task) if kind == "label" else None
            v = value.value if value is not None else (self._original(records, task) if kind == "original" else None)
            if v in index:
                codes[i] = index[v]
        what = "current" if kind == "label" else "original"
        return Colouring("category", f"{task} label ({what})", codes=codes, names=names)

    def correction_status(self, key: str) -> str:
        records = self._store_labels().get(key, [])
        confirmed = [r for r in records if r.status == "confirmed"]
        if not confirmed:
            return "unreviewed"
        for r in confirmed:
            original = self._original(records, r.task)
            if original is not None and r.value != original:
                return "corrected"
        return "confirmed"

    def _status_colouring(self) -> Colouring:
        index = {s: i for i, s in enumerate(STATUSES)}
        codes = np.fromiter((index[self.correction_status(k)] for k in self.keys), np.int16, count=len(self.keys))
        return Colouring("category", "correction status", codes=codes, names=STATUSES)

    def case(self, key: str) -> Case:
        """File name, patient, laterality, view and the current label of ``key`` (opened or archive)."""
        path = self.path_of(key)
        name = Path(path).name if path else ""
        try:
            rec = self.app.files.record(key)
            patient, lat, view = rec.patient_id, self.app.files.laterality(key), rec.view or rec.model_view
        except KeyError:
            emb, row = self.embeddings, self._rows.get(key)
            meta = emb.meta if emb is not None and row is not None and emb.keys[row] == key else {}

            def col(n: str) -> str:
                v = meta.get(n, ())
                return str(v[row]) if row is not None and row < len(v) else ""

            patient, lat, view = col("patient"), col("laterality"), col("view")
        return Case(name, patient, lat, view, self.label_words(key))

    def label_words(self, key: str) -> str:
        """The confirmed labels of ``key`` in words: the annotator's own, else another person's (named);
        "no label" when no person has labelled it. Suggestions are never shown as labels."""
        confirmed = [r for r in self._store_labels().get(key, []) if r.status == "confirmed"]
        if not confirmed:
            return "no label"
        me = getattr(self.labels, "annotator", "")
        mine = [r for r in confirmed if r.annotator == me]
        who = me if mine else confirmed[0].annotator
        rows = {r.task: r for r in (mine or [r for r in confirmed if r.annotator == who])}
        words = [
            _TASK_WORDS[t] + ("unknown" if rows[t].value is None else str(rows[t].value)) for t in TASKS if t in rows
        ]
        return ", ".join(words) + ("" if mine else f" ({who})")

    # ------------------------------------------------------------------ selection, current, similar
    def _on_app_selection(self, keys: tuple[str, ...]) -> None:
        if tuple(keys) != tuple(k for k in self.selected if self.is_open(k)):
            self.selected = tuple(keys)
            self.colour_changed.emit()

    def select_rows(self, rows: np.ndarray, add: bool = False) -> None:
        """Select points by row; opened images also become the files' selection (FilesState)."""
        keys = [self.keys[int(i)] for i in np.asarray(rows, int)]
        if add:
            have = set(self.selected)
            keys = list(self.selected) + [k for k in keys if k not in have]
        self.selected = tuple(keys)
        self.app.files.set_selection([k for k in keys if self.is_open(k)])
        self.colour_changed.emit()

    def select_box(self, x0: float, y0: float, x1: float, y1: float, add: bool = False) -> None:
        lo_x, hi_x = sorted((x0, x1))
        lo_y, hi_y = sorted((y0, y1))
        x, y = self.xy[:, 0], self.xy[:, 1]
        self.select_rows(np.flatnonzero((x >= lo_x) & (x <= hi_x) & (y >= lo_y) & (y <= hi_y)), add)

    def select_polygon(self, polygon: np.ndarray, add: bool = False) -> None:
        self.select_rows(np.flatnonzero(points_in_polygon(self.xy, polygon)), add)

    def click(self, key: str) -> bool:
        """A click on a point: it becomes the whole selection (a lasso's selection is replaced, so the
        label panel acts on this image alone) and its image is shown, selected before or not."""
        row = self.row(key)
        if row is not None and tuple(self.selected) not in ((), (key,)):
            self.select_rows(np.array([row]))
        return self.open(key)

    def open(self, key: str) -> bool:
        """Show an image in the viewer; an archive image that is not opened gets a message."""
        if self.is_open(key):
            self.app.files.set_current(key)
            return True
        path = self.path_of(key)
        where = f" ({path})" if path else ""
        self.app.activity.message.emit("info", f"This image is not opened{where}; double-click to open it")
        return False

    def open_file(self, key: str) -> bool:
        """Open an archive image's file in the viewer (replaces the opened set)."""
        if self.is_open(key):
            self.app.files.set_current(key)
            return True
        path = self.path_of(key)
        if path and Path(path).exists():
            self.app.open_paths([path])
            return True
        self.app.activity.message.emit("warning", f"The file of image {key} is not known or no longer exists")
        return False

    def similar(self, key: str, k: int = 8) -> tuple[Neighbour, ...]:
        """The ``k`` nearest images to ``key`` in the full latent space (cosine), itself excluded."""
        emb = self.embeddings
        if emb is None or not len(emb.keys):
            return ()
        if self._similarity is None or self._similarity.keys != emb.keys:
            self._similarity = SimilarityIndex.from_embeddings(emb)
        if key in self._similarity:
            return self._similarity.neighbours(key, k)
        p = self.app.runner.predictions.get(key)
        if p is not None and p.z is not None and (not emb.model_version or p.model_version == emb.model_version):
            return self._similarity.neighbours_of(p.z, k)
        return ()

    # ------------------------------------------------------------------ busy and errors
    def _set_busy(self, task: str, done: int, total: int) -> None:
        busy = (task, int(done), int(total))
        if busy != self.busy:
            self.busy = busy
            self.busy_changed.emit(*busy)

    def _on_error(self, err: WorkerError) -> None:
        self._set_busy("", 0, 0)
        exc = err.exception
        text = str(exc) if isinstance(exc, (MammoReviewError, FormatError)) else f"{type(exc).__name__}: {exc}"
        self.app.activity.message.emit("error", f"Latent-space explorer: {text}")
