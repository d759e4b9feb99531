"""What a query asks and what it finds, the same for DICOMweb (QIDO-RS) and DIMSE (C-FIND).

`QueryFilters` turns a query form into DICOM matching keys; `StudyMatch`, `SeriesMatch` and
`InstanceMatch` read an answer (a pydicom Dataset, from C-FIND or from QIDO-RS JSON).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

__all__ = ["QueryFilters", "StudyMatch", "SeriesMatch", "InstanceMatch", "dicom_date_range"]

_DATE = re.compile(r"\d{8}")


def dicom_date_range(start: str = "", end: str = "") -> str:
    """A DICOM date range ("20240101-20241231", "20240101-", "-20241231", "") from two dates
    written YYYYMMDD or YYYY-MM-DD; ValueError for anything else."""
    parts = []
    for text in (start, end):
        value = text.strip().replace("-", "")
        if value and not _DATE.fullmatch(value):
            raise ValueError(f"not a date (YYYYMMDD or YYYY-MM-DD): {text!r}")
        parts.append(value)
    if not any(parts):
        return ""
    return parts[0] if parts[0] and parts[0] == parts[1] else f"{parts[0]}-{parts[1]}"


@dataclass(frozen=True)
class QueryFilters:
    """A study query. Empty fields match anything; patient name and ID accept * and ? wildcards."""

    patient_id: str = ""
    patient_name: str = ""
    date_from: str = ""  # YYYYMMDD or YYYY-MM-DD
    date_to: str = ""
    accession: str = ""
    modality: str = "MG"  # ModalitiesInStudy; "" for any
    study_uid: str = ""

    def keys(self) -> dict[str, str]:
        """The matching keys that are set (keyword -> value)."""
        keys = {
            "PatientID": self.patient_id.strip(),
            "PatientName": self.patient_name.strip(),
            "StudyDate": dicom_date_range(self.date_from, self.date_to),
            "AccessionNumber": self.accession.strip(),
            "ModalitiesInStudy": self.modality.strip().upper(),
            "StudyInstanceUID": self.study_uid.strip(),
        }
        return {k: v for k, v in keys.items() if v}


#: Attributes asked for in a study query (returned even when not used to match).
STUDY_RETURN_KEYS = (
    "StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)  # fmt: skip
SERIES_RETURN_KEYS = (
    "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances",
)  # fmt: skip
INSTANCE_RETURN_KEYS = ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "InstanceNumber")


def _str(ds: Dataset, keyword: str) -> str:
    value: Any = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    value: Any = ds.get(keyword, None)
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _multi(ds: Dataset, keyword: str) -> tuple[str, ...]:
    value: Any = ds.get(keyword, None)
    if value in (None, ""):
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(str(v).strip() for v in items if str(v).strip())


@dataclass(frozen=True)
class StudyMatch:
    """One study found by a query."""

    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    accession: str
    description: str
    modalities: tuple[str, ...]
    n_series: int | None
    n_instances: int | None

    @classmethod
    def from_dataset(cls, ds: Dataset) -> StudyMatch:
        return cls(
            study_uid=_str(ds, "StudyInstanceUID"),
            patient_id=_str(ds, "PatientID"),
            patient_name=_str(ds, "PatientName"),
            study_date=_str(ds, "StudyDate"),
            accession=_str(ds, "AccessionNumber"),
            description=_str(ds, "StudyDescription"),
            modalities=_multi(ds, "ModalitiesInStudy"),
            n_series=_int(ds, "NumberOfStudyRelatedSeries"),
            n_instances=_int(ds, "NumberOfStudyRelatedInstances"),
        )


@dataclass(frozen=True)
class SeriesMatch:
    """One series of a study."""

    study_uid: str
    series_uid: str
    modality: str
    number: int | None
    description: str
    n_instances: int | None

    @classmethod
    def from_dataset(cls, ds: Dataset, study_uid: str = "") -> SeriesMatch:
        return cls(
            study_uid=_str(ds, "StudyInstanceUID") or study_uid,
            series_uid=_str(ds, "SeriesInstanceUID"),
            modality=_str(ds, "Modality"),
            number=_int(ds, "SeriesNumber"),
            description=_str(ds, "SeriesDescription"),
            n_instances=_int(ds, "NumberOfSeriesRelatedInstances"),
        )


@dataclass(frozen=True)
class InstanceMatch:
    """One instance of a study."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str
    number: int | None

    @classmethod
    def from_dataset(cls, ds: Dataset, study_uid: str = "", series_uid: str = "") -> InstanceMatch:
        return cls(
            study_uid=_str(ds, "StudyInstanceUID") or study_uid,
            series_uid=_str(ds, "SeriesInstanceUID") or series_uid,
            sop_uid=_str(ds, "SOPInstanceUID"),
            sop_class=_str(ds, "SOPClassUID"),
            number=_int(ds, "InstanceNumber"),
        )
