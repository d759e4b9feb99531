"""The label panel: set or confirm each task of the current image (or the selection), with a confidence.

Labelling mode (:data:`KEYS`): ``L`` anywhere in the window, or a click in the panel, turns it on and
an indicator says so; while on, the label keys go to the panel whatever widget has the keyboard
(a click on the image no longer turns ``2`` into a layout change); ``Esc`` leaves. Number keys pick
the focused task's class (1 = first class, 0 = unknown), ``C`` or Space (or the task's Confirm
button, or a click on the suggested class) confirms the suggestion, Up/Down switch task, ``[``/``-``
and ``]``/``+`` step the confidence by 10 %, Enter saves what was set or confirmed and moves to the
next image (in the review queue's or the study tree's order, as chosen in the panel, which shows the
position: "Image 4 of 70 in queue order"), Ctrl+Z / Ctrl+Shift+Z undo and redo (back on the image
they change). Each image starts at the first task. Pre-filled values are suggestions (model, DICOM, manifest) and are
never saved until a person confirms them. A failed save shows a red banner at once and leaves the
edit on screen.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QFont, QFontMetrics, QKeyEvent, QKeySequence, QMouseEvent, QShortcut
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QButtonGroup,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.models.labels import LabelsState, TaskDraft
from inference.formats import TASK_CLASSES, TASKS

__all__ = ["LabelPanel", "TaskEditor", "TASK_TITLES", "CLASS_NAMES", "KEYS"]

#: The label keys, for the panel's help line and the window's key list (F1): (keys, what they do).
KEYS: tuple[tuple[str, str], ...] = (
    ("L", "start labelling: the label keys below go to the Labels panel"),
    ("1–6", "the focused task's class (1 = first class)"),
    ("0", "unknown (an abstention)"),
    ("C or Space", "confirm the focused task's suggestion as it is"),
    ("↑ / ↓", "previous / next task"),
    ("[ ] or − +", "confidence −/+ 10 %"),
    ("Enter", "save what you set or confirmed, go to the next image"),
    ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo (shows the image it changes)"),
    ("Esc", "leave labelling"),
)

TASK_TITLES = {"malignancy": "Malignancy", "acr": "ACR category", "density": "BI-RADS density", "view": "View"}
CLASS_NAMES = {
    "malignancy": {"benign": "benign", "malignant": "malignant"},
    "acr": {c: c for c in TASK_CLASSES["acr"]},
    "density": {c: c for c in TASK_CLASSES["density"]},
    "view": {"CC": "CC", "MLO": "MLO"},
}
_STATUS_STYLE = {
    "saved": "color: #8fd18f;",
    "edited": "color: #7fb2ff; font-weight: bold;",
    "model": "color: #ffb347; font-weight: bold;",
    "dicom": "color: #ffb347;",
    "stored": "color: #ffb347;",
    "confirmed": "color: #7fb2ff; font-weight: bold;",
    "none": "color: #8a8a8a;",
}
_BUTTON_PADDING = 6  # px left and right of a class button's text (the "padding: 3px 6px" below)
_FRAME = "QFrame#task {{ border: {w}px solid {c}; border-radius: 4px; }}"
#: The chosen class's button: amber while suggested, blue when edited, green when confirmed.
_CHECKED = (
    "QPushButton {{ padding: 3px 6px; border: 1px solid #5a5a5a; border-radius: 3px; }}"
    "QPushButton:checked {{ background: {c}; color: white; font-weight: bold; border: 1px solid {c}; }}"
    "QPushButton:disabled {{ color: #6a6a6a; }}"
)
_CHECKED_COLOUR = {
    "saved": "#2e7d32",
    "edited": "#1f5fbf",
    "confirmed": "#1f5fbf",
    "model": "#a86b00",
    "dicom": "#a86b00",
    "stored": "#a86b00",
}
_BANNER = "background: #7a1f1f; color: white; padding: 6px; font-weight: bold;"
_MODE_ON = "background: #1f5fbf; color: white; padding: 4px; font-weight: bold;"
_MODE_OFF = "color: #8a8a8a; padding: 4px;"
_SELECTION = "background: #a86b00; color: white; padding: 4px;"
_DIGITS = {getattr(Qt.Key, f"Key_{i}"): i for i in range(10)}
_MINUS = (Qt.Key.Key_BracketLeft, Qt.Key.Key_Minus)
_PLUS = (Qt.Key.Key_BracketRight, Qt.Key.Key_Plus, Qt.Key.Key_Equal)
_ENTER = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
_CONFIRM = (Qt.Key.Key_C, Qt.Key.Key_Space)
_TEXT_INPUTS = (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)


def status_text(d: TaskDraft) -> str:
    """What the panel says about where a task's value comes from."""
    if d.origin == "saved":
        return f"Confirmed by {d.detail}"
    if d.origin == "edited":
        return "Edited — Enter saves"
    if d.origin == "confirmed":
        return f"Suggestion confirmed ({d.source}) — Enter saves"
    if d.origin == "model":
        return f"Suggested by model {d.detail} — not confirmed".replace("model  —", "model —")
    if d.origin == "dicom":
        return f"From {d.detail} — not confirmed"
    if d.origin == "stored":
        return f"Suggested by {d.detail} — not confirmed"
    return "No label"


