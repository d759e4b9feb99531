"""File > Open from PACS: a query form, the studies found, retrieve (progress, cancel) and open;
Send results to PACS for the current study. The work is `app.models.pacs.PacsState`'s."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.pacs import PacsState
from app.models.state import AppState
from inference.pacs.query import QueryFilters

__all__ = ["PacsDialog", "open_pacs_dialog"]

_COLUMNS = ("Patient ID", "Name", "Date", "Accession", "Description", "Modalities", "Images")


class PacsDialog(QDialog):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.resize(860, 520)
        self.pacs = PacsState(state, self)
        form = QFormLayout()
        self.server_edit = QLineEdit(self.pacs.server)
        self.server_edit.setPlaceholderText("https://pacs.example.org/dicom-web  or  dicom[s]://PACS_AE@host:104")
        self.user_edit = QLineEdit(self.pacs.user)
        self.user_edit.setPlaceholderText("DICOMweb only; empty for none")
        self.password_edit = QLineEdit(self.pacs.password)
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_note = QLabel(self.pacs.passwords.describe().capitalize() + ".")
        self.ca_edit = QLineEdit(self.pacs.ca_file)
        self.ca_edit.setPlaceholderText("PEM file for https / dicoms; empty for the system's certificates")
        self.ae_edit = QLineEdit(self.pacs.calling_ae)
        form.addRow("Server", self.server_edit)
        form.addRow("User", self.user_edit)
        form.addRow("Password", self.password_edit)
        form.addRow("", self.password_note)
        form.addRow("CA certificates", self.ca_edit)
        form.addRow("Our AE title (DIMSE)", self.ae_edit)
        self.patient_id = QLineEdit()
        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("wildcards * and ? allowed")
        self.date_from, self.date_to = QLineEdit(), QLineEdit()
        for edit in (self.date_from, self.date_to):
            edit.setPlaceholderText("YYYY-MM-DD")
        dates = QHBoxLayout()
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        self.accession = QLineEdit()
        self.modality = QLineEdit("MG")
        form.addRow("Patient ID", self.patient_id)
        form.addRow("Patient name", self.patient_name)
        form.addRow("Study date", dates)
        form.addRow("Accession number", self.accession)
        form.addRow("Modality", self.modality)

        self.search_button = QPushButton("&Search")
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Research use only: results sent back are marked so.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retrieve_button = QPushButton("&Retrieve and open")
        self.cancel_button = QPushButton("&Cancel")
        self.send_button = QPushButton("Send &results to PACS")
        self.send_button.setToolTip("The current study's predictions as a DICOM SR and SEG (research use only)")
        self.gsps_check = QCheckBox("with a GSPS overlay")
        self.gsps_check.setToolTip("Also a presentation state per image: the evidence box and the probability, "
                                   "drawn by the PACS viewer")  # fmt: skip
        self.gsps_check.setChecked(self.pacs.send_gsps)
        self.listen_check = QCheckBox("Accept studies a PACS pushes, as AE title")
        self.listen_ae = QLineEdit(self.pacs.listen_ae)
        self.listen_ae.setMaxLength(16)
        self.listen_port = QSpinBox()
        self.listen_port.setRange(1, 65535)
        self.listen_port.setValue(self.pacs.listen_port)
        self.pushed_label = QLabel("")
        self.open_pushed_button = QPushButton("Open &pushed study")
        self.open_pushed_button.setEnabled(False)
        listen = QHBoxLayout()
        for w in (self.listen_check, self.listen_ae, QLabel("port"), self.listen_port, self.pushed_label):
            listen.addWidget(w)
        listen.addStretch(1)
        listen.addWidget(self.open_pushed_button)
        close = QPushButton("Close")
        buttons = QHBoxLayout()
        for b in (self.retrieve_button, self.cancel_button, self.send_button, self.gsps_check):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.search_button, alignment=Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        layout.addLayout(listen)

        self.search_button.clicked.connect(self.search)
        self.server_edit.returnPressed.connect(self.search)
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.table.doubleClicked.connect(lambda _i: self.retrieve_selected())
        self.cancel_button.clicked.connect(self.pacs.cancel)
        self.send_button.clicked.connect(self.send_results)
        close.clicked.connect(self.close)
        self.pacs.studies_changed.connect(self._fill)
        self.pacs.busy_changed.connect(self._busy)
        self.pacs.failed.connect(lambda text: self.status.setText(text))
        self.pacs.retrieved.connect(lambda folder: self.status.setText(f"Retrieved into {folder}; opening it."))
        self.pacs.sent.connect(self._sent)
        self.listen_check.toggled.connect(self._listen)
        self.pacs.received.connect(self._pushed)
        self.open_pushed_button.clicked.connect(self._open_pushed)
        self._last_pushed = ""
        self._busy("", 0, 0)

    def _listen(self, on: bool) -> None:
        if not on:
            self.pacs.stop_listening()
            self.pushed_label.setText("")
            return
        self.pacs.set_listener(self.listen_ae.text(), self.listen_port.value())
        if self.pacs.start_listening():
            self.pushed_label.setText(f"listening on port {self.pacs.listen_port}")
        else:
            self.listen_check.setChecked(False)
        self.listen_ae.setEnabled(not self.pacs.listening)
        self.listen_port.setEnabled(not self.pacs.listening)

    def _pushed(self, path: str) -> None:
        from pathlib import Path

        self._last_pushed = str(Path(path).parent)
        total = sum(self.pacs.pushed.values())
        n = len(self.pacs.pushed)
        self.pushed_label.setText(f"{total} instance(s) received, {n} stud{'y' if n == 1 else 'ies'}")
        self.open_pushed_button.setEnabled(True)

    def _open_pushed(self) -> None:
        if self._last_pushed:
            self.pacs.open_pushed(self._last_pushed)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self.pacs.stop_listening()
        self.pacs.cancel()
        super().closeEvent(event)

    def _remember(self) -> None:
        """Keep the form in the settings (the password in the keyring); credentials typed into the
        URL move to the User and Password fields."""
        if PacsState.credentials_in(self.server_edit.text()) is not None:
            self.pacs.server = self.server_edit.text()
            self.server_edit.setText(self.pacs.server)
            self.user_edit.setText(self.pacs.user)
            self.password_edit.setText(self.pacs.password)
        else:
            self.pacs.server = self.server_edit.text()
            self.pacs.user = self.user_edit.text()
            if self.pacs.user and self.password_edit.text() != self.pacs.password:
                self.pacs.set_password(self.password_edit.text())
        self.pacs.ca_file = self.ca_edit.text()
        self.pacs.calling_ae = self.ae_edit.text()

    def filters(self) -> QueryFilters:
        return QueryFilters(self.patient_id.text(), self.patient_name.text(), self.date_from.text(),
                            self.date_to.text(), self.accession.text(), self.modality.text())  # fmt: skip

    def search(self) -> None:
        self._remember()
        try:
            filters = self.filters()
            filters.keys()  # checks the dates
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        self.status.setText("Searching…")
        self.pacs.search(filters)

    def retrieve_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            self.status.setText("Select a study first.")
            return
        self._remember()
        self.status.setText("Retrieving…")
        self.pacs.retrieve(self.pacs.studies[rows[0].row()].study_uid)

    def send_results(self) -> None:
        self._remember()
        self.pacs.send_gsps = self.gsps_check.isChecked()
        self.pacs.send_results()

    def _sent(self, n: int) -> None:
        kinds = "SR, SEG, GSPS" if self.pacs.send_gsps else "SR, SEG"
        self.status.setText(f"Sent {n} result object(s) ({kinds}) to the PACS.")

    def _fill(self) -> None:
        studies = self.pacs.studies
        self.table.setRowCount(len(studies))
        for row, m in enumerate(studies):
            images = "" if m.n_instances is None else str(m.n_instances)
            name = m.patient_name.replace("^", " ").strip()
            cells = (m.patient_id, name, m.study_date, m.accession, m.description, ", ".join(m.modalities), images)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(m.study_uid)
                self.table.setItem(row, col, item)
        if studies:
            self.table.selectRow(0)
        self.status.setText(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found.")

    def _busy(self, what: str, done: int, total: int) -> None:
        working = bool(what)
        self.progress.setVisible(working)
        self.progress.setRange(0, total if total > 0 else 0)
        self.progress.setValue(done)
        self.progress.setFormat(f"{what} %v/%m" if total else what)
        self.cancel_button.setEnabled(working)
        for b in (self.search_button, self.retrieve_button, self.send_button):
            b.setEnabled(not working)


def open_pacs_dialog(parent: QWidget, state: AppState) -> PacsDialog:
    """Show the dialog (not modal: the app stays usable while a study comes in)."""
    dialog = PacsDialog(state, parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog
