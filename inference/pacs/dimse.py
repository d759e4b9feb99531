"""DIMSE with pynetdicom: C-ECHO, C-FIND (study root), C-GET (with SCP role negotiation), C-MOVE
(to a Storage SCP such as our `StorageListener`) and C-STORE.

A peer is (host, port, its AE title); we call as ``calling_ae``, which the PACS must know for
C-FIND, C-GET and C-MOVE. A rejected or aborted association, a refused connection and a timeout
each raise their own `PacsError`. Retrieved instances are asked for uncompressed (the PACS
decompresses what it stores compressed), so what arrives is pixel-identical and always readable.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from inference.pacs.cache import InstanceCache, valid_uid
from inference.pacs.errors import (
    AssociationRejectedError,
    PacsCancelled,
    PacsConnectionError,
    PacsError,
    PacsTimeoutError,
)
from inference.pacs.listener import DEFAULT_AE_TITLE, check_ae_title
from inference.pacs.query import (
    INSTANCE_RETURN_KEYS,
    SERIES_RETURN_KEYS,
    STUDY_RETURN_KEYS,
    InstanceMatch,
    QueryFilters,
    SeriesMatch,
    StudyMatch,
)

__all__ = ["DimsePeer", "RETRIEVED_SOP_CLASSES"]

#: What a C-GET accepts: mammograms and what may sit beside them in a study (reports, masks, states).
RETRIEVED_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.50",  # Mammography CAD SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
)
_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
_PENDING = (0xFF00, 0xFF01)
_WARNING = (0x0001, 0xB000, 0xB006, 0xB007)


def _status(ds: Dataset | None) -> int:
    return int(getattr(ds, "Status", -1)) if ds is not None else -1


@dataclass
class DimsePeer:
    """A DICOM node (a PACS) we call as ``calling_ae``; ``timeout`` bounds connecting and each answer.
    ``tls``: DICOM TLS (PS3.15 Annex B), the peer's certificate checked against the system's CAs or
    ``ca_file`` (a PEM bundle) and its host name."""

    host: str
    port: int
    ae_title: str
    calling_ae: str = DEFAULT_AE_TITLE
    timeout: float = 30.0
    tls: bool = False
    ca_file: str | None = None

    def __post_init__(self) -> None:
        self.ae_title = check_ae_title(self.ae_title)
        self.calling_ae = check_ae_title(self.calling_ae)

    @property
    def name(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}" + (" (TLS)" if self.tls else "")

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise PacsConnectionError(f"cannot read the CA file {self.ca_file!r} ({exc})") from None

    # ------------------------------------------------------------------ association
    def _ae(self) -> AE:
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        return ae

    @contextlib.contextmanager
    def _association(
        self, ae: AE, handlers: list[Any] | None = None, roles: list[Any] | None = None
    ) -> Iterator[Association]:
        tls_args = (self._tls_context(), self.host) if self.tls else None
        assoc = ae.associate(self.host, self.port, ae_title=self.ae_title, ext_neg=roles, evt_handlers=handlers,
                             tls_args=tls_args)  # fmt: skip
        if not assoc.is_established:
            if assoc.is_rejected:
                raise AssociationRejectedError(
                    f"{self.name} rejected the association (is the called AE title right, and is our AE title "
                    f"{self.calling_ae} registered there?)"
                )
            if not self._reachable():
                raise PacsConnectionError(f"cannot connect to {self.name} (refused or unreachable)")
            if self.tls:
                self._check_handshake()
            raise AssociationRejectedError(
                f"{self.name} aborted the association before it was established"
                + ("" if self.tls else " (does it expect DICOM TLS?)")
            )
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _reachable(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=min(self.timeout, 5.0)):
                return True
        except OSError:
            return False

    def _check_handshake(self) -> None:
        """Raise `PacsConnectionError` naming the TLS failure (an unknown CA, a plain port)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=min(self.timeout, 10.0)) as raw:
                with self._tls_context().wrap_socket(raw, server_hostname=self.host):
                    return
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or str(exc)
            raise PacsConnectionError(
                f"TLS error with {self.name}: its certificate is not trusted ({reason})"
            ) from None
        except (ssl.SSLError, TimeoutError, ConnectionError) as exc:
            raise PacsConnectionError(
                f"TLS error with {self.name}: no TLS handshake ({type(exc).__name__}); is it a plain DICOM port?"
            ) from None
        except OSError:
            return

    def _failed(self, assoc: Association, what: str, status: Dataset | None) -> PacsError:
        if assoc.is_aborted or status is None or "Status" not in status:
            if assoc.is_aborted:
                return AssociationRejectedError(f"{self.name} aborted the association while {what}")
            return PacsTimeoutError(f"{self.name} did not answer within {self.timeout:g} s while {what}")
        comment = str(status.get("ErrorComment", "") or "").strip()
        detail = f"status 0x{_status(status):04X}" + (f": {comment}" if comment else "")
        return PacsError(f"{self.name} failed {what} ({detail})")

    # ------------------------------------------------------------------ C-ECHO
    def echo(self) -> None:
        """C-ECHO: raises unless the peer answers with success."""
        ae = self._ae()
        ae.add_requested_context(Verification)
        with self._association(ae) as assoc:
            status = assoc.send_c_echo()
            if _status(status) != 0:
                raise self._failed(assoc, "answering C-ECHO", status)

    # ------------------------------------------------------------------ C-FIND
    def _find(self, identifier: Dataset, what: str) -> list[Dataset]:
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        found: list[Dataset] = []
        with self._association(ae) as assoc:
            for status, answer in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
                code = _status(status)
                if code in _PENDING and answer is not None:
                    found.append(answer)
                elif code != 0:
                    raise self._failed(assoc, what, status)
        return found

    def find_studies(self, filters: QueryFilters | None = None) -> list[StudyMatch]:
        """C-FIND at study level (modality MG by default)."""
        filters = filters or QueryFilters()
        identifier = _identifier("STUDY", STUDY_RETURN_KEYS, filters.keys())
        return [StudyMatch.from_dataset(ds) for ds in self._find(identifier, "searching for studies")]

    def find_series(self, study_uid: str) -> list[SeriesMatch]:
        identifier = _identifier("SERIES", SERIES_RETURN_KEYS, {"StudyInstanceUID": study_uid})
        return [SeriesMatch.from_dataset(ds, study_uid) for ds in self._find(identifier, "searching for series")]

    def find_instances(self, study_uid: str) -> list[InstanceMatch]:
        identifier = _identifier("IMAGE", INSTANCE_RETURN_KEYS, {"StudyInstanceUID": study_uid})
        return [InstanceMatch.from_dataset(ds, study_uid) for ds in self._find(identifier, "searching for instances")]

    # ------------------------------------------------------------------ C-GET
    def get_study(
        self,
        study_uid: str,
        cache: InstanceCache,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[Path]:
        """C-GET a study over one association into ``cache``; returns the paths received.
        ``progress(done, total)`` as answers come; `PacsCancelled` (the association is aborted)
        when ``cancelled()`` turns true."""
        _check_study(study_uid)
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for sop_class in RETRIEVED_SOP_CLASSES:
            ae.add_requested_context(sop_class, _UNCOMPRESSED)
        roles = [build_role(sop_class, scp_role=True) for sop_class in RETRIEVED_SOP_CLASSES]
        received: list[Path] = []
        refused: list[str] = []

        def on_store(event: Any) -> int:
            try:
                ds = event.dataset
                ds.file_meta = event.file_meta
                if str(ds.get("StudyInstanceUID", "")) != study_uid:
                    refused.append(str(ds.get("SOPInstanceUID", "?")))
                    return 0xC000
                received.append(cache.write(ds))
            except PacsError as exc:
                refused.append(exc.reason)
                return 0xA700
            except Exception as exc:  # an undecodable dataset: refuse it, go on with the others
                refused.append(f"{type(exc).__name__}: {exc}")
                return 0xC000
            return 0x0000

        identifier = _identifier("STUDY", (), {"StudyInstanceUID": study_uid})
        with self._association(ae, handlers=[(evt.EVT_C_STORE, on_store)], roles=roles) as assoc:
            for status, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet):
                code = _status(status)
                if cancelled is not None and cancelled():
                    assoc.abort()
                    raise PacsCancelled(f"retrieve of study {study_uid} cancelled after {len(received)} instance(s)")
                if code in _PENDING:
                    if progress is not None:
                        remaining = int(getattr(status, "NumberOfRemainingSuboperations", 0) or 0)
                        progress(len(received), len(received) + remaining)
                elif code not in (0, *_WARNING):
                    raise self._failed(assoc, f"C-GET of study {study_uid}", status)
                elif code != 0 and not received:
                    raise PacsError(f"{self.name} sent nothing for study {study_uid} (status 0x{code:04X})")
        if not received:
            raise PacsError(f"{self.name} has no instance of study {study_uid}")
        if progress is not None:
            progress(len(received), len(received))
        return received

    # ------------------------------------------------------------------ C-MOVE
    def move_study(
        self, study_uid: str, destination_ae: str, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """C-MOVE a study to ``destination_ae`` (a Storage SCP the PACS knows, e.g. our listener);
        returns how many instances the PACS says it sent."""
        _check_study(study_uid)
        destination = check_ae_title(destination_ae)
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        identifier = _identifier("STUDY", (), {"StudyInstanceUID": study_uid})
        completed = 0
        with self._association(ae) as assoc:
            for status, _ in assoc.send_c_move(identifier, destination, StudyRootQueryRetrieveInformationModelMove):
                code = _status(status)
                completed = int(getattr(status, "NumberOfCompletedSuboperations", completed) or completed)
                if code in _PENDING:
                    if progress is not None:
                        remaining = int(getattr(status, "NumberOfRemainingSuboperations", 0) or 0)
                        progress(completed, completed + remaining)
                elif code not in (0, *_WARNING):
                    raise self._failed(assoc, f"C-MOVE of study {study_uid} to {destination}", status)
        if completed == 0:
            raise PacsError(f"{self.name} moved nothing of study {study_uid} to {destination}")
        return completed

    # ------------------------------------------------------------------ C-STORE
    def store(self, items: Sequence[Dataset | str | Path]) -> list[str]:
        """C-STORE instances (datasets or files) over one association; returns their SOP Instance UIDs."""
        datasets = [dcmread(i) if isinstance(i, (str, Path)) else i for i in items]
        if not datasets:
            return []
        ae = self._ae()
        contexts: dict[str, set[str]] = {}
        for ds in datasets:
            ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ExplicitVRLittleEndian)
            contexts.setdefault(str(ds.SOPClassUID), set(_UNCOMPRESSED)).add(ts)
        for sop_class, syntaxes in contexts.items():
            ae.add_requested_context(sop_class, sorted(syntaxes))
        stored: list[str] = []
        with self._association(ae) as assoc:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                if _status(status) not in (0, *_WARNING):
                    raise self._failed(assoc, f"C-STORE of {ds.SOPInstanceUID}", status)
                stored.append(str(ds.SOPInstanceUID))
        return stored


def _check_study(study_uid: str) -> None:
    if not valid_uid(study_uid):
        raise PacsError(f"not a valid Study Instance UID: {study_uid[:80]!r}")


def _identifier(level: str, returned: Sequence[str], keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in returned:
        setattr(ds, keyword, "")
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds
