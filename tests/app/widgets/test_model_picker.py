"""File > Models shows the selected model's path (what ``training finetune --from`` needs), copyable."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtGui import QGuiApplication

from app.models.settings import Settings
from app.widgets.model_picker import ModelPickerDialog, bundled_models_folder


def test_model_picker_shows_and_copies_each_models_path(qtbot, make_state, settings: Settings, tmp_path: Path) -> None:
    user = tmp_path / "models"
    user.mkdir()
    for suffix in (".onnx", ".json", ".md"):
        shutil.copy(bundled_models_folder() / f"mammo-mtl{suffix}", user / f"tuned{suffix}")
    settings.set_value("models/folder", str(user))
    dialog = ModelPickerDialog(make_state())
    qtbot.addWidget(dialog)
    assert dialog.path_field.isReadOnly()
    assert dialog.path_field.text() == str((bundled_models_folder() / "mammo-mtl.onnx").resolve())
    row = next(i for i, e in enumerate(dialog.entries) if e.path.name == "tuned.onnx")
    dialog.list.setCurrentRow(row)
    assert dialog.path_field.text() == str((user / "tuned.onnx").resolve())
    dialog.copy_path()
    assert QGuiApplication.clipboard().text() == str((user / "tuned.onnx").resolve())
