"""The state behind File > Open from PACS: the server, a study query, retrieve with progress and
cancel, and sending the current study's results back. QtCore only; the network work runs in the
app's worker pool (channel "pacs") through `inference.pacs`; errors arrive as one line, never fatal.

The server (a DICOMweb URL or dicom[s]://AE@host:port), the user name, a CA file, our AE title and
the timeout are kept in the settings under ``pacs/``; never the password. The password goes to the
OS keyring where there is one, else it is kept for this run of the app only (`PASSWORDS`).
Credentials written in a URL are taken out of it: the user name to the settings, the password to
the keyring.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from app.models.workers import Cancelled, WorkerError
from inference.errors import MammoReviewError
from inference.pacs.cache import InstanceCache
from inference.pacs.credentials import PasswordStore
from inference.pacs.dicomweb import split_credentials
from inference.pacs.errors import PacsCancelled, PacsError
from inference.pacs.listener import DEFAULT_AE_TITLE, DEFAULT_PORT, StorageListener
from inference.pacs.node import Server, open_server, query, retrieve, send
from inference.pacs.query import QueryFilters, StudyMatch

if TYPE_CHECKING:
    from app.models.state import AppState

__all__ = ["PacsState", "CHANNEL", "PASSWORDS"]

CHANNEL = "pacs"

#: The passwords of this run of the app (each PacsState reads and writes them through the keyring).
PASSWORDS = PasswordStore()


class PacsState(QObject):
    """One query form and its results; retrieved studies open in the app's state."""

    studies_changed = Signal()
    busy_changed = Signal(str, int, int)  # what ("" when idle), done, total
    failed = Signal(str)  # a one-line message for the user
    retrieved = Signal(str)  # the study's folder in the cache
    sent = Signal(int)  # result objects the server took
    received = Signal(str)  # a file a PACS pushed to our listener (emitted from the listener's thread)
    listening_changed = Signal(bool)

    def __init__(self, state: AppState, parent: QObject | None = None, passwords: PasswordStore | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.passwords = passwords if passwords is not None else PASSWORDS
        self.studies: list[StudyMatch] = []
        self.busy = ""
        self.pushed: dict[str, int] = {}  # study folder -> instances received by the listener
        self._listener: StorageListener | None = None
        self.received.connect(self._on_received)
        if self.credentials_in(self.server):  # settings written before the keyring: move the password out
            self.server = self.server

    # ------------------------------------------------------------------ settings
    def _setting(self, name: str, default: str) -> str:
        value = self.state.settings.value(f"pacs/{name}", default)
        return default if value is None else str(value)

    @property
    def server(self) -> str:
        return self._setting("server", "")

    @server.setter
    def server(self, value: str) -> None:
        """Keep the server; credentials in a DICOMweb URL go to `user` and the password store."""
        text = value.strip()
        creds = self.credentials_in(text)
        if creds is not None:
            text = split_credentials(text)[0]
            self.user = creds[0]
        self.state.settings.set_value("pacs/server", text)
        if creds is not None:
            self.set_password(creds[1])

    @staticmethod
    def credentials_in(url: str) -> tuple[str, str] | None:
        if not url.lower().startswith(("http://", "https://")):
            return None
        try:
            return split_credentials(url)[1]
        except PacsError:
            return None

    @property
    def user(self) -> str:
        """The DICOMweb user name (basic auth); "" for none."""
        return self._setting("user", "")

    @user.setter
    def user(self, value: str) -> None:
        self.state.settings.set_value("pacs/user", value.strip())

    @property
    def password(self) -> str:
        """The user's password on the server: this run's, else the keyring's; "" if unknown."""
        return self.passwords.get(self.server, self.user) or ""

    def set_password(self, value: str) -> bool:
        """Keep the password of `user` on `server`; True when the OS keyring saved it."""
        return self.passwords.set(self.server, self.user, value)

    @property
    def ca_file(self) -> str:
        """CA certificates (PEM) that check an https or dicoms server; "" for the system's."""
        return self._setting("ca_file", "")

    @ca_file.setter
    def ca_file(self, value: str) -> None:
        self.state.settings.set_value("pacs/ca_file", value.strip())

    @property
    def calling_ae(self) -> str:
        return self._setting("calling_ae", DEFAULT_AE_TITLE)

    @calling_ae.setter
    def calling_ae(self, value: str) -> None:
        self.state.settings.set_value("pacs/calling_ae", value.strip() or DEFAULT_AE_TITLE)

    @property
    def timeout(self) -> float:
        try:
            return float(self._setting("timeout", "30"))
        except ValueError:
            return 30.0

    @property
    def cache(self) -> InstanceCache:
        folder = self._setting("cache_dir", "")
        return InstanceCache(folder or None)

    @property
    def listen_ae(self) -> str:
        return self._setting("listen_ae", DEFAULT_AE_TITLE)

    @property
    def listen_port(self) -> int:
        try:
            return int(self._setting("listen_port", str(DEFAULT_PORT)))
        except ValueError:
            return DEFAULT_PORT

    def set_listener(self, ae_title: str, port: int) -> None:
        self.state.settings.set_value("pacs/listen_ae", ae_title.strip() or DEFAULT_AE_TITLE)
        self.state.settings.set_value("pacs/listen_port", int(port))

    # ------------------------------------------------------------------ the Storage SCP
    @property
    def listening(self) -> bool:
        return self._listener is not None

    def start_listening(self, host: str = "0.0.0.0") -> bool:
        """Accept studies a PACS pushes (C-STORE) under the settings' AE title and port; False
        (and `failed`) when the port cannot be opened."""
        if self._listener is not None:
            return True
        try:
            self._listener = StorageListener(self.cache, self.listen_ae, self.listen_port, host,
                                             on_stored=lambda path: self.received.emit(str(path))).start()  # fmt: skip
        except PacsError as exc:
            self._listener = None
            self.failed.emit(str(exc))
            return False
        self.listening_changed.emit(True)
        return True

    def stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
            self.listening_changed.emit(False)

    def open_pushed(self, folder: str) -> None:
        self.state.open_paths([Path(folder)])

    def _on_received(self, path: str) -> None:
        folder = str(Path(path).parent)
        self.pushed[folder] = self.pushed.get(folder, 0) + 1

    # ------------------------------------------------------------------ requests
    def _opener(self) -> Any:
        """A function that opens the server as the settings say (called in a worker)."""
        spec, ae, timeout, user, ca = self.server, self.calling_ae, self.timeout, self.user, self.ca_file
        password = self.password

        def connect() -> Server:
            return open_server(spec, calling_ae=ae, timeout=timeout, user=user or None, password=password, ca_file=ca)

        return connect

    def _submit(self, what: str, fn: Any, on_result: Any) -> None:
        self._set_busy(what, 0, 0)
        self.state.pool.submit(
            fn, channel=CHANNEL, on_result=on_result, on_error=self._on_error,
            on_progress=lambda d, t: self._set_busy(what, d, t),
            on_finished=lambda cancelled: self._set_busy("", 0, 0), owner=self,
        )  # fmt: skip

    def search(self, filters: QueryFilters) -> None:
        """Query the server for studies; the answer replaces ``studies``."""
        connect = self._opener()

        def work(progress: Any, cancelled: Any) -> list[StudyMatch]:
            return query(connect(), filters)

        self._submit("Searching", work, self._on_studies)

    def retrieve(self, study_uid: str) -> None:
        """Retrieve a study into the cache, then open it in the app."""
        connect, cache = self._opener(), self.cache

        def work(progress: Any, cancelled: Any) -> str:
            try:
                retrieve(connect(), study_uid, cache, progress=progress, cancelled=cancelled)
            except PacsCancelled:
                raise Cancelled() from None
            return str(cache.study_folder(study_uid))

        self._submit("Retrieving", work, self._on_retrieved)

    def cancel(self) -> None:
        self.state.pool.cancel(CHANNEL)
        self._set_busy("", 0, 0)

    @property
    def send_gsps(self) -> bool:
        """Send a presentation state (GSPS) per image with the SR and SEGs."""
        return self._setting("gsps", "false").lower() in ("1", "true")

    @send_gsps.setter
    def send_gsps(self, on: bool) -> None:
        self.state.settings.set_value("pacs/gsps", "true" if on else "false")

    def send_results(self) -> None:
        """Send the SR and SEGs (and GSPS if `send_gsps`) of the current study's predictions."""
        study = self.state.files.current_study
        if study is None:
            self.failed.emit("Open a study first.")
            return
        exam = self.state.runner.exam_of(study.images[0].key)
        manifest = self.state.runner.manifest
        if exam is None or manifest is None:
            self.failed.emit("The model has not finished with this study yet.")
            return
        from inference.pacs.findings import findings_from_predictions

        keys = {r.key for r in study.images}
        breasts = [b for b in self.state.runner.breasts.values() if keys & set(b.image_keys)]
        lat = {r.key: self.state.files.laterality(r.key) for r in study.images}
        try:
            with_maps = {r.key: self.state.runner.prediction_with_maps(r.key) for r in study.images}
            preds = {k: p for k, p in with_maps.items() if p is not None}  # maps reloaded where let go
            findings = findings_from_predictions(study, preds, breasts, exam, lat, manifest.name)
        except PacsError as exc:
            self.failed.emit(str(exc))
            return
        paths = [r.path for r in study.images if r.kind == "dicom"]
        connect, gsps = self._opener(), self.send_gsps

        def work(progress: Any, cancelled: Any) -> int:
            from inference.pacs.results import result_objects, source_headers

            objects = result_objects(findings, source_headers(paths), gsps=gsps)
            return len(send(connect(), objects))

        self._submit("Sending results", work, self.sent.emit)

    # ------------------------------------------------------------------ answers
    def _set_busy(self, what: str, done: int, total: int) -> None:
        self.busy = what
        self.busy_changed.emit(what, done, total)

    def _on_studies(self, studies: list[StudyMatch]) -> None:
        self.studies = list(studies)
        self.studies_changed.emit()

    def _on_retrieved(self, folder: str) -> None:
        self.retrieved.emit(folder)
        self.state.open_paths([Path(folder)])

    def _on_error(self, err: WorkerError) -> None:
        exc = err.exception
        text = str(exc) if isinstance(exc, MammoReviewError) else f"Unexpected error: {type(exc).__name__}: {exc}"
        self.failed.emit(text)
