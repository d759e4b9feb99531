"""LabelsState: the label panel's sub-state (drafts, the store, the review queue) beside AppState.

It references :class:`app.models.state.AppState` for the images, the current key, the selection and the
predictions, and owns the :class:`inference.labels.store.LabelStore`. Widgets render it and call its
request methods; it touches no widget and opens no dialog (``annotator_needed`` asks for one).

Drafts: what the panel shows for each task of an image before it is saved. A draft is pre-filled,
in this order, from the annotator's own saved label, a stored suggestion (an imported manifest),
the DICOM header (view), then the model's prediction; other annotators' confirmed labels are shown
but never pre-filled, so readings stay independent. A pre-filled value is a *suggestion*: it becomes
a label only when a person acts on that task, task by task: sets a value (``set_value``, source
``person``) or confirms the suggestion unchanged (``confirm``, the same class key or a click on it,
or a confidence step: source ``<suggestion>-confirmed``). ``accept()`` writes those, and only those,
of the target images (the selection when several images are selected, else the current one) as
*confirmed* labels in one undoable action, then moves to the next image in the order the person
chose (``advance``: the study tree's order or the review queue's, a setting; ``position()`` says
where the current image stands in it); untouched
suggestions are never stored. A write that fails keeps the drafts on screen and reports the error
at once (``store_failed`` and AppState's ``message``). Undo and redo go back to the image they
change and say what they did (``reverted`` and a message).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.models.state import AppState
from app.models.workers import WorkerError
from inference.errors import FormatError, LabelStoreError, MammoReviewError
from inference.formats import TASK_CLASSES, TASKS
from inference.labels.exchange import ExportResult, export_store, import_any
from inference.labels.records import confirmed_source
from inference.labels.review import ORDERS, QueueItem, ReviewProgress, progress, review_queue
from inference.labels.store import HistoryEntry, LabelEdit, LabelRecord, LabelStore

__all__ = ["LabelsState", "TaskDraft", "ORIGINS", "CONFIDENCE_STEP", "ADVANCE_ORDERS"]

#: Where a draft's value came from.
ORIGINS = ("saved", "stored", "dicom", "model", "edited", "confirmed", "none")
CONFIDENCE_STEP = 0.1
_SUGGESTED = ("stored", "dicom", "model")
#: The orders Enter moves along: name -> how the position is said ("image 4 of 70 in queue order").
ADVANCE_ORDERS = {"queue": "queue order", "tree": "tree order"}


@dataclass(frozen=True)
class TaskDraft:
    """One task of one image as the panel shows it."""

    value: str | None
    confidence: float
    origin: str  # one of ORIGINS
    detail: str = ""  # model version, suggesting annotator, or the saved label's annotator and time
    source: str = ""  # for a suggestion (and its confirmation): model, dicom, manifest or import

    @property
    def suggested(self) -> bool:
        """Pre-filled and not confirmed by a person yet."""
        return self.origin in _SUGGESTED

    @property
    def dirty(self) -> bool:
        """A person acted on this task and it is not saved yet (a set value or a confirmation)."""
        return self.origin in ("edited", "confirmed")


def _clamp(c: float) -> float:
    return round(min(1.0, max(0.0, c)), 2)


def _confirmed(d: TaskDraft) -> TaskDraft:
    """The suggestion ``d``, confirmed by a person (its value, confidence and source kept)."""
    return replace(d, origin="confirmed") if d.suggested else d


def _with_confidence(d: TaskDraft, confidence: float) -> TaskDraft:
    """A person's confidence for ``d``: a suggestion's value is thereby confirmed, anything else edited."""
    if d.value is None and d.origin == "none":
        return d
    origin = "confirmed" if d.suggested or d.origin == "confirmed" else "edited"
    detail = d.detail if origin == "confirmed" else ""
    return replace(d, confidence=_clamp(confidence), origin=origin, detail=detail)


class LabelsState(QObject):
    """Drafts, saving, undo/redo, the review queue, import and export."""

    drafts_changed = Signal(tuple)  # keys whose drafts changed
    labels_changed = Signal(tuple)  # keys whose stored labels changed
    focus_changed = Signal(str)  # the task the keyboard edits
    queue_changed = Signal()
    annotator_changed = Signal(str)
    annotator_needed = Signal()  # accept() needs a name: ask, set_annotator(), accept() again
    store_failed = Signal(str)  # a write or open failed: show at once; the edit stays on screen
    store_ok = Signal()  # the last write succeeded (clears the error banner)
    reverted = Signal(str)  # undo or redo happened: what it did, in words
    labelling_changed = Signal(bool)  # labelling mode on/off: the panel takes the label keys
    advance_changed = Signal(str)  # the order Enter moves along ("queue" or "tree")
    exported = Signal(object)  # ExportResult

    def __init__(self, app_state: AppState, store: LabelStore | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.app = app_state
        self.settings = app_state.settings
        self.store: LabelStore | None = store
        self.store_error = ""
        self.focus_task = TASKS[0]
        self.labelling = False
        self.order = str(self.settings.value("labels/order", "uncertainty"))
        if self.order not in ORDERS:
            self.order = "uncertainty"
        self.advance = str(self.settings.value("labels/advance", "queue"))
        if self.advance not in ADVANCE_ORDERS:
            self.advance = "queue"
        self._drafts: dict[str, dict[str, TaskDraft]] = {}
        self._queue: list[QueueItem] = []
        # predictions arrive one image at a time: re-order the queue once per burst, not per image
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(150)
        self._refresh_timer.timeout.connect(self.refresh_queue)
        if self.store is None:
            self._open_store()
        s = app_state
        s.files.studies_changed.connect(self._on_studies_changed)
        s.runner.predictions_changed.connect(self._on_predictions_changed)
        s.files.current_changed.connect(self._on_current_changed)
        s.files.selection_changed.connect(lambda _k: self.drafts_changed.emit(tuple(self.targets())))
        self.refresh_queue()

    # ------------------------------------------------------------------ store
    def _open_store(self) -> bool:
        try:
            self.store = LabelStore(self.settings.store_path)
        except LabelStoreError as exc:
            self.store = None
            self._fail(f"The label store cannot be used: {exc}")
            return False
        if self.store_error:
            self.store_error = ""
            self.store_ok.emit()
        return True

    def _fail(self, text: str) -> None:
        self.store_error = text
        self.store_failed.emit(text)
        self.app.activity.message.emit("error", text)

    def close(self) -> None:
        """Close the store (on quit); unsaved drafts are not labels and are dropped (see has_unsaved)."""
        self._refresh_timer.stop()
        if self.store is not None:
            self.store.close()
            self.store = None

    # ------------------------------------------------------------------ annotator
    @property
    def annotator(self) -> str:
        return self.settings.annotator

    def set_annotator(self, name: str) -> None:
        name = name.strip()
        if not name:
            raise ValueError("the annotator's name cannot be empty")
        if name != self.settings.annotator:
            self.settings.annotator = name
            self.annotator_changed.emit(name)
            self._drafts = {k: v for k, v in self._drafts.items() if any(d.dirty for d in v.values())}
            self.drafts_changed.emit(tuple(self.targets()))
            self.refresh_queue()

    # ------------------------------------------------------------------ targets and drafts
    def targets(self) -> list[str]:
        """The images an edit applies to: the selection when it holds several, else the current image."""
        sel = [k for k in self.app.files.selection if k]
        if len(sel) > 1:
            return sel
        return [self.app.files.current_key] if self.app.files.current_key else []

    def stored(self, key: str) -> list[LabelRecord]:
        if self.store is None:
            return []
        try:
            return self.store.labels(key)
        except LabelStoreError as exc:
            self._fail(str(exc))
            return []

    def others(self, key: str) -> list[LabelRecord]:
        """Other annotators' confirmed labels of ``key`` (shown, never pre-filled)."""
        me = self.annotator
        return [r for r in self.stored(key) if r.annotator != me and r.status == "confirmed"]

    def _suggest(self, key: str, task: str, records: Sequence[LabelRecord]) -> TaskDraft:
        me = self.annotator
        own = next((r for r in records if r.annotator == me and r.task == task and r.status == "confirmed"), None)
        if own is not None:
            when = own.time[:16].replace("T", " ")
            return TaskDraft(own.value, own.confidence, "saved", f"{own.annotator}, {when} UTC")
        stored = [r for r in records if r.task == task and r.status == "suggested" and r.value is not None]
        sug = sorted((r for r in stored if r.source != "model"), key=lambda r: -r.confidence)
        if sug:
            r = sug[0]
            return TaskDraft(r.value, r.confidence, "stored", r.annotator, r.source)
        if task == "view":
            try:
                rec = self.app.files.record(key)
            except KeyError:
                rec = None
            if rec is not None and rec.model_view in TASK_CLASSES["view"]:
                conf = 1.0 if rec.view_source == "tag" else 0.8
                if rec.kind != "dicom":
                    where = f"the file name ({rec.path.stem})"
                elif rec.view_source == "tag":
                    where = f"the DICOM header ({rec.view})"
                else:
                    where = f"the DICOM descriptions or the file name ({rec.view})"
                return TaskDraft(rec.model_view, conf, "dicom", where, "dicom")
        pred = self.app.runner.predictions.get(key)
        probs = None if pred is None else pred.probabilities.get(task)
        classes = TASK_CLASSES[task]
        if probs and len(probs) == len(classes):
            i = max(range(len(classes)), key=lambda j: probs[j])
            version = str(getattr(pred, "model_version", ""))
            return TaskDraft(classes[i], _clamp(float(probs[i])), "model", version, "model")
        old = sorted((r for r in stored if r.source == "model"), key=lambda r: -r.confidence)
        if old:  # a guess an older version stored (schema < 3): still only a suggestion
            r = old[0]
            return TaskDraft(r.value, r.confidence, "model", r.model_version, "model")
        return TaskDraft(None, 0.0, "none")

    def draft(self, key: str, task: str) -> TaskDraft:
        """What the panel shows for ``task`` of ``key``."""
        d = self._drafts.get(key, {}).get(task)
        if d is not None:
            return d
        return self._suggest(key, task, self.stored(key))

    def drafts(self, key: str) -> dict[str, TaskDraft]:
        records = self.stored(key)
        own = self._drafts.get(key, {})
        return {t: own.get(t) or self._suggest(key, t, records) for t in TASKS}

    def has_unsaved(self, key: str | None = None) -> bool:
        keys = [key] if key else list(self._drafts)
        return any(d.dirty for k in keys for d in self._drafts.get(k, {}).values())

    def _edit(self, task: str, change: Any) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        keys = self.targets()
        for key in keys:
            old = self.draft(key, task)
            self._drafts.setdefault(key, {})[task] = change(old)
        if keys:
            self.drafts_changed.emit(tuple(keys))

    def set_value(self, task: str, value: str | None) -> None:
        """Set ``task`` to a class name, or None for "unknown", on every target image (a person's
        value: source ``person``, even where it equals the suggestion)."""
        if value is not None and value not in TASK_CLASSES[task]:
            raise ValueError(f"{task} has no class {value!r}")

        def change(old: TaskDraft) -> TaskDraft:
            if value is None:
                return TaskDraft(None, 0.0, "edited")
            # a person's choice starts at 100 %; a confidence already set by a person is kept
            keep = old.value is not None and old.origin in ("saved", "edited", "confirmed")
            return TaskDraft(value, old.confidence if keep else 1.0, "edited")

        self._edit(task, change)

    def confirm(self, task: str) -> None:
        """Confirm the suggestion of ``task`` unchanged on every target image (a person's explicit act:
        it becomes a label with source ``<suggestion>-confirmed`` when accepted)."""
        self._edit(task, lambda old: _confirmed(old) if old.suggested else old)

    def set_class_index(self, task: str, index: int) -> None:
        """Keyboard: the index-th class (0-based) of ``task``; out of range is ignored."""
        classes = TASK_CLASSES[task]
        if 0 <= index < len(classes):
            self.set_value(task, classes[index])

    def set_confidence(self, task: str, confidence: float) -> None:
        self._edit(task, lambda old: _with_confidence(old, confidence))

    def step_confidence(self, task: str, steps: int) -> None:
        self._edit(task, lambda old: _with_confidence(old, old.confidence + steps * CONFIDENCE_STEP))

    def set_focus_task(self, task: str) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        if task != self.focus_task:
            self.focus_task = task
            self.focus_changed.emit(task)

    def step_focus(self, step: int) -> None:
        i = TASKS.index(self.focus_task)
        self.set_focus_task(TASKS[(i + step) % len(TASKS)])

    def discard(self) -> None:
        """Forget the unsaved edits of the target images."""
        keys = self.targets()
        for key in keys:
            self._drafts.pop(key, None)
        self.drafts_changed.emit(tuple(keys))

    # ------------------------------------------------------------------ saving
    def accept(self, advance: bool = True) -> bool:
        """Save what a person set or confirmed on the target images as labels (one undo step); then
        the next image. Untouched suggestions are not saved.

        Returns False when nothing was saved: nothing set or confirmed (a message says how), no
        annotator yet (``annotator_needed``), no store, or the write failed (``store_failed``; the
        drafts stay). An image whose labels are all saved already just moves on.
        """
        keys = self.targets()
        if not keys:
            return False
        edits = []
        for key in keys:
            for task, d in self._drafts.get(key, {}).items():
                if d.origin == "edited":
                    edits.append(LabelEdit(key, task, d.value, d.confidence, "confirmed", "person"))
                elif d.origin == "confirmed":
                    edits.append(LabelEdit(key, task, d.value, d.confidence, "confirmed", confirmed_source(d.source)))
        if not edits:
            if advance and len(keys) == 1 and any(d.origin == "saved" for d in self.drafts(keys[0]).values()):
                self._advance(keys[0], self.advance_keys())
                return False
            self.app.activity.message.emit(
                "info",
                "Nothing to save: no task was set or confirmed. A class key sets the focused task; "
                "C (or a click on the suggested class) confirms the suggestion.",
            )
            return False
        if not self.annotator:
            self.annotator_needed.emit()
            return False
        if self.store is None and not self._open_store():
            self.drafts_changed.emit(tuple(keys))
            return False
        manifest = self.app.runner.manifest
        version = manifest.version if manifest is not None else ""
        assert self.store is not None
        records = []
        for key in keys:
            try:
                records.append(self.app.files.record(key))
            except KeyError:
                pass
        try:
            self.store.remember_images(records)  # so a later export finds them when not opened
            self.store.set_labels(edits, annotator=self.annotator, source="person", model_version=version)
        except LabelStoreError as exc:
            self.drafts_changed.emit(tuple(keys))  # the person's edits stay on screen, unsaved
            self._fail(f"The labels were NOT saved: {exc}")
            return False
        for key in keys:
            self._drafts.pop(key, None)
        if self.store_error:
            self.store_error = ""
            self.store_ok.emit()
        old_order = self.advance_keys()  # the queue re-orders once the labels are in: move along the old one
        self.labels_changed.emit(tuple(keys))
        self.drafts_changed.emit(tuple(keys))
        self.refresh_queue()
        if advance and len(keys) == 1:
            self._advance(keys[0], old_order)
        return True

    def _advance(self, key: str, order: list[str]) -> None:
        if key not in order:
            return
        reviewed = {i.key for i in self._queue if i.reviewed}
        i = order.index(key)
        nxt = next((k for k in order[i + 1 :] + order[:i] if k not in reviewed), None)
        if nxt is None and i + 1 < len(order):
            nxt = order[i + 1]
        if nxt is not None:
            self.app.files.set_current(nxt)

    def advance_keys(self) -> list[str]:
        """The images in the order Enter moves along: the study tree's or the review queue's."""
        if self.advance == "tree":
            return [r.key for r in self.app.files.study_set.images]
        return [i.key for i in self._queue]

    def set_advance(self, how: str) -> None:
        """Where Enter goes next: "tree" (the study tree's order) or "queue" (the review queue's); kept
        in the settings."""
        if how not in ADVANCE_ORDERS:
            raise ValueError(f"unknown order {how!r} (expected one of {', '.join(ADVANCE_ORDERS)})")
        if how != self.advance:
            self.advance = how
            self.settings.set_value("labels/advance", how)
            self.advance_changed.emit(how)

    def position(self) -> str:
        """Where the current image stands in that order: "image 4 of 70 in queue order" ("" if not in it)."""
        order = self.advance_keys()
        cur = self.app.files.current_key
        if not cur or cur not in order:
            return ""
        return f"image {order.index(cur) + 1} of {len(order)} in {ADVANCE_ORDERS[self.advance]}"

    def next_in_queue(self) -> None:
        """Go to the next image of the queue that is not reviewed yet."""
        order = [i.key for i in self._queue]
        cur = self.app.files.current_key
        if cur in order:
            self._advance(cur, order)
        elif order:
            self.app.files.set_current(order[0])

    def _revert(self, redo: bool) -> bool:
        if self.store is None or not self.annotator:
            return False
        try:
            action = self.store.redo(self.annotator) if redo else self.store.undo(self.annotator)
            history = [] if action is None else self.store.history(annotator=self.annotator)
            rows = [h for h in history if h.action == action]
        except LabelStoreError as exc:
            self._fail(str(exc))
            return False
        if action is None:
            self.app.activity.message.emit("info", "Nothing to redo" if redo else "Nothing to undo")
            return False
        keys = tuple(dict.fromkeys(h.key for h in rows))
        for key in keys:
            self._drafts.pop(key, None)
        opened = [k for k in keys if self._opened(k)]
        if opened and self.app.files.current_key not in keys:
            self.app.files.set_current(opened[0])  # back to the image it changed
        text = self._describe_revert("Redone" if redo else "Undone", rows)
        self.labels_changed.emit(keys)
        self.drafts_changed.emit(keys)
        self.refresh_queue()
        self.reverted.emit(text)
        self.app.activity.message.emit("info", text)
        return True

    def _opened(self, key: str) -> bool:
        try:
            self.app.files.record(key)
        except KeyError:
            return False
        return True

    def _describe_revert(self, verb: str, rows: Sequence[HistoryEntry]) -> str:
        """E.g. "Undone on P1 L CC: malignancy malignant → (no label), acr 4 → 2"."""

        def show(state: Any) -> str:
            if state is None or state.status != "confirmed":
                return "(no label)"
            return "unknown" if state.value is None else f"{state.value} {state.confidence:.0%}"

        parts: dict[str, list[str]] = {}
        for h in rows:
            parts.setdefault(h.key, []).append(f"{h.task} {show(h.old)} → {show(h.new)}")
        texts = []
        for key, changes in parts.items():
            try:
                name = self.app.files.record(key).label
            except KeyError:
                name = key
            texts.append(f"{name}: {', '.join(changes)}")
        return f"{verb} on " + "; ".join(texts) if texts else verb

    def undo(self) -> bool:
        return self._revert(redo=False)

    def redo(self) -> bool:
        return self._revert(redo=True)

    def can_undo(self) -> bool:
        return self.store is not None and bool(self.annotator) and self.store.can_undo(self.annotator)

    def can_redo(self) -> bool:
        return self.store is not None and bool(self.annotator) and self.store.can_redo(self.annotator)

    # ------------------------------------------------------------------ queue
    def set_order(self, order: str) -> None:
        if order not in ORDERS:
            raise ValueError(f"unknown queue order {order!r}")
        if order != self.order:
            self.order = order
            self.settings.set_value("labels/order", order)
            self.refresh_queue()

    def refresh_queue(self) -> None:
        self._refresh_timer.stop()
        keys = [r.key for r in self.app.files.study_set.images]
        try:
            self._queue = review_queue(
                keys, self.app.runner.predictions, self.store, order=self.order, annotator=self.annotator or None
            )
        except LabelStoreError as exc:
            self._fail(str(exc))
            self._queue = review_queue(keys, self.app.runner.predictions, None, order=self.order)
        self.queue_changed.emit()

    @property
    def queue(self) -> list[QueueItem]:
        return list(self._queue)

    def progress(self) -> ReviewProgress:
        keys = [r.key for r in self.app.files.study_set.images]
        if self.store is None:
            return ReviewProgress(0, len(keys))
        return progress(keys, self.store, self.annotator or None)

    def _on_studies_changed(self) -> None:
        keys = {r.key for r in self.app.files.study_set.images}
        self._drafts = {k: v for k, v in self._drafts.items() if k in keys or any(d.dirty for d in v.values())}
        self.refresh_queue()

    def _on_current_changed(self, _key: str) -> None:
        self.set_focus_task(TASKS[0])  # each image starts at the first task
        self.drafts_changed.emit(tuple(self.targets()))

    def set_labelling(self, on: bool) -> None:
        """Labelling mode: while on, the label keys go to the labels panel (it shows so)."""
        if on != self.labelling:
            self.labelling = on
            self.labelling_changed.emit(on)

    def _on_predictions_changed(self, keys: tuple[str, ...]) -> None:
        self._refresh_timer.start()
        shown = set(self.targets()) & set(keys)
        if shown:
            self.drafts_changed.emit(tuple(shown))

    # ------------------------------------------------------------------ exchange
    def export(self, folder: str | Path, identified: bool = False) -> None:
        """Export every labelled image (opened ones, and others where the store last saw them) in a
        worker; ``exported`` (and a message) when done. Images no longer found are reported. A missing
        folder is made; into a folder that holds files already, a new ``labels-export-<time>`` folder."""
        if self.store is None:
            self._fail("No label store to export from")
            return
        store, target = self.store, Path(folder)
        if target.is_dir() and any(target.iterdir()):
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            target = next(
                t for i in range(1000) if not (t := target / f"labels-export-{stamp}{f'-{i}' if i else ''}").exists()
            )
        opened: list[Any] = list(self.app.files.study_set.images)

        def job(progress: Any, cancelled: Any) -> ExportResult:
            return export_store(store, target, opened, identified=identified, progress=progress, cancelled=cancelled)

        def done(result: ExportResult) -> None:
            text = (
                f"Exported {result.rows} image(s) and {result.annotations} label(s) to {result.folder}"
                f" (by source: {result.describe_sources()})"
            )
            if result.problems:
                problems = "; ".join(map(str, result.problems[:3]))
                text += f"; {len(result.problems)} image(s) could not be exported: {problems}"
            if result.flagged:
                text += (
                    f"; CHECK {len(result.flagged)} image(s) whose burned-in text reaches the breast"
                    " (listed in README.txt and deidentification.csv)"
                )
            warn = bool(result.problems or result.flagged)
            self.app.activity.message.emit("warning" if warn else "info", text)
            self.exported.emit(result)

        def failed(err: WorkerError) -> None:
            exc = err.exception
            what = str(exc) if isinstance(exc, MammoReviewError) else f"{type(exc).__name__}: {exc}"
            self._fail(f"Export failed: {what}")

        self.app.pool.submit(job, channel="export", on_result=done, on_error=failed, owner=self)

    def import_from(self, path: str | Path) -> int:
        """Import an export folder (its annotations.csv) or a label manifest .csv as suggestions."""
        if self.store is None and not self._open_store():
            return 0
        assert self.store is not None
        path = Path(path)
        try:
            result, what = import_any(self.store, path)
            manifest = not (path.is_dir() or path.name == "annotations.csv")
            grouped = self.app.group_by_manifest(path) if manifest else 0  # its patient / study columns
        except (FormatError, LabelStoreError) as exc:
            self._fail(f"Import failed: {exc}")
            return 0
        text = f"Imported {result.added} {what} from {result.source} ({result.skipped} already there"
        if result.left_out:
            text += f"; {result.left_out} model guess(es) left out: not labels"
        if grouped:
            text += f"; files without DICOM UIDs grouped into the manifest's {grouped} patient/study group(s)"
        self.app.activity.message.emit("info", text + ")")
        self.labels_changed.emit(tuple(r.key for r in self.app.files.study_set.images))
        self.drafts_changed.emit(tuple(self.targets()))
        self.refresh_queue()
        return result.added
