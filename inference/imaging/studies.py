"""Find images in files and folders and group them into patients, studies and images.

``scan(paths)`` reads DICOM headers only, with :func:`inference.imaging.dicom.read_header` (pixels
are decoded later by :func:`inference.imaging.decode.load_image`), and also accepts PNG, PGM, JPEG and
TIFF files of research data sets. It never raises for one bad file: what cannot be used is listed as
a :class:`Problem` and the scan goes on.

Laterality comes from ImageLaterality / Laterality, else from free text (series description,
protocol, comments), else from the file name (source "filename": a research data set's convention,
:mod:`inference.imaging.naming`, or a side named in it), else from the DICOM PatientOrientation
convention; when all are silent it stays "" with source "unknown" and
:func:`inference.imaging.decode.resolve_laterality` decides from the pixels. The view comes from
ViewPosition / ViewCodeSequence, else from free text, else from the file name.

Studies are grouped by the DICOM UIDs; a file without them by an imported label manifest's patient
and study, else by its name's convention (one woman's four views named ``P66_L_DM_CC.jpg`` ... are
one study), else by its folder when the folder holds at most four such files, else it is a study of
its own (:func:`regroup` applies new manifest groups to a scanned set).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset

from inference.errors import ImageReadError, NotAnImageError, UnsupportedImageError
from inference.formats import image_key
from inference.imaging.dicom import DicomDirectory, read_header
from inference.imaging.limits import check_deflated
from inference.imaging.naming import laterality_in_text, parse_name, view_in_text

__all__ = [
    "ImageRecord",
    "Problem",
    "Study",
    "StudySet",
    "scan",
    "regroup",
    "read_record",
    "duplicate_reason",
    "laterality_in_text",
    "view_in_text",
    "IMAGE_SUFFIXES",
]

#: File name endings that mark a file as meant to be an image (a broken one is a Problem).
IMAGE_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm"})


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
    laterality_source: str  # "tag" | "text" | "filename" | "pixels" | "unknown"
    view: str  # "CC" | "MLO" | "ML" | "LM" | "XCCL" | ... | ""
    view_source: str  # "tag" | "text" | "filename" | "unknown"
    rows: int
    cols: int
    transfer_syntax: str  # DICOM transfer syntax UID, "" for other files
    photometric: str = ""  # DICOM PhotometricInterpretation (MONOCHROME1/2), "" for other files
    frames: int = 1
    study_source: str = "tag"  # what grouped it: "tag" (DICOM) | "manifest" | "filename" | "folder" | "file"

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
    """A file that could not be used: ``skipped`` is True for DICOM that holds no usable image, False for errors."""

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
    """Everything :func:`scan` found: the studies and the problems.

    ``duplicates``: image key -> the other files of that image (same SOP instance, or the same bytes),
    in scan order; each is also a skipped :class:`Problem` ("same SOP instance as ..."), so a reader
    that tries them when the first copy cannot be decoded still gives every file its line."""

    studies: tuple[Study, ...]
    problems: tuple[Problem, ...]
    duplicates: Mapping[str, tuple[ImageRecord, ...]] = field(default_factory=dict)

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


# --------------------------------------------------------------------------- laterality and view
# ViewCodeSequence code values (SNOMED-RT "R-..." and SNOMED CT) of DICOM CID 4014.
_VIEW_CODES = {
    "R-10242": "CC",
    "399162004": "CC",
    "R-10226": "MLO",
    "399368009": "MLO",
    "R-10224": "ML",
    "399260004": "ML",
    "R-10228": "LM",
    "399352003": "LM",
}
_TEXT_TAGS = ("SeriesDescription", "ProtocolName", "ImageComments", "AcquisitionDeviceProcessingDescription")


def _text(ds: Dataset | None, name: str) -> str:
    value = ds.get(name, "") if ds is not None else ""
    if value is None:
        return ""
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        return " ".join(str(v) for v in value)
    return str(value)


def _laterality(ds: Dataset | None, path: Path) -> tuple[str, str]:
    for name in ("ImageLaterality", "Laterality"):
        value = _text(ds, name).strip().upper()
        if value in ("L", "R"):
            return value, "tag"
    for name in _TEXT_TAGS:
        if side := laterality_in_text(_text(ds, name)):
            return side, "text"
    named = parse_name(path)
    if named is not None and named.laterality:
        return named.laterality, "filename"
    if side := laterality_in_text(path.stem):
        return side, "filename"
    # The MG IOD's PatientOrientation: CC images are stored lateral side up, so down the columns
    # of a right breast is toward the patient's left ("L"), of a left breast toward the right.
    orientation = ds.get("PatientOrientation") if ds is not None else None
    if orientation is not None and not isinstance(orientation, str) and len(orientation) == 2:
        col = str(orientation[1]).strip().upper()
        if col in ("L", "R"):
            return ("R" if col == "L" else "L"), "text"
    return "", "unknown"


def _view(ds: Dataset | None, path: Path) -> tuple[str, str]:
    if ds is not None:
        position = _text(ds, "ViewPosition").strip().upper()
        if position and (view := view_in_text(position)):
            return view, "tag"
        for item in ds.get("ViewCodeSequence", None) or ():
            code = str(item.get("CodeValue", "")).strip()
            if code in _VIEW_CODES:
                return _VIEW_CODES[code], "tag"
            if view := view_in_text(str(item.get("CodeMeaning", ""))):
                return view, "tag"
        for name in _TEXT_TAGS:
            if view := view_in_text(_text(ds, name)):
                return view, "text"
    named = parse_name(path)
    if named is not None and named.view:
        return named.view, "filename"
    if view := view_in_text(path.stem):
        return view, "filename"
    return "", "unknown"


# --------------------------------------------------------------------------- reading one file
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"P5", "pgm"),
    (b"P2", "pgm"),
)


class _Ignored(Exception):
    """A file in a scanned folder that is not meant to be an image (silently left out)."""


def _kind_of(head: bytes) -> str:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    for magic, kind in _MAGIC:
        if head.startswith(magic) and (kind != "pgm" or head[2:3].isspace()):
            return kind
    # DICOM without the 128-byte preamble (old files): starts with a group 0002 or 0008 element
    # (little-endian, or big-endian: Explicit VR Big Endian without a file meta header).
    if head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08") and len(head) >= 8:
        return "dicom-raw"
    return ""


def _person(value: Any) -> str:
    """PatientName "DOE^JANE" as "DOE, JANE"."""
    parts = [p.strip() for p in str(value or "").split("^")[:2]]
    return ", ".join(p for p in parts if p)


def _dicom_record(path: Path, raw: bool, size: int) -> ImageRecord:
    if not raw:
        check_deflated(path)  # a deflate bomb would inflate whole in the header read below
    try:
        header = read_header(path, raw, size)
    except DicomDirectory as exc:
        raise _Ignored from exc
    ds = header.dataset
    sop_uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    laterality, lat_source = _laterality(ds, path)
    view, view_source = _view(ds, path)
    return ImageRecord(
        key=image_key(path, sop_uid),
        path=path,
        kind="dicom",
        patient_id=str(ds.get("PatientID", "") or "").strip(),
        patient_name=_person(ds.get("PatientName", "")),
        study_uid=str(ds.get("StudyInstanceUID", "") or "").strip(),
        study_date=str(ds.get("StudyDate", "") or "").strip(),
        study_description=str(ds.get("StudyDescription", "") or "").strip(),
        series_uid=str(ds.get("SeriesInstanceUID", "") or "").strip(),
        sop_uid=sop_uid,
        laterality=laterality,
        laterality_source=lat_source,
        view=view,
        view_source=view_source,
        rows=header.rows,
        cols=header.cols,
        transfer_syntax=str(header.transfer_syntax),
        photometric=header.photometric,
        frames=header.frames,
    )


_COMMENTS = rb"\s+(?:#[^\n]*\n\s*)*"
_PGM_HEADER = re.compile(rb"P5" + _COMMENTS + rb"(\d+)" + _COMMENTS + rb"(\d+)" + _COMMENTS + rb"(\d+)\s")


def _check_tail(path: Path, kind: str, data: bytes) -> None:
    """Cheap checks that a PNG, JPEG or binary PGM is complete (Pillow would only fail when decoding)."""
    if kind == "png" and not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"):
        raise ImageReadError("truncated PNG: no IEND chunk at the end", path)
    if kind == "jpeg" and b"\xff\xd9" not in data[-4096:]:
        raise ImageReadError("truncated JPEG: no end-of-image marker", path)
    if kind == "pgm" and data[:2] == b"P5":
        fields = _PGM_HEADER.match(data[:512])
        if fields:
            w, h, top = (int(v) for v in fields.groups())
            expected = w * h * (1 if top < 256 else 2)
            found = len(data) - fields.end()
            if found < expected:
                raise ImageReadError(f"truncated PGM: expected {expected} bytes of pixels, found {found}", path)


def _picture_record(path: Path, kind: str) -> ImageRecord:
    data = path.read_bytes()
    try:
        with Image.open(path) as img:
            cols, rows = img.size
            frames = int(getattr(img, "n_frames", 1) or 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"unreadable {kind.upper()} ({exc})", path) from exc
    _check_tail(path, kind, data)
    if frames != 1:
        raise UnsupportedImageError(f"{kind.upper()} with {frames} pages: only single 2-D images are supported", path)
    laterality, lat_source = _laterality(None, path)
    view, view_source = _view(None, path)
    key = "sha256:" + hashlib.sha256(data).hexdigest()
    return ImageRecord(
        key=key,
        path=path,
        kind=kind,
        patient_id="",
        patient_name="",
        study_uid="",
        study_date="",
        study_description="",
        series_uid="",
        sop_uid="",
        laterality=laterality,
        laterality_source=lat_source,
        view=view,
        view_source=view_source,
        rows=rows,
        cols=cols,
        transfer_syntax="",
        photometric="",
        frames=frames,
    )


def _index(path: Path, explicit: bool) -> ImageRecord:
    """One file's record; raises ImageReadError (subclasses) for bad files, _Ignored for non-images in folders."""
    meant = explicit or path.suffix.lower() in IMAGE_SUFFIXES
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as exc:
        if not meant:
            raise _Ignored from exc
        raise ImageReadError(f"cannot read the file ({exc.strerror or exc})", path) from exc
    if size == 0:
        if not meant:
            raise _Ignored
        raise ImageReadError("empty file (0 bytes)", path)
    kind = _kind_of(head)
    if kind in ("dicom", "dicom-raw"):
        return _dicom_record(path, kind == "dicom-raw", size)
    if kind:
        try:
            return _picture_record(path, kind)
        except OSError as exc:
            raise ImageReadError(f"cannot read the file ({exc.strerror or exc})", path) from exc
    if not meant:
        raise _Ignored
    raise ImageReadError(
        f"not a DICOM, PNG, JPEG, TIFF or PGM file (unrecognised content in {size} bytes)", path
    )


