"""File > Open from PACS against a real Orthanc: search, retrieve and open, send the results back;
a wrong password and a cancelled retrieve."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

import app.models.pacs
from app.models.pacs import PacsState
from app.models.settings import Settings
from app.models.state import AppState
from app.widgets.main_window import MainWindow
from app.widgets.pacs_dialog import PacsDialog
from inference.pacs.credentials import PasswordStore
from inference.pacs.dicomweb import DicomWebServer
from inference.pacs.dimse import DimsePeer
from inference.pacs.query import QueryFilters

from ...inference.pacs.orthanc import Orthanc, free_port, missing_programs, running_orthanc
from ..conftest import wait_idle
from ..pacs_keyring import FileKeyring


@pytest.fixture(autouse=True)
def keyring_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileKeyring:
    """The app's passwords go to a keyring in a file here, never the system's."""
    ring = FileKeyring(tmp_path / "keyring.json")
    monkeypatch.setattr(app.models.pacs, "PASSWORDS", PasswordStore(ring))
    return ring


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    if missing_programs():
        pytest.fail(f"{', '.join(missing_programs())} missing: apt-get install orthanc orthanc-dicomweb")
    with running_orthanc(tmp_path_factory.mktemp("orthanc-app")) as server:
        yield server


@pytest.fixture
def stored(pacs: Orthanc, study_dir: Path) -> str:
    files = sorted(study_dir.glob("*.dcm"))
    DicomWebServer(pacs.dicomweb_with_credentials).store([dcmread(p) for p in files])
    return str(dcmread(files[0]).StudyInstanceUID)


@pytest.fixture
def dialog(qtbot, make_state, tmp_path: Path) -> PacsDialog:
    state: AppState = make_state()
    state.settings.set_value("pacs/cache_dir", str(tmp_path / "pacs-cache"))
    d = PacsDialog(state)
    qtbot.addWidget(d)
    return d


def test_search_retrieve_open_and_send_results(qtbot, dialog: PacsDialog, pacs: Orthanc, stored: str) -> None:
    dialog.server_edit.setText(pacs.dicomweb_with_credentials)
    dialog.patient_id.setText("P1")
    dialog.search_button.click()
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 1, timeout=60000)
    assert dialog.table.item(0, 0).text() == "P1" and dialog.table.item(0, 6).text() == "4"
    # remembered: the URL and user in the settings, the password in the keyring only
    assert (dialog.pacs.server, dialog.pacs.user) == (pacs.dicomweb, pacs.user)
    assert (dialog.server_edit.text(), dialog.user_edit.text()) == (pacs.dicomweb, pacs.user)
    assert dialog.password_edit.text() == pacs.password
    ini = dialog.pacs.state.settings.path.read_text()
    assert pacs.password not in ini and pacs.dicomweb in ini

    state = dialog.pacs.state
    dialog.retrieve_button.click()
    qtbot.waitUntil(lambda: not state.pool.running("pacs"), timeout=60000)
    assert "Retrieved into" in dialog.status.text(), dialog.status.text()
    wait_idle(qtbot, state)
    assert [s.study_uid for s in state.files.study_set.studies] == [stored]
    assert len(state.runner.predictions) == 4
    state.files.set_current(state.files.study_set.images[0].key)

    with qtbot.waitSignal(dialog.pacs.sent, timeout=60000) as sent:
        dialog.send_button.click()
    assert sent.args == [5]  # the SR and a SEG per image
    assert "Sent 5" in dialog.status.text()
    series = DicomWebServer(pacs.dicomweb_with_credentials).query_series(stored)
    assert sorted(s.modality for s in series).count("MG") == 4
    assert {"SR", "SEG"} <= {s.modality for s in series}

    qtbot.waitUntil(lambda: dialog.send_button.isEnabled(), timeout=60000)
    dialog.gsps_check.setChecked(True)  # and with a presentation state per image
    with qtbot.waitSignal(dialog.pacs.sent, timeout=60000) as sent:
        dialog.send_button.click()
    assert sent.args == [9] and "Sent 9 result object(s) (SR, SEG, GSPS)" in dialog.status.text()
    assert state.settings.value("pacs/gsps") == "true"
    series = DicomWebServer(pacs.dicomweb_with_credentials).query_series(stored)
    assert sum(s.n_instances or 0 for s in series if s.modality == "PR") == 4
    wait_idle(qtbot, state)


def test_a_wrong_password_is_shown_not_fatal(qtbot, dialog: PacsDialog, pacs: Orthanc) -> None:
    dialog.server_edit.setText(f"http://{pacs.user}:wrong@127.0.0.1:{pacs.http_port}/dicom-web")
    with qtbot.waitSignal(dialog.pacs.failed, timeout=60000):
        dialog.search_button.click()
    qtbot.waitUntil(lambda: not dialog.pacs.state.pool.running(), timeout=60000)
    assert "refused the credentials" in dialog.status.text()
    assert dialog.search_button.isEnabled() and not dialog.cancel_button.isEnabled()


def test_a_cancelled_retrieve_opens_nothing(qtbot, make_state, tmp_path: Path, pacs: Orthanc, stored: str) -> None:
    state: AppState = make_state()
    state.settings.set_value("pacs/cache_dir", str(tmp_path / "cache"))
    model = PacsState(state)
    model.server = pacs.dicomweb_with_credentials
    opened: list[str] = []
    model.retrieved.connect(opened.append)
    model.retrieve(stored)
    model.cancel()
    qtbot.waitUntil(lambda: not state.pool.running(), timeout=60000)
    assert opened == [] and model.busy == "" and not state.files.study_set.studies


def test_bad_dates_are_caught_before_the_query(qtbot, dialog: PacsDialog) -> None:
    dialog.date_from.setText("last week")
    dialog.search_button.click()
    assert "not a date" in dialog.status.text()
    assert not dialog.pacs.state.pool.running()
    assert QueryFilters(date_from="2024-01-01").keys()["StudyDate"] == "20240101-"


def test_the_file_menu_opens_it(qtbot, make_state) -> None:
    win = MainWindow(make_state())
    qtbot.addWidget(win)
    action = next(a for a in win.file_menu.actions() if a.text() == "Open from &PACS…")
    action.trigger()
    dialogs = win.findChildren(PacsDialog)
    assert len(dialogs) == 1 and dialogs[0].isVisible()
    dialogs[0].close()


def test_a_pushed_study_can_be_opened(qtbot, dialog: PacsDialog, study_dir: Path) -> None:
    port = free_port()
    dialog.listen_ae.setText("MAMMOAPP")
    dialog.listen_port.setValue(port)
    dialog.listen_check.setChecked(True)
    assert dialog.pacs.listening and not dialog.listen_port.isEnabled()
    assert dialog.pacs.state.settings.value("pacs/listen_port") in (port, str(port))
    files = sorted(study_dir.glob("*.dcm"))
    DimsePeer("127.0.0.1", port, "MAMMOAPP", calling_ae="MODALITY").store(files)
    qtbot.waitUntil(lambda: sum(dialog.pacs.pushed.values()) == 4, timeout=60000)
    assert "4 instance(s) received, 1 study" in dialog.pushed_label.text()
    dialog.open_pushed_button.click()
    state = dialog.pacs.state
    wait_idle(qtbot, state)
    assert len(state.files.study_set.images) == 4
    dialog.listen_check.setChecked(False)
    assert not dialog.pacs.listening


def test_a_port_in_use_is_shown(qtbot, dialog: PacsDialog) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        dialog.listen_port.setValue(busy.getsockname()[1])
        dialog.listen_check.setChecked(True)
        assert not dialog.pacs.listening and not dialog.listen_check.isChecked()
        assert "cannot listen" in dialog.status.text()


def test_a_new_session_has_the_password_from_the_keyring(
    qtbot, make_state, tmp_path: Path, pacs: Orthanc, keyring_file: FileKeyring
) -> None:
    state: AppState = make_state()
    first = PacsDialog(state)
    qtbot.addWidget(first)
    first.server_edit.setText(pacs.dicomweb)
    first.user_edit.setText(pacs.user)
    first.password_edit.setText(pacs.password)
    assert "system keyring" in first.password_note.text()
    first.search_button.click()
    qtbot.waitUntil(lambda: not state.pool.running("pacs"), timeout=60000)
    assert "found" in first.status.text(), first.status.text()
    first.close()
    assert pacs.password not in state.settings.path.read_text()

    app.models.pacs.PASSWORDS = PasswordStore(keyring_file)  # a new run of the app: nothing in memory
    later_state: AppState = make_state(settings_=Settings(state.settings.path))
    later = PacsDialog(later_state)
    qtbot.addWidget(later)
    assert (later.server_edit.text(), later.user_edit.text(), later.password_edit.text()) == (
        pacs.dicomweb, pacs.user, pacs.password)  # fmt: skip
    later.search_button.click()
    qtbot.waitUntil(lambda: not later_state.pool.running("pacs"), timeout=60000)
    assert "found" in later.status.text(), later.status.text()


def test_without_a_keyring_the_dialog_says_so(qtbot, make_state, monkeypatch: pytest.MonkeyPatch) -> None:
    from keyring.backends import fail

    monkeypatch.setattr(app.models.pacs, "PASSWORDS", PasswordStore(fail.Keyring()))
    state: AppState = make_state()
    d = PacsDialog(state)
    qtbot.addWidget(d)
    assert "session only" in d.password_note.text()
    d.server_edit.setText("https://pacs.example.org/dicom-web")
    d.user_edit.setText("radiologist")
    d.password_edit.setText("only-in-memory")
    d._remember()
    assert d.pacs.password == "only-in-memory"
    assert "only-in-memory" not in state.settings.path.read_text()


def test_the_listener_port_is_free_after_the_dialog_closes(qtbot, dialog: PacsDialog) -> None:
    import socket

    port = free_port()
    dialog.listen_port.setValue(port)
    dialog.listen_check.setChecked(True)
    assert dialog.pacs.listening
    with pytest.raises(OSError), socket.create_server(("0.0.0.0", port)):
        pass  # taken while the dialog is open
    dialog.close()
    assert not dialog.pacs.listening
    with socket.create_server(("0.0.0.0", port)):
        pass  # free again
