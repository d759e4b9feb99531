"""Find images in files and folders and group them into patients, studies and images.

``scan(paths)`` reads DICOM headers only (pixels are decoded later by :func:`inference.images.load_image`)
and also accepts PNG, PGM, JPEG and TIFF files of research data sets. It never raises for one bad
file: what cannot be used is listed as a :class:`Problem` and the scan goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ImageRecord",
    "Problem",
    "Study",
    "StudySet",
    "scan",
]


@dataclass(frozen=True)
class ImageRecord:
    """One image found by :func:`scan`: where it is, whose it is, which breast and view."""

    key: str
    path: Path
    kind: str  # "dicom" | "png" | "jpeg" | "tiff" | "pgm"
    patient_id: str
    patient_name: str
    study_uid: str
    study_date: str
    study_description: str
    series_uid: str
    sop_uid: str
    laterality: str  # "L" | "R" | ""
    laterality_source: str  # "tag" | "text" | "pixels" | "unknown"
    view: str  # "CC" | "MLO" | "ML" | "LM" | "XCCL" | ... | ""
    view_source: str  # "tag" | "text" | "unknown"
    rows: int
    cols: int
    transfer_syntax: str  # DICOM transfer syntax UID, "" for other files
    photometric: str = ""  # DICOM PhotometricInterpretation (MONOCHROME1/2, RGB, ...), "" for other files
    frames: int = 1

    @property
    def model_view(self) -> str:
        """The view as the model knows it: "CC" (ML, LM, XCCL count as CC), "MLO", or ""."""
        return _MODEL_VIEW.get(self.view, "")

    @property
    def label(self) -> str:
        """A short human label such as "R-CC" (or the file name when nothing is known)."""
        if self.laterality or self.view:
            return f"{self.laterality or '?'}-{self.view or '?'}"
        return self.path.name


_MODEL_VIEW = {
    "CC": "CC",
    "XCCL": "CC",
    "XCCM": "CC",
    "FB": "CC",
    "ML": "CC",
    "LM": "CC",
    "MLO": "MLO",
    "LMO": "MLO",
    "SIO": "MLO",
}


@dataclass(frozen=True)
class Problem:
    """A file that could not be used: ``skipped`` is True for DICOM that holds no image, False for errors."""

    path: Path
    reason: str
    skipped: bool

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Study:
    """The images of one study of one patient, in hanging order (R-CC, L-CC, R-MLO, L-MLO, rest)."""

    patient_id: str
    study_uid: str
    date: str
    description: str
    images: tuple[ImageRecord, ...]


@dataclass(frozen=True)
class StudySet:
    """Everything :func:`scan` found: the studies and the problems."""

    studies: tuple[Study, ...]
    problems: tuple[Problem, ...]

    @property
    def images(self) -> tuple[ImageRecord, ...]:
        """Every image of every study, study by study in hanging order."""
        return tuple(r for s in self.studies for r in s.images)

    def by_key(self, key: str) -> ImageRecord:
        """The image with this key; KeyError when there is none."""
        for r in self.images:
            if r.key == key:
                return r
        raise KeyError(key)


def scan(
    paths: Iterable[str | Path],
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    groups: Mapping[str, tuple[str, str]] | None = None,
) -> StudySet:
    """Index files and folders (recursively) into studies; see the module docstring."""
    raise NotImplementedError  # pragma: no cover - being written
