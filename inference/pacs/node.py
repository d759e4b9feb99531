"""One way to name a server and talk to it, whatever its protocol.

A server is a DICOMweb root (``http[s]://[user:pass@]host[:port]/path``) or a DIMSE node
(``dicom://AETITLE@host:port``, or ``dicoms://AETITLE@host:port`` for DICOM TLS). A CA file (PEM)
checks the certificates of https and dicoms servers instead of the system's CAs. `query`, `retrieve`
and `send` pick the protocol's way: QIDO-RS or C-FIND; WADO-RS, C-GET or C-MOVE (to a listener
started for the occasion); STOW-RS or C-STORE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydicom.dataset import Dataset

from inference.pacs.cache import InstanceCache
from inference.pacs.dicomweb import DicomWebServer
from inference.pacs.dimse import DimsePeer
from inference.pacs.errors import PacsError
from inference.pacs.listener import DEFAULT_AE_TITLE, DEFAULT_PORT, StorageListener
from inference.pacs.query import QueryFilters, StudyMatch

__all__ = ["Server", "open_server", "query", "retrieve", "send", "RetrieveMethod"]

Server = DicomWebServer | DimsePeer
RetrieveMethod = Literal["auto", "wado", "get", "move"]


def open_server(
    spec: str,
    calling_ae: str = DEFAULT_AE_TITLE,
    timeout: float = 30.0,
    user: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
) -> Server:
    """The server a spec names (see the module's docstring). ``user`` and ``password`` (DICOMweb
    basic auth) take the place of credentials in the URL; ``ca_file`` checks TLS certificates."""
    text = spec.strip()
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        return DicomWebServer(text, user=user or None, password=password if user else None, timeout=timeout,
                              verify=ca_file or True)  # fmt: skip
    if scheme in ("dicom", "dicoms"):
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.username or not parts.hostname or port is None:
            raise PacsError(f"a DIMSE server is dicom[s]://AETITLE@host:port, not {spec!r}")
        return DimsePeer(parts.hostname, port, unquote(parts.username), calling_ae=calling_ae, timeout=timeout,
                         tls=scheme == "dicoms", ca_file=ca_file or None)  # fmt: skip
    raise PacsError(f"not a server (http[s]://host/dicom-web or dicom[s]://AETITLE@host:port): {spec!r}")


def query(server: Server, filters: QueryFilters | None = None, limit: int | None = None) -> list[StudyMatch]:
    """Studies matching ``filters`` (modality MG by default)."""
    if isinstance(server, DicomWebServer):
        return server.query_studies(filters, limit=limit)
    found = server.find_studies(filters)
    return found[:limit] if limit else found


def retrieve(
    server: Server,
    study_uid: str,
    cache: InstanceCache,
    method: RetrieveMethod = "auto",
    listener_port: int = DEFAULT_PORT,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[Path]:
    """A study into ``cache``: WADO-RS for DICOMweb; C-GET (``auto``) or C-MOVE for DIMSE. For
    C-MOVE a listener runs on ``listener_port`` under our calling AE title while the PACS sends."""
    if isinstance(server, DicomWebServer):
        if method not in ("auto", "wado"):
            raise PacsError(f"a DICOMweb server retrieves by WADO-RS, not {method}")
        return server.retrieve_study(study_uid, cache, progress=progress, cancelled=cancelled)
    if method in ("auto", "get"):
        return server.get_study(study_uid, cache, progress=progress, cancelled=cancelled)
    if method != "move":
        raise PacsError(f"a DIMSE server retrieves by C-GET or C-MOVE, not {method}")
    with StorageListener(cache, server.calling_ae, listener_port) as listener:
        server.move_study(study_uid, server.calling_ae, progress=progress)
    received = [p for p in listener.received if p.parent == cache.study_folder(study_uid)]
    if not received:
        raise PacsError(f"{server.name} moved study {study_uid} but nothing arrived on port {listener_port}")
    return received


def send(server: Server, datasets: Sequence[Dataset]) -> list[str]:
    """Instances to the server (STOW-RS or C-STORE); returns the SOP Instance UIDs it took."""
    return server.store(datasets)