def read_record(path: str | Path) -> ImageRecord:
    """Index one file named by the user; raises errors.ImageReadError (or a subclass) naming it."""
    path = Path(path)
    if path.is_dir():
        raise ImageReadError("is a folder, not an image file", path)
    try:
        return _index(path, explicit=True)
    except _Ignored as exc:  # DICOMDIR
        raise NotAnImageError("DICOM directory (DICOMDIR): not an image", path) from exc


# --------------------------------------------------------------------------- scanning
def _files(paths: Iterable[str | Path], problems: list[Problem]) -> list[tuple[Path, bool]]:
    out: list[tuple[Path, bool]] = []
    seen: set[Path] = set()

    def add(p: Path, explicit: bool) -> None:
        real = Path(os.path.realpath(p))
        if real not in seen:
            seen.add(real)
            out.append((p, explicit))

    def unlisted(error: OSError) -> None:
        problems.append(Problem(Path(error.filename or "."), f"cannot list the folder ({error.strerror})", False))

    for given in paths:
        p = Path(given).expanduser()
        if p.is_dir():
            found: list[Path] = []
            for root, dirs, names in os.walk(p, onerror=unlisted):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(Path(root) / n for n in names if not n.startswith("."))
            for f in sorted(found):
                add(f, False)
        elif p.exists():
            add(p, True)
        else:
            problems.append(Problem(p, "no such file or folder", False))
    return out


