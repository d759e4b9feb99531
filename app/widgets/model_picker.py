"""The model picker: bundled and user models with their version and card; loads one via the model runner.

The selected model's file path is shown in a read-only field with "Copy path": it is what
``python -m training finetune --from`` and ``--model`` options take.

Models are ``<name>.onnx`` files with their manifest ``<name>.json`` and card ``<name>.md`` beside
them, in the ``resources`` package (bundled) and in the user's models folder (``models/`` in the
app's data folder, where fine-tuned models go; the setting ``models/folder`` overrides it).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.models.state import AppState
from inference.errors import ModelError
from inference.formats import is_scoring_graph, read_model_manifest

__all__ = ["ModelEntry", "list_models", "bundled_models_folder", "user_models_folder", "ModelPickerDialog"]


@dataclass(frozen=True)
class ModelEntry:
    """One model file as the picker lists it (``error`` says why it cannot be used)."""

    path: Path
    name: str
    version: str
    created: str
    card: str
    bundled: bool
    error: str = ""

    @property
    def title(self) -> str:
        where = "bundled" if self.bundled else str(self.path.parent)
        if self.error:
            return f"{self.path.name} — cannot be used ({where})"
        return f"{self.name} {self.version} ({where})"


def bundled_models_folder() -> Path:
    return Path(str(importlib.resources.files("resources") / "models"))


def user_models_folder(settings_value: object = None) -> Path:
    if settings_value:
        return Path(str(settings_value))
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return (Path(base) if base else Path.home() / ".mammo-review") / "models"


def _entry(path: Path, bundled: bool) -> ModelEntry:
    card_path = path.with_suffix(".md")
    try:
        card = card_path.read_text(encoding="utf-8")
    except OSError:
        card = ""
    try:
        m = read_model_manifest(path)
    except ModelError as exc:
        return ModelEntry(path, path.stem, "", "", card, bundled, exc.reason)
    return ModelEntry(path, m.name, m.version, m.created, card or m.card, bundled)


def list_models(folders: Iterable[tuple[Path, bool]]) -> list[ModelEntry]:
    """Every model (``.onnx``, not a model's scoring graph) in the (folder, bundled) pairs, bundled
    first, then newest first."""
    out: list[ModelEntry] = []
    seen: set[Path] = set()
    for folder, bundled in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.onnx")):
            if is_scoring_graph(path):  # a model's scoring graph, not a model
                continue
            real = path.resolve()
            if real not in seen:
                seen.add(real)
                out.append(_entry(path, bundled))
    out.sort(key=lambda e: e.created, reverse=True)
    out.sort(key=lambda e: not e.bundled)  # stable: bundled first, each group newest first
    return out


class ModelPickerDialog(QDialog):
    """List models; "Use this model" asks the model runner to load the chosen one."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setWindowTitle("Models")
        self.resize(820, 520)
        self.list = QListWidget()
        self.card = QTextBrowser()
        self.card.setOpenExternalLinks(False)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.list)
        split.addWidget(self.card)
        split.setSizes([320, 500])
        self.current = QLabel()
        self.path_field = QLineEdit()
        self.path_field.setReadOnly(True)
        self.path_field.setToolTip("The model file: what `python -m training finetune --from` takes")
        copy = QPushButton("Copy path")
        copy.clicked.connect(lambda _c=False: self.copy_path())
        path_row = QHBoxLayout()
        path_row.addWidget(QLabel("File:"))
        path_row.addWidget(self.path_field, 1)
        path_row.addWidget(copy)
        browse = QPushButton("Add a model file…")
        browse.clicked.connect(lambda _c=False: self._browse())
        buttons = QDialogButtonBox()
        self.use_button = buttons.addButton("Use this model", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Close)
        buttons.accepted.connect(self.use_selected)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.current)
        lay.addWidget(split, 1)
        lay.addLayout(path_row)
        lay.addWidget(browse)
        lay.addWidget(buttons)
        self.list.currentRowChanged.connect(lambda _r: self._show_card())
        self.extra: list[Path] = []
        self.refresh()

    def folders(self) -> list[tuple[Path, bool]]:
        user = user_models_folder(self.state.settings.value("models/folder"))
        return [(bundled_models_folder(), True), (user, False)]

    def refresh(self) -> None:
        self.entries = list_models(self.folders())
        known = {e.path.resolve() for e in self.entries}
        self.entries += [_entry(p, False) for p in self.extra if p.resolve() not in known]
        chosen = self.state.settings.model_path
        m = self.state.runner.manifest
        self.current.setText(
            f"In use: <b>{escape(m.name)} {escape(m.version)}</b>" if m is not None else "In use: (no model loaded yet)"
        )
        self.list.clear()
        for e in self.entries:
            item = QListWidgetItem(e.title)
            item.setData(Qt.ItemDataRole.UserRole, str(e.path))
            if e.error:
                item.setForeground(Qt.GlobalColor.red)
            self.list.addItem(item)
        selected = 0
        for i, e in enumerate(self.entries):
            if (chosen and Path(chosen).resolve() == e.path.resolve()) or (not chosen and e.bundled):
                selected = i
                break
        if self.entries:
            self.list.setCurrentRow(selected)
        self._show_card()

    def selected(self) -> ModelEntry | None:
        row = self.list.currentRow()
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def _show_card(self) -> None:
        e = self.selected()
        self.path_field.setText("" if e is None else str(e.path.resolve()))
        self.path_field.setCursorPosition(0)
        if e is None:
            self.card.setPlainText("No model found.")
            self.use_button.setEnabled(False)
            return
        head = f"{e.name} {e.version}\n{e.path}\ncreated {e.created or '?'}\n\n"
        if e.error:
            head += f"CANNOT BE USED: {e.error}\n\n"
        if e.card and not e.error:
            self.card.setMarkdown(e.card)
        else:
            self.card.setPlainText(head + (e.card or "(no model card)"))
        self.use_button.setEnabled(not e.error)

    def copy_path(self) -> None:
        """Put the selected model's path on the clipboard."""
        if self.path_field.text():
            QGuiApplication.clipboard().setText(self.path_field.text())

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "A model (.onnx with its .json beside it)", "", "ONNX model (*.onnx)"
        )
        if path:
            self.extra.append(Path(path))
            self.refresh()
            for i, e in enumerate(self.entries):
                if e.path.resolve() == Path(path).resolve():
                    self.list.setCurrentRow(i)

    def use_selected(self) -> None:
        """Ask the model runner to load the selected model ("" = the bundled default)."""
        e = self.selected()
        if e is None or e.error:
            return
        default = (bundled_models_folder() / "mammo-mtl.onnx").resolve()
        self.state.runner.set_model_path("" if e.path.resolve() == default else str(e.path))
        self.accept()
