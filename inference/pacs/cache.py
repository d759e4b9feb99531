"""Instances retrieved from a PACS, on disk: ``<root>/<StudyInstanceUID>/<SOPInstanceUID>.dcm``.

A study's folder is what the normal path reads (`inference.imaging.studies.scan`). Every file is
written whole (a temporary name, then renamed) as a DICOM Part 10 file with its preamble and file
meta, so a half-received instance never shows up. UIDs come from the network: anything but digits
and dots is refused before it becomes a path.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from inference.pacs.errors import PacsError

__all__ = ["InstanceCache", "default_cache_dir", "valid_uid"]

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def valid_uid(uid: str) -> bool:
    """True for a well-formed DICOM UID (digits and dots, at most 64 characters)."""
    return len(uid) <= 64 and _UID.fullmatch(uid) is not None


def default_cache_dir() -> Path:
    """The user's cache folder for retrieved instances (``$XDG_CACHE_HOME/mammo-review/pacs`` or
    the platform's equivalent)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mammo-review" / "pacs"


class InstanceCache:
    """Retrieved instances keyed by SOPInstanceUID, one folder per study."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def study_folder(self, study_uid: str) -> Path:
        if not valid_uid(study_uid):
            raise PacsError(f"not a valid Study Instance UID: {study_uid[:80]!r}")
        return self.root / study_uid

    def path(self, study_uid: str, sop_uid: str) -> Path:
        if not valid_uid(sop_uid):
            raise PacsError(f"not a valid SOP Instance UID: {sop_uid[:80]!r}")
        return self.study_folder(study_uid) / f"{sop_uid}.dcm"

    def has(self, study_uid: str, sop_uid: str) -> bool:
        return self.path(study_uid, sop_uid).is_file()

    def instances(self, study_uid: str) -> list[Path]:
        """The cached files of a study (sorted by name)."""
        folder = self.study_folder(study_uid)
        return sorted(folder.glob("*.dcm")) if folder.is_dir() else []

    def write(self, ds: Dataset) -> Path:
        """Store an instance (received over DICOMweb or DIMSE) and return its path."""
        study_uid = str(ds.get("StudyInstanceUID", "") or "")
        sop_uid = str(ds.get("SOPInstanceUID", "") or "")
        target = self.path(study_uid, sop_uid)
        meta = getattr(ds, "file_meta", None)
        if meta is None:
            meta = ds.file_meta = FileMetaDataset()
        if "TransferSyntaxUID" not in meta:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = sop_uid
        if "ImplementationClassUID" not in meta:
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".part-", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as fp:
                    dcmwrite(fp, ds, enforce_file_format=True)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise PacsError(f"cannot write to the PACS cache ({exc.strerror or exc})", target) from exc
        return target
