"""The review queue panel: the order images should be reviewed in, the progress, import and export.

The table lists the opened images in the queue's order (model uncertainty, model/label
disagreement, or unlabelled first); a click opens an image. The panel also holds the
"Export labels…", "Import labels…" and "Models…" actions: its buttons trigger them, and the main
window puts them in its File menu.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.labels import LabelsState
from app.widgets.model_picker import ModelPickerDialog

__all__ = ["QueuePanel", "ORDER_TITLES"]

ORDER_TITLES = {
    "uncertainty": "Model uncertainty (MC dropout)",
    "disagreement": "Model disagrees with the label",
    "unlabelled": "Unlabelled first",
}
_COLUMNS = ("#", "Image", "Score", "Reviewed")


class QueuePanel(QWidget):
    """Render the queue of :class:`LabelsState`; clicks and actions become requests."""

    def __init__(self, labels: LabelsState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels = labels
        self.app = labels.app
        self.order = QComboBox()
        for key, title in ORDER_TITLES.items():
            self.order.addItem(title, key)
        self.order.setCurrentIndex(list(ORDER_TITLES).index(labels.order))
        self.order.currentIndexChanged.connect(lambda _i: labels.set_order(self.order.currentData()))
        self.bar = QProgressBar()
        self.bar.setFormat("%v / %m reviewed")
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellClicked.connect(self._on_clicked)
        nxt = QPushButton("Next unreviewed")
        nxt.clicked.connect(lambda _c=False: labels.next_in_queue())

        self.export_action = QAction("&Export labels…", self)
        self.export_action.setShortcut(QKeySequence("Ctrl+E"))
        self.export_action.triggered.connect(lambda _c=False: self.export_dialog())
        self.import_action = QAction("I&mport labels…", self)
        self.import_action.triggered.connect(lambda _c=False: self.import_dialog())
        self.models_action = QAction("&Models…", self)
        self.models_action.triggered.connect(lambda _c=False: self.models_dialog())
        row = QHBoxLayout()
        for act in (self.export_action, self.import_action, self.models_action):
            b = QPushButton(act.text().replace("&", ""))
            b.clicked.connect(lambda _c=False, a=act: a.trigger())
            row.addWidget(b)

        top = QHBoxLayout()
        top.addWidget(QLabel("Order"))
        top.addWidget(self.order, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.bar)
        lay.addWidget(self.table, 1)
        lay.addWidget(nxt)
        lay.addLayout(row)

        labels.queue_changed.connect(self.refresh)
        self.app.files.current_changed.connect(lambda _k: self._mark_current())
        self.refresh()

    # ------------------------------------------------------------------ rendering
    def refresh(self) -> None:
        queue = self.labels.queue
        prog = self.labels.progress()
        self.bar.setRange(0, max(1, prog.total))
        self.bar.setValue(prog.reviewed)
        self.bar.setFormat(f"{prog.reviewed} / {prog.total} reviewed")
        self.table.setRowCount(len(queue))
        for i, item in enumerate(queue):
            try:
                rec = self.app.files.record(item.key)
                name = f"{rec.patient_id or rec.path.parent.name} · {rec.label}  {rec.path.name}"
            except KeyError:
                name = item.key
            if self.labels.order == "disagreement":
                score = f"{item.disagreement:.2f}"
            else:
                score = "—" if math.isnan(item.uncertainty) else f"{item.uncertainty:.3f}"
            cells = (str(i + 1), name, score, "✓" if item.reviewed else "")
            for j, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setData(Qt.ItemDataRole.UserRole, item.key)
                self.table.setItem(i, j, cell)
        self.table.resizeColumnsToContents()
        self._mark_current()

    def _mark_current(self) -> None:
        cur = self.app.files.current_key
        for i in range(self.table.rowCount()):
            cell = self.table.item(i, 0)
            if cell is not None and cell.data(Qt.ItemDataRole.UserRole) == cur:
                self.table.selectRow(i)
                return
        self.table.clearSelection()

    def _on_clicked(self, row: int, _col: int) -> None:
        cell = self.table.item(row, 0)
        if cell is not None:
            self.app.files.set_current(cell.data(Qt.ItemDataRole.UserRole))

    # ------------------------------------------------------------------ dialogs
    def choose_export(self) -> tuple[str, bool] | None:
        """Ask for the export folder and whether to de-identify; None when cancelled."""
        folder = QFileDialog.getExistingDirectory(
            self, "Export labels: an empty folder, or one in which a new labels-export folder is made"
        )
        if not folder:
            return None
        box = QMessageBox(self)
        box.setWindowTitle("Export labels")
        box.setText(
            "De-identify the export? (recommended)\n\nDe-identified: DICOM copied without patient identifiers, "
            "pseudonymous keys; text burned into the pixels may remain.\nIdentified: no copies; names the original "
            "files, for training on this machine only."
        )
        deid = box.addButton("De-identified", QMessageBox.ButtonRole.AcceptRole)
        ident = box.addButton("Identified", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        if clicked not in (deid, ident):
            return None
        return folder, clicked is ident

    def export_dialog(self) -> None:
        choice = self.choose_export()
        if choice is not None:
            self.labels.export(choice[0], identified=choice[1])

    def choose_import(self) -> str | None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import labels: an export's annotations.csv or a label manifest", "", "CSV (*.csv)"
        )
        return path or None

    def import_dialog(self) -> None:
        path = self.choose_import()
        if path:
            self.labels.import_from(Path(path))

    def models_dialog(self) -> None:
        ModelPickerDialog(self.app, self).exec()