_HANGING = {("R", "CC"): 0, ("L", "CC"): 1, ("R", "MLO"): 2, ("L", "MLO"): 3}


_SIDE_ORDER = {"R": "0", "L": "1"}  # right before left, as hung


def _hanging_key(r: ImageRecord) -> tuple[int, str, str, str, str]:
    side = _SIDE_ORDER.get(r.laterality, "2")
    return (_HANGING.get((r.laterality, r.view), 4), r.model_view or "~", r.view, side, str(r.path))


# --------------------------------------------------------------------------- grouping without UIDs
Groups = Mapping[str, tuple[str, str]]  # image key or path -> (patient, study), e.g. from a label manifest


def _group_of(record: ImageRecord, groups: Groups | None) -> tuple[str, str] | None:
    if not groups:
        return None
    for k in (record.key, str(record.path), record.path.as_posix(), os.path.realpath(record.path)):
        group = groups.get(k)
        if group is not None and any(str(v).strip() for v in group):
            return group
    return None


#: A folder of at most this many files that nothing else groups is one study (an exam's four views);
#: a larger one is a collection (a data set's folder), whose files are studies of their own.
FOLDER_STUDY_MAX = 4


def _assign_study(record: ImageRecord, groups: Groups | None) -> ImageRecord:
    """A file without a StudyInstanceUID grouped by the first rule that applies: ``groups`` (an
    imported label manifest's patient and study), a research data set's file-name convention
    (:mod:`inference.imaging.naming`), the DICOM PatientID; else unchanged (see :func:`_assign_studies`)."""
    if record.study_uid:
        return record
    group = _group_of(record, groups)
    if group is not None:
        patient, study = (str(v).strip() for v in group)
        patient = patient or record.patient_id
        study = study or f"patient:{patient}"
        return replace(
            record, patient_id=patient, study_uid=study, study_description=study, study_source="manifest"
        )
    named = parse_name(record.path)
    if named is not None and named.patient and not record.patient_id:
        return replace(
            record,
            patient_id=named.patient,
            study_uid=f"patient:{named.patient}",
            study_description=f"{named.patient} (grouped by file name)",
            study_source="filename",
        )
    if record.patient_id:
        return replace(record, study_uid=f"patient:{record.patient_id}", study_source="tag")
    return record


