"""A Storage SCP: a PACS (or a modality) pushes instances to mammo-review, for instance the answer
to a C-MOVE. Each received instance goes into the `InstanceCache`; ``on_stored(path)`` is called
from the listener's thread after it is on disk."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from inference.pacs.cache import InstanceCache
from inference.pacs.errors import PacsError

__all__ = ["StorageListener", "DEFAULT_AE_TITLE", "DEFAULT_PORT"]

DEFAULT_AE_TITLE = "MAMMOREVIEW"
DEFAULT_PORT = 11112
_SUCCESS, _OUT_OF_RESOURCES, _CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


def check_ae_title(title: str) -> str:
    """An AE title as DICOM allows it: 1 to 16 characters, printable, no backslash."""
    value = title.strip()
    if not 1 <= len(value) <= 16 or "\\" in value or not value.isprintable():
        raise PacsError(f"not a valid AE title (1 to 16 printable characters): {title!r}")
    return value


class StorageListener:
    """Accepts C-STORE (and C-ECHO) on ``host:port`` under ``ae_title`` until `stop`."""

    def __init__(
        self,
        cache: InstanceCache,
        ae_title: str = DEFAULT_AE_TITLE,
        port: int = DEFAULT_PORT,
        host: str = "0.0.0.0",
        on_stored: Callable[[Path], None] | None = None,
    ) -> None:
        self.cache, self.ae_title, self.port, self.host = cache, check_ae_title(ae_title), port, host
        self.on_stored = on_stored
        self.received: list[Path] = []
        self._lock = threading.Lock()
        self._server: Any = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> StorageListener:
        if self._server is not None:
            return self
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        try:
            self._server = ae.start_server(
                (self.host, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._handle_store)]
            )
        except OSError as exc:
            raise PacsError(f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc})") from None
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()

    def __enter__(self) -> StorageListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle_store(self, event: Any) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
        except Exception:  # a dataset that cannot be decoded
            return _CANNOT_UNDERSTAND
        try:
            path = self.cache.write(ds)
        except PacsError as exc:  # a disk error names the file; a bad UID does not
            return _OUT_OF_RESOURCES if exc.path is not None else _CANNOT_UNDERSTAND
        with self._lock:
            self.received.append(path)
        if self.on_stored is not None:
            self.on_stored(path)
        return _SUCCESS