class TaskEditor(QFrame):
    """One task: class buttons (+ unknown), the confidence slider, where the value came from."""

    def __init__(self, labels: LabelsState, task: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("task")
        self.labels = labels
        self.task = task
        classes = TASK_CLASSES[task]
        self.title = QLabel(f"<b>{TASK_TITLES[task]}</b>")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: dict[str | None, QPushButton] = {}
        row = QHBoxLayout()  # the classes; "unknown" and Confirm go on a row of their own, so nothing is cut
        row.setSpacing(3)
        for i, c in enumerate(classes):
            name = CLASS_NAMES[task][c]
            b = QPushButton(name if name == str(i + 1) else f"{name} ({i + 1})")
            b.setToolTip(f"Key {i + 1}")
            self.buttons[c] = b
        unknown = QPushButton("unknown (0)")
        unknown.setToolTip("Key 0: unknown (an abstention)")
        self.buttons[None] = unknown
        for value, b in self.buttons.items():
            b.setCheckable(True)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.group.addButton(b)
            b.clicked.connect(lambda _c=False, v=value: self._pick(v))
            if value is not None:
                row.addWidget(b)
        row.addStretch(1)
        self.confirm_button = QPushButton("✓ Confirm")
        self.confirm_button.setToolTip("Confirm this suggestion as it is (C or Space)")
        self.confirm_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.confirm_button.clicked.connect(self._confirm)
        row2 = QHBoxLayout()
        row2.setSpacing(3)
        row2.addWidget(unknown)
        row2.addStretch(1)
        row2.addWidget(self.confirm_button)
        # the chosen class is drawn bold: leave room for its bold text, so "benign (1)" is never cut
        bold = QFont(self.font())
        bold.setBold(True)
        metrics = QFontMetrics(bold)
        for b in (*self.buttons.values(), self.confirm_button):
            b.setMinimumWidth(max(28, metrics.horizontalAdvance(b.text()) + 2 * _BUTTON_PADDING + 6))
        self._rendering = False
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setSingleStep(10)
        self.slider.setPageStep(10)
        self.slider.setTickInterval(10)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.sliderReleased.connect(lambda: self._confidence(self.slider.value()))
        self.slider.valueChanged.connect(self._slider_moved)
        self.confidence = QLabel()
        self.confidence.setMinimumWidth(110)
        self.others = QLabel()
        self.others.setStyleSheet("color: #9a9a9a;")
        self.others.setWordWrap(True)
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.addWidget(self.title, 0, 0)
        grid.addWidget(self.status, 0, 1, 1, 2)
        grid.addLayout(row, 1, 0, 1, 3)
        grid.addLayout(row2, 2, 0, 1, 3)
        grid.addWidget(QLabel("Confidence"), 3, 0)
        grid.addWidget(self.slider, 3, 1)
        grid.addWidget(self.confidence, 3, 2)
        grid.addWidget(self.others, 4, 0, 1, 3)

    def _pick(self, value: str | None) -> None:
        self.labels.set_labelling(True)
        self.labels.set_focus_task(self.task)
        key = self._key()
        d = self.labels.draft(key, self.task) if key else None
        if d is not None and d.suggested and d.value == value and value is not None:
            self.labels.confirm(self.task)  # a click on the suggested class confirms it
        else:
            self.labels.set_value(self.task, value)
        panel = self.parentWidget()
        if panel is not None:
            panel.setFocus()

    def _confirm(self) -> None:
        self.labels.set_labelling(True)
        self.labels.set_focus_task(self.task)
        self.labels.confirm(self.task)
        panel = self.parentWidget()
        if panel is not None:
            panel.setFocus()

    def _slider_moved(self, value: int) -> None:
        if not self.slider.isSliderDown() and not self._rendering:
            self._confidence(value)

    def _confidence(self, value: int) -> None:
        self.labels.set_focus_task(self.task)
        if abs(self.labels.draft(self._key(), self.task).confidence * 100 - value) >= 0.5:
            self.labels.set_confidence(self.task, value / 100.0)

    def _key(self) -> str:
        t = self.labels.targets()
        return t[0] if t else ""

    def show_draft(self, d: TaskDraft | None, focused: bool, others: str) -> None:
        self._rendering = True
        try:
            enabled = d is not None
            for b in self.buttons.values():
                b.setEnabled(enabled)
            self.confirm_button.setEnabled(d is not None and d.suggested)
            self.slider.setEnabled(enabled and d is not None and d.value is not None)
            if d is None:
                self.group.setExclusive(False)
                for b in self.buttons.values():
                    b.setChecked(False)
                self.group.setExclusive(True)
                self.status.setText("")
                self.confidence.setText("")
                self.others.setText("")
            else:
                self.buttons[d.value].setChecked(True)
                self.slider.setValue(round(d.confidence * 100))
                self.confidence.setText("—" if d.value is None else f"{d.confidence:.0%} (u = {1 - d.confidence:.2f})")
                self.status.setText(escape(status_text(d)))
                self.status.setStyleSheet(_STATUS_STYLE.get(d.origin, ""))
                self.others.setText(others)
                self.others.setVisible(bool(others))
            colour = "#7fb2ff" if focused else "#5a5a5a"
            checked = _CHECKED_COLOUR.get(d.origin if d is not None else "none", "#555555")
            self.setStyleSheet(_FRAME.format(w=2 if focused else 1, c=colour) + _CHECKED.format(c=checked))
        finally:
            self._rendering = False


class LabelPanel(QWidget):
    """Render :class:`LabelsState` for the current image or the selection; keys edit it."""

    KEYS = KEYS  # the label keys, for the window's key list (F1)

    def __init__(self, labels: LabelsState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels = labels
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.banner = QLabel()
        self.banner.setStyleSheet(_BANNER)
        self.banner.setWordWrap(True)
        self.banner.hide()
        self.who = QLabel()
        change = QPushButton("Change…")
        change.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        change.clicked.connect(self.ask_annotator)
        self.target = QLabel()
        self.target.setWordWrap(True)
        self.clear_selection = QPushButton("Clear selection")
        self.clear_selection.setToolTip("Label the current image only")
        self.clear_selection.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.clear_selection.clicked.connect(lambda: labels.app.files.set_selection([]))
        self.clear_selection.hide()
        self.editors = {t: TaskEditor(labels, t, self) for t in TASKS}
        self.advance = QComboBox()
        self.advance.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for how, title in (("queue", "the review queue's order"), ("tree", "the study tree's order")):
            self.advance.addItem(title, how)
        self.advance.setToolTip("The order Enter (Accept) moves along; kept in the settings")
        self.advance.setCurrentIndex(self.advance.findData(labels.advance))
        self.advance.currentIndexChanged.connect(lambda _i: labels.set_advance(str(self.advance.currentData())))
        self.position = QLabel()
        self.position.setStyleSheet("color: #bbbbbb;")
        self.accept_button = QPushButton("Accept ⏎")
        self.accept_button.setToolTip("Save these labels as confirmed and go to the next image (Enter)")
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        actions = ((self.accept_button, self.accept), (self.undo_button, labels.undo), (self.redo_button, labels.redo))
        for b, slot in actions:
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(lambda _c=False, s=slot: (s(), self.setFocus()))
        help_line = QLabel(" · ".join(f"{k} {what.split(':')[0]}" for k, what in KEYS))
        help_line.setStyleSheet("color: #8a8a8a;")
        help_line.setWordWrap(True)

        self.mode = QLabel()
        self.mode.setWordWrap(True)
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: #7fb2ff;")
        self.notice.hide()
        top = QHBoxLayout()
        top.addWidget(self.who, 1)
        top.addWidget(change)
        buttons = QHBoxLayout()
        buttons.addWidget(self.accept_button, 2)
        buttons.addWidget(self.undo_button, 1)
        buttons.addWidget(self.redo_button, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.banner)
        lay.addWidget(self.mode)
        lay.addLayout(top)
        target_row = QHBoxLayout()
        target_row.addWidget(self.target, 1)
        target_row.addWidget(self.clear_selection)
        lay.addLayout(target_row)
        for e in self.editors.values():
            lay.addWidget(e)
        lay.addLayout(buttons)
        advance_row = QHBoxLayout()
        advance_row.addWidget(QLabel("Next image in"))
        advance_row.addWidget(self.advance, 1)
        lay.addLayout(advance_row)
        lay.addWidget(self.position)
        lay.addWidget(self.notice)
        lay.addWidget(help_line)
        lay.addStretch(1)

        # "L" anywhere in the window: label this image (the panel takes the keyboard)
        self.focus_shortcut = QShortcut(QKeySequence("L"), self, context=Qt.ShortcutContext.WindowShortcut)
        self.focus_shortcut.activated.connect(self.take_focus)

        labels.drafts_changed.connect(lambda _k: self.refresh())
        labels.labels_changed.connect(lambda _k: self.refresh())
        labels.focus_changed.connect(lambda _t: self.refresh())
        labels.annotator_changed.connect(lambda _n: self.refresh())
        labels.annotator_needed.connect(self._on_annotator_needed)
        labels.store_failed.connect(self._on_store_failed)
        labels.store_ok.connect(self.banner.hide)
        labels.labelling_changed.connect(self._on_labelling_changed)
        labels.reverted.connect(self._show_notice)
        labels.advance_changed.connect(self._on_advance_changed)
        labels.queue_changed.connect(self._render_position)
        labels.app.files.current_changed.connect(lambda _k: self.notice.hide())
        self._filtering = False
        self._on_labelling_changed(labels.labelling)
        labels.app.files.current_changed.connect(lambda _k: self.refresh())
        if labels.store_error:
            self._on_store_failed(labels.store_error)
        self.refresh()

    # ------------------------------------------------------------------ rendering
    def refresh(self) -> None:
        lab = self.labels
        name = lab.annotator
        self.who.setText(
            f"Annotator: <b>{escape(name)}</b>" if name else "Annotator: <i>not set (asked at the first label)</i>"
        )
        keys = lab.targets()
        several = len(keys) > 1
        self.clear_selection.setVisible(several)
        self.target.setStyleSheet(_SELECTION if several else "")
        if not keys:
            self.target.setText("<i>No image</i>")
        elif several:
            self.target.setText(f"<b>{len(keys)} images selected</b> — an edit applies to all of them")
        else:
            try:
                rec = lab.app.files.record(keys[0])
                where = f"{rec.label} · {rec.path.name}"
            except KeyError:
                where = keys[0]
            self.target.setText(f"<b>{escape(where)}</b>")
        drafts = lab.drafts(keys[0]) if keys else {}
        others = lab.others(keys[0]) if len(keys) == 1 else []
        for t, e in self.editors.items():
            o = ", ".join(
                f"{r.annotator}: {'unknown' if r.value is None else r.value} {r.confidence:.0%}"
                for r in others
                if r.task == t
            )
            e.show_draft(drafts.get(t), t == lab.focus_task and (lab.labelling or self.hasFocus()), escape(o))
        self.accept_button.setEnabled(bool(keys))
        self._render_position()
        self.undo_button.setEnabled(lab.can_undo())
        self.redo_button.setEnabled(lab.can_redo())

    def focusInEvent(self, event: object) -> None:  # noqa: N802 - Qt name
        super().focusInEvent(event)  # type: ignore[arg-type]
        self.labels.set_labelling(True)  # the panel has the keyboard: its keys are label keys
        self.refresh()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt name
        self.take_focus()
        super().mousePressEvent(event)

    def hideEvent(self, event: object) -> None:  # noqa: N802 - Qt name
        self.labels.set_labelling(False)  # a hidden panel takes no keys
        super().hideEvent(event)  # type: ignore[arg-type]

    def _on_labelling_changed(self, on: bool) -> None:
        if on:
            self.mode.setText("LABELLING — the label keys go here (Esc leaves)")
            self.mode.setStyleSheet(_MODE_ON)
        else:
            self.mode.setText("Press L (or click here) to label with the keyboard")
            self.mode.setStyleSheet(_MODE_OFF)
        app = QApplication.instance()
        if app is not None and on != self._filtering:
            if on:
                app.installEventFilter(self)
            else:
                app.removeEventFilter(self)
            self._filtering = on
        self.refresh()

    def _render_position(self) -> None:
        where = self.labels.position()
        self.position.setText(where[:1].upper() + where[1:] if where else "")
        self.position.setVisible(bool(where))

    def _on_advance_changed(self, how: str) -> None:
        i = self.advance.findData(how)
        if i != self.advance.currentIndex():
            self.advance.setCurrentIndex(i)
        self._render_position()

    def _show_notice(self, text: str) -> None:
        self.notice.setText(escape(text))
        self.notice.show()

    def focusOutEvent(self, event: object) -> None:  # noqa: N802 - Qt name
        super().focusOutEvent(event)  # type: ignore[arg-type]
        self.refresh()

    # ------------------------------------------------------------------ requests
    def take_focus(self) -> None:
        """Bring the panel (and its dock) forward and give it the keyboard."""
        w: QWidget | None = self
        while w is not None:
            w.raise_()
            w = w.parentWidget()
        self.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.labels.set_labelling(True)

    def accept(self) -> None:
        self.labels.accept()

    def ask_annotator(self) -> bool:
        """Ask for the annotator's name (stored in the settings); True when one was given."""
        name, ok = QInputDialog.getText(
            self, "Annotator", "Your name or initials (recorded with every label you give):", text=self.labels.annotator
        )
        if ok and name.strip():
            self.labels.set_annotator(name)
            return True
        return False

    def _on_annotator_needed(self) -> None:
        if self.ask_annotator():
            self.labels.accept()

    def _on_store_failed(self, text: str) -> None:
        self.banner.setText(text)
        self.banner.show()

    # ------------------------------------------------------------------ keyboard
    def _handles(self, event: QKeyEvent) -> bool:
        key = event.key()
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.MetaModifier):
            return bool(mods & Qt.KeyboardModifier.ControlModifier) and key in (Qt.Key.Key_Z, Qt.Key.Key_Y)
        if mods & Qt.KeyboardModifier.AltModifier:
            return False
        if key == Qt.Key.Key_Escape:
            return self.labels.labelling
        return (
            key in _DIGITS or key in _MINUS or key in _PLUS or key in _ENTER or key in _CONFIRM
            or key in (Qt.Key.Key_Up, Qt.Key.Key_Down)
        )

    def _takes(self, target: QObject) -> bool:
        """Whether a key sent to ``target`` is a label key while labelling: any widget of this window
        (or the window a floating dock belongs to), except text inputs; never in another window."""
        if not isinstance(target, QWidget) or not self.isVisible():
            return False
        if isinstance(target, _TEXT_INPUTS) or (isinstance(target, QComboBox) and target.isEditable()):
            return False
        mine = self.window()
        owner = mine.parentWidget()
        return target.window() is mine or (owner is not None and target.window() is owner.window())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt name
        """Labelling mode: the label keys go to the panel whatever widget has the keyboard."""
        kind = event.type()
        if (
            self.labels.labelling
            and kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress)
            and isinstance(event, QKeyEvent)
            and watched is not self
            and self._takes(watched)
            and self._handles(event)
        ):
            event.accept()
            if kind == QEvent.Type.KeyPress:
                self._key(event)
            return True
        return False

    def event(self, event: QEvent) -> bool:
        # Take our keys before window shortcuts (layouts on 1-4, studies on [ and ]) see them.
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) and self._handles(event):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt name
        if not self._handles(event):
            super().keyPressEvent(event)
            return
        self._key(event)

    def _key(self, event: QKeyEvent) -> None:
        lab = self.labels
        key = event.key()
        task = lab.focus_task
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            redo = key == Qt.Key.Key_Y or bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            lab.redo() if redo else lab.undo()
        elif key == Qt.Key.Key_Escape:
            lab.set_labelling(False)
            self.clearFocus()
        elif key in _DIGITS:
            n = _DIGITS[key]
            if n == 0:
                lab.set_value(task, None)
            else:
                lab.set_class_index(task, n - 1)
        elif key in _CONFIRM:
            lab.confirm(task)
        elif key == Qt.Key.Key_Up:
            lab.step_focus(-1)
        elif key == Qt.Key.Key_Down:
            lab.step_focus(1)
        elif key in _MINUS:
            lab.step_confidence(task, -1)
        elif key in _PLUS:
            lab.step_confidence(task, 1)
        elif key in _ENTER:
            self.accept()
        event.accept()