def _assign_studies(records: Iterable[ImageRecord], groups: Groups | None) -> list[ImageRecord]:
    """:func:`_assign_study` for each record; the files left over form one study per folder when the
    folder holds at most :data:`FOLDER_STUDY_MAX` of them, else one study each."""
    out = [_assign_study(r, groups) for r in records]
    left: dict[Path, int] = {}
    for r in out:
        if not r.study_uid:
            left[r.path.parent] = left.get(r.path.parent, 0) + 1
    for i, r in enumerate(out):
        if r.study_uid:
            continue
        folder = r.path.parent
        if left[folder] <= FOLDER_STUDY_MAX:
            study = f"folder:{folder}"
            out[i] = replace(r, study_uid=study, study_description=f"folder {folder.name}", study_source="folder")
        else:
            out[i] = replace(r, study_uid=f"file:{r.key}", study_description=r.path.name, study_source="file")
    return out


def _ungrouped(record: ImageRecord) -> ImageRecord:
    """The record as read from its file, before :func:`_assign_study` (DICOM UIDs stay)."""
    if record.study_source == "tag":
        return record
    patient = record.patient_id if record.kind == "dicom" and record.study_source != "manifest" else ""
    return replace(record, patient_id=patient, study_uid="", study_description="", study_source="tag")


