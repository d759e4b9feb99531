"""DICOMweb with dicomweb-client: QIDO-RS (studies, series, instances), WADO-RS (a study into the
local cache, instance by instance, with progress and cancel) and STOW-RS.

The URL is a DICOMweb root such as ``https://pacs.example.org/dicom-web``; credentials may be in
it (``http://user:pass@host:port/dicom-web``) or given apart; they go to HTTP basic auth and never
into a message. Failures become `PacsError`s that name the server: `PacsAuthError` (401/403),
`PacsConnectionError`, `PacsTimeoutError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from inference.pacs.cache import InstanceCache, valid_uid
from inference.pacs.errors import PacsAuthError, PacsCancelled, PacsConnectionError, PacsError, PacsTimeoutError
from inference.pacs.query import (
    INSTANCE_RETURN_KEYS,
    SERIES_RETURN_KEYS,
    STUDY_RETURN_KEYS,
    InstanceMatch,
    QueryFilters,
    SeriesMatch,
    StudyMatch,
)

__all__ = ["DicomWebServer", "split_credentials"]

#: Instances as stored (any transfer syntax): the runtime decodes the compressed ones itself.
_ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:pass@`` and the (user, password) it carried, if any."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError(f"not a DICOMweb URL (http:// or https://): {redact(url)!r}")
    if parts.username is None:
        return urlunsplit(parts), None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username), unquote(parts.password or ""))


def redact(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass
class DicomWebServer:
    """One DICOMweb server. ``verify`` checks TLS certificates (True, False or a CA bundle path)."""

    url: str
    user: str | None = None
    password: str | None = None
    timeout: float = 20.0
    verify: bool | str = True

    def __post_init__(self) -> None:
        self.url, creds = split_credentials(self.url)
        self.url = self.url.rstrip("/")
        if creds is not None and self.user is None:
            self.user, self.password = creds
        if isinstance(self.verify, str) and not Path(self.verify).is_file():
            raise PacsConnectionError(f"the CA file for {self.url} does not exist: {self.verify}")
        session = _Session()
        if self.user is not None:
            session.auth = (self.user, self.password or "")
        session.verify = self.verify
        self._client = DICOMwebClient(self.url, session=session, timeout=self.timeout)
        self._client.set_http_retry_params(retry=False)

    # ------------------------------------------------------------------ errors
    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise PacsAuthError(f"{self.url} refused the credentials while {what} (HTTP {status})") from None
            raise PacsError(f"{self.url} answered HTTP {status} while {what}") from None
        except requests.exceptions.Timeout:
            raise PacsTimeoutError(f"{self.url} did not answer within {self.timeout:g} s while {what}") from None
        except requests.exceptions.SSLError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                reason = "its certificate is not trusted; give the CA file that signed it"
            else:
                reason = "no TLS handshake; is it a plain http server?"
            raise PacsConnectionError(f"TLS error with {self.url} while {what}: {reason}") from None
        except requests.exceptions.ConnectionError as exc:
            if "Connection aborted" in str(exc) and self.url.startswith("http:"):
                raise PacsConnectionError(
                    f"{self.url} closed the connection while {what} (does it expect https?)"
                ) from None
            raise PacsConnectionError(f"cannot connect to {self.url} while {what} (refused or unreachable)") from None
        except requests.exceptions.RequestException as exc:
            raise PacsError(f"{self.url}: {type(exc).__name__} while {what}") from None
        except (ValueError, KeyError, TypeError) as exc:  # a malformed answer (JSON, multipart)
            raise PacsError(f"{self.url} sent an answer that cannot be read while {what} ({exc})") from None

    # ------------------------------------------------------------------ QIDO-RS
    @property
    def name(self) -> str:
        return self.url

    def echo(self) -> None:
        """Reach the server with a one-study query (raises what a query would)."""
        with self._errors("checking the connection"):
            self._client.search_for_studies(limit=1, fields=["StudyInstanceUID"])

    def query_studies(self, filters: QueryFilters | None = None, limit: int | None = None) -> list[StudyMatch]:
        """Studies matching ``filters`` (modality MG by default)."""
        keys = (filters or QueryFilters()).keys()  # a bad date raises ValueError here, not as the server's fault
        with self._errors("searching for studies"):
            found = self._client.search_for_studies(
                search_filters=dict(keys), fields=list(STUDY_RETURN_KEYS), limit=limit
            )
            return [StudyMatch.from_dataset(_dataset(item)) for item in found]

    def query_series(self, study_uid: str, modality: str = "") -> list[SeriesMatch]:
        """The series of a study (of one modality if given)."""
        filters = {"Modality": modality} if modality else {}
        with self._errors("searching for series"):
            found = self._client.search_for_series(
                study_instance_uid=study_uid, search_filters=filters, fields=list(SERIES_RETURN_KEYS)
            )
            return [SeriesMatch.from_dataset(_dataset(item), study_uid) for item in found]

    def query_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceMatch]:
        """The instances of a study (or of one of its series)."""
        with self._errors("searching for instances"):
            found = self._client.search_for_instances(
                study_instance_uid=study_uid, series_instance_uid=series_uid, fields=list(INSTANCE_RETURN_KEYS)
            )
            return [InstanceMatch.from_dataset(_dataset(item), study_uid, series_uid or "") for item in found]

    # ------------------------------------------------------------------ WADO-RS
    def retrieve_study(
        self,
        study_uid: str,
        cache: InstanceCache,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[Path]:
        """Every instance of a study into ``cache``; returns their paths. One streamed WADO-RS
        request for the study (one request per instance is several times slower on some servers),
        skipped when every instance is already cached. ``progress(done, total)`` after each
        instance; `PacsCancelled` when ``cancelled()`` turns true (the stream is closed)."""
        if not valid_uid(study_uid):
            raise PacsError(f"not a valid Study Instance UID: {study_uid[:80]!r}")
        expected = {i.sop_uid for i in self.query_instances(study_uid) if valid_uid(i.sop_uid)}
        if not expected:
            raise PacsError(f"{self.url} has no instance of study {study_uid}")
        total = len(expected)
        if progress is not None:
            progress(0, total)
        if all(cache.has(study_uid, uid) for uid in expected):
            if progress is not None:
                progress(total, total)
            return sorted(cache.path(study_uid, uid) for uid in expected)
        paths: list[Path] = []
        with self._errors(f"retrieving study {study_uid}"):
            stream = self._client.iter_study(study_uid, media_types=_ANY_TRANSFER_SYNTAX)
            try:
                for ds in stream:
                    if cancelled is not None and cancelled():
                        raise PacsCancelled(f"retrieve of study {study_uid} cancelled after {len(paths)} of {total}")
                    sop_uid = str(ds.get("SOPInstanceUID", ""))
                    if str(ds.get("StudyInstanceUID", "")) != study_uid or sop_uid not in expected:
                        raise PacsError(f"{self.url} sent instance {sop_uid[:64] or '?'}, not one of study {study_uid}")
                    paths.append(cache.path(study_uid, sop_uid) if cache.has(study_uid, sop_uid) else cache.write(ds))
                    if progress is not None:
                        progress(len(paths), total)
            finally:
                stream.close()  # type: ignore[attr-defined]
        return paths

    # ------------------------------------------------------------------ STOW-RS
    def store(self, datasets: Sequence[Dataset]) -> list[str]:
        """Send instances (STOW-RS); returns the SOP Instance UIDs the server accepted. An instance
        it refused raises `PacsError`. In-memory datasets get a preamble and file meta first
        (without them some servers store a file that cannot be read back)."""
        if not datasets:
            return []
        for ds in datasets:
            _ensure_file_format(ds)
        with self._errors("storing instances"):
            answer = self._client.store_instances(list(datasets))
        failed = answer.get("FailedSOPSequence", None) or []
        if failed:
            reasons = ", ".join(
                f"{f.get('ReferencedSOPInstanceUID', '?')} (reason {f.get('FailureReason', '?')})" for f in failed
            )
            raise PacsError(f"{self.url} refused {len(failed)} instance(s): {reasons}")
        stored = answer.get("ReferencedSOPSequence", None) or []
        return [str(item.ReferencedSOPInstanceUID) for item in stored]


class _Session(requests.Session):
    """A session whose CA file wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (requests lets the
    environment override ``Session.verify``, psf/requests#3829)."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and isinstance(self.verify, str):
            settings["verify"] = self.verify
        return settings


def _dataset(item: dict[str, Any]) -> Dataset:
    return Dataset.from_json(item)


def _ensure_file_format(ds: Dataset) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    if not getattr(ds, "preamble", None):
        ds.preamble = b"\x00" * 128
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    meta.setdefault("TransferSyntaxUID", ExplicitVRLittleEndian)
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.setdefault("ImplementationClassUID", PYDICOM_IMPLEMENTATION_UID)
