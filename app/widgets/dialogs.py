"""The app's dialogs: about (with the research-only notice), keyboard shortcuts, settings."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.settings import DEVICES, Settings
from app.models.state import AppState
from inference.formats import INTENDED_USE

__all__ = ["RESEARCH_NOTICE", "AboutDialog", "ShortcutsDialog", "SettingsDialog", "SettingsChoice"]

RESEARCH_NOTICE = "Research use only — not for diagnosis or any clinical decision."


class AboutDialog(QDialog):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About mammo-review")
        m = state.runner.manifest
        lines = [
            "<h2>mammo-review</h2>",
            f"<p style='color:#ffb347'><b>{escape(RESEARCH_NOTICE)}</b></p>",
            "<p>Multi-task network after Tardy &amp; Mateus, <i>Leveraging Multi-Task Learning to Cope With "
            "Poor and Missing Labels of Mammograms</i>, Front. Radiol. 2022.</p>",
        ]
        if m is not None:
            lines.append(
                f"<p>Model <b>{escape(m.name)}</b> version {escape(m.version)}, input height {m.input_height}, "
                f"running on {escape(str(getattr(state.runner.session, 'device', '?')))}.</p>"
            )
            lines.append(f"<p>Intended use: {escape(m.intended_use)}</p>")
            if m.training_data:
                lines.append("<p>Training data: " + escape(", ".join(m.training_data)) + "</p>")
            if m.card:
                lines.append("<p>" + escape(m.card) + "</p>")
        else:
            lines.append(f"<p>Intended use: {escape(INTENDED_USE)}</p>")
        text = QLabel("".join(lines))
        text.setWordWrap(True)
        text.setMinimumWidth(460)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        lay = QVBoxLayout(self)
        lay.addWidget(text)
        lay.addWidget(buttons)
        self.text = text


class ShortcutsDialog(QDialog):
    """The keyboard shortcuts, as (keys, what) rows."""

    def __init__(self, rows: Sequence[tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        for i, (keys, what) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(keys))
            self.table.setItem(i, 1, QTableWidgetItem(what))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().hide()
        self.table.setMinimumSize(480, 420)
        mouse = QLabel(
            "Mouse: wheel zooms, left-drag pans (all views together), right-drag or Shift + left-drag "
            "changes the window (horizontal: width, vertical: level), click picks the current image."
        )
        mouse.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(mouse)
        lay.addWidget(buttons)


class SettingsChoice:
    """What the settings dialog returns."""

    def __init__(self, device: str, annotator: str, cache_dir: str, model_path: str) -> None:
        self.device, self.annotator, self.cache_dir, self.model_path = device, annotator, cache_dir, model_path


class SettingsDialog(QDialog):
    """Device (CPU or GPU), annotator name, prediction cache folder, model file."""

    def __init__(self, settings: Settings, cuda: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.device = QComboBox()
        titles = {"auto": "Automatic (GPU when available)", "cpu": "CPU", "cuda": "GPU (CUDA)"}
        for d in DEVICES:
            self.device.addItem(titles[d], d)
        self.device.setCurrentIndex(max(0, self.device.findData(settings.device)))
        if not cuda:
            self.device.setToolTip("This onnxruntime has no CUDA support; install onnxruntime-gpu for the GPU")
        self.annotator = QLineEdit(settings.annotator)
        self.cache_dir = QLineEdit(str(settings.cache_dir))
        self.model_path = QLineEdit(settings.model_path)
        self.model_path.setPlaceholderText("bundled model")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse_model)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_path, 1)
        model_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Run the model on", self.device)
        form.addRow("Annotator", self.annotator)
        form.addRow("Prediction cache", self.cache_dir)
        form.addRow("Model file", model_row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(buttons)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model", "", "ONNX model (*.onnx)")
        if path:
            self.model_path.setText(path)

    def choice(self) -> SettingsChoice:
        return SettingsChoice(
            device=str(self.device.currentData()),
            annotator=self.annotator.text().strip(),
            cache_dir=self.cache_dir.text().strip(),
            model_path=self.model_path.text().strip(),
        )