def regroup(study_set: StudySet, groups: Groups) -> StudySet:
    """The same images grouped again with ``groups`` (e.g. after a label manifest was imported):
    files with DICOM UIDs keep their studies; the problems stay."""
    records = _assign_studies([_ungrouped(r) for r in study_set.images], groups)
    return StudySet(studies=_group(records), problems=study_set.problems, duplicates=study_set.duplicates)


def scan(
    paths: Iterable[str | Path],
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    groups: Groups | None = None,
) -> StudySet:
    """Index files and folders (recursively) into patients, studies and images.

    In folders, files that are not images (by name and content) are left out silently; a broken
    file named like an image, or any file named explicitly, becomes a :class:`Problem`. Files without
    DICOM UIDs are grouped by ``groups`` (image key or path -> (patient, study), from a label
    manifest), else by their names' convention, else by folder (:func:`_assign_studies`).
    ``progress(done, total)`` is called per file; when ``cancelled()`` turns true the scan stops and
    returns what it found so far.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    problems: list[Problem] = []
    files = _files(paths, problems)
    total = len(files)
    if progress is not None:
        progress(0, total)
    records: list[ImageRecord] = []
    by_key: dict[str, Path] = {}
    duplicates: dict[str, list[ImageRecord]] = {}
    for done, (path, explicit) in enumerate(files, start=1):
        if cancelled is not None and cancelled():
            break
        try:
            record = _index(path, explicit)
        except _Ignored:
            record = None
        except (NotAnImageError, UnsupportedImageError) as exc:
            problems.append(Problem(path, exc.reason, True))
            record = None
        except ImageReadError as exc:
            problems.append(Problem(path, exc.reason, False))
            record = None
        except Exception as exc:  # a bug in one file's reader must not end the scan
            problems.append(Problem(path, f"cannot index the file ({type(exc).__name__}: {exc})", False))
            record = None
        if record is not None:
            if record.key in by_key:
                problems.append(Problem(path, duplicate_reason(record, by_key[record.key]), True))
                duplicates.setdefault(record.key, []).append(record)
            else:
                by_key[record.key] = path
                records.append(record)
        if progress is not None:
            progress(done, total)
    copies = {key: tuple(found) for key, found in duplicates.items()}
    studies = _group(_assign_studies(records, groups))
    return StudySet(studies=studies, problems=tuple(problems), duplicates=copies)


def duplicate_reason(record: ImageRecord, other: Path) -> str:
    """What a file's line says when another file holds the same image."""
    same = "SOP instance" if record.sop_uid else "image (identical bytes)"
    return f"same {same} as {other}"


def _group(records: list[ImageRecord]) -> tuple[Study, ...]:
    studies: dict[tuple[str, str], list[ImageRecord]] = {}
    for r in records:
        studies.setdefault((r.patient_id, r.study_uid), []).append(r)
    out = []
    for (patient, uid), images in studies.items():
        images.sort(key=_hanging_key)
        date = next((r.study_date for r in images if r.study_date), "")
        description = next((r.study_description for r in images if r.study_description), "")
        out.append(Study(patient_id=patient, study_uid=uid, date=date, description=description, images=tuple(images)))
    out.sort(key=lambda s: (_natural(s.patient_id), s.date, _natural(min(str(r.path) for r in s.images))))
    return tuple(out)


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders the numbers inside names by value: P2 before P10, as a person reads them."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part)
