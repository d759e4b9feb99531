"""Export labels for training (de-identified by default) and import labels from other stores.

:func:`export_labels` writes a folder that ``python -m training finetune --manifest`` reads as is::

    manifest.csv / manifest.json   one row per image: combined label + uncertainty per task
    annotations.csv                every annotator's current label (key, annotator, task, value, ...)
    images/                        the image files the manifest names (paths relative to the folder)
    README.txt                     what the folder is and what de-identification did (and did not) do
    original_paths.csv             only with ``identified=True``: key -> original file

De-identified (the default): DICOM files are rewritten following the Basic Application Level
Confidentiality Profile of DICOM PS3.15 Annex E (:data:`DEID_ACTIONS`) with the Clean Descriptors
and Retain Longitudinal Temporal Information with Modified Dates options: identifying attributes
removed or emptied, dates shifted by a per-patient number of days, private tags, overlays and
curves removed, UIDs replaced consistently (``generate_uid(entropy_srcs=[secret, uid])`` under
pydicom's root: the same UID always gets the same new one), ``PatientIdentityRemoved=YES``. The pixels are copied unchanged, so text burned into them
(markers, labels on digitised film) may remain: README.txt says so. PNG, TIFF and PGM are
re-encoded as PNG without text chunks; JPEG keeps its compressed data and loses its APP1..APP15
and comment segments (EXIF, XMP, IPTC). Keys are pseudonyms: a DICOM's new SOPInstanceUID, else
``sha256:`` of the exported file, so the manifest's key is the exported file's image key; the
patient and study columns are keyed hashes (HMAC-SHA-256 with the store's secret). Everything is
derived from the store's secret, so re-exports give the same names. A DICOM that already says
``PatientIdentityRemoved=YES`` keeps its UIDs, so labels of an exported image, exported again from
another machine, come back under the same key.

With ``identified=True`` nothing is copied: the manifest names the original files (relative to the
folder where possible) and original_paths.csv maps keys to them, for training on the same machine.

:func:`import_labels` adds an export's annotations.csv to a store (source ``"import"``, the
exporter's annotator names kept), idempotently; :func:`import_manifest` pre-fills a store with a
label manifest's labels as suggestions (source ``"manifest"``).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.dataelem import DataElement
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID_dictionary, generate_uid

from inference.errors import FormatError
from inference.formats import TASKS, LabelRow, TaskLabel, read_label_manifest, write_label_manifest
from inference.labels.store import LabelRecord, LabelStore, combine, utc_now

__all__ = [
    "DEID_ACTIONS",
    "ImageLike",
    "ExportProblem",
    "ExportResult",
    "ImportResult",
    "export_labels",
    "import_labels",
    "import_manifest",
    "deidentify_dataset",
    "ANNOTATION_COLUMNS",
]

# --------------------------------------------------------------------------- de-identification
#: PS3.15 Annex E, Table E.1-1, Basic Profile (with the Clean Descriptors "C" and Modified Dates
#: "M" options): attribute keyword -> action. X remove, Z empty, D dummy (the pseudonym),
#: U new UID (consistent), M shift the date, C keep only safe laterality/view words, K keep.
#:
#: | attribute                                  | action |
#: |--------------------------------------------|--------|
DEID_ACTIONS: dict[str, str] = {
    "PatientName": "D",  # the patient pseudonym
    "PatientID": "D",  # the patient pseudonym (studies still group by patient)
    "PatientBirthDate": "Z",
    "PatientBirthTime": "X",
    "PatientBirthName": "X",
    "PatientMotherBirthName": "X",
    "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X",
    "IssuerOfPatientID": "X",
    "PatientAddress": "X",
    "PatientTelephoneNumbers": "X",
    "PatientAge": "X",
    "PatientSex": "Z",
    "PatientSize": "X",
    "PatientWeight": "X",
    "PatientComments": "X",
    "PatientReligiousPreference": "X",
    "PatientState": "X",
    "PatientInsurancePlanCodeSequence": "X",
    "PregnancyStatus": "X",
    "SmokingStatus": "X",
    "MedicalAlerts": "X",
    "Allergies": "X",
    "AdditionalPatientHistory": "X",
    "EthnicGroup": "X",
    "Occupation": "X",
    "MilitaryRank": "X",
    "BranchOfService": "X",
    "CountryOfResidence": "X",
    "MedicalRecordLocator": "X",
    "ResponsiblePerson": "X",
    "ResponsibleOrganization": "X",
    "CurrentPatientLocation": "X",
    "AccessionNumber": "Z",
    "StudyID": "Z",
    "AdmissionID": "X",
    "AdmittingDate": "X",
    "AdmittingDiagnosesDescription": "X",
    "ServiceEpisodeID": "X",
    "VisitComments": "X",
    "ReasonForStudy": "X",
    "RequestingService": "X",
    "InstitutionName": "X",
    "InstitutionAddress": "X",
    "InstitutionCodeSequence": "X",
    "InstitutionalDepartmentName": "X",
    "StationName": "X",
    "StationAETitle": "X",
    "ReferringPhysicianName": "Z",
    "ConsultingPhysicianName": "X",
    "PerformingPhysicianName": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansOfRecord": "X",
    "RequestingPhysician": "X",
    "OperatorsName": "X",
    "ContentCreatorName": "Z",
    "VerifyingObserverName": "X",
    "PersonName": "X",
    "OrderEnteredBy": "X",
    "OrderCallbackPhoneNumber": "X",
    "DeviceSerialNumber": "X",
    "DetectorID": "X",
    "GantryID": "X",
    "PlateID": "X",
    "CassetteID": "X",
    "AcquisitionComments": "X",
    "ImageComments": "X",
    "DerivationDescription": "X",
    "TextValue": "X",
    "ContentSequence": "X",
    "RequestAttributesSequence": "X",
    "RequestedProcedureDescription": "X",
    "RequestedProcedureID": "X",
    "ScheduledProcedureStepDescription": "X",
    "ScheduledProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepID": "X",
    "PerformedLocation": "X",
    "CommentsOnThePerformedProcedureStep": "X",
    "PlacerOrderNumberImagingServiceRequest": "Z",
    "FillerOrderNumberImagingServiceRequest": "Z",
    "ReferencedPatientSequence": "X",
    "ReferencedStudySequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X",
    "TimezoneOffsetFromUTC": "X",
    "StudyDescription": "C",
    "SeriesDescription": "C",
    "ProtocolName": "C",
    "AcquisitionDeviceProcessingDescription": "C",
    "StudyDate": "M",
    "SeriesDate": "M",
    "AcquisitionDate": "M",
    "ContentDate": "M",
    "AcquisitionDateTime": "M",
    "InstanceCreationDate": "M",
    "PerformedProcedureStepStartDate": "M",
    "DateOfLastCalibration": "M",
    "DateOfSecondaryCapture": "M",
    "StudyInstanceUID": "U",
    "SeriesInstanceUID": "U",
    "SOPInstanceUID": "U",
    "FrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U",
    "IrradiationEventUID": "U",
    "InstanceCreatorUID": "U",
    "StorageMediaFileSetUID": "U",
    "ReferencedSOPInstanceUID": "U",
    "BurnedInAnnotation": "K",  # kept as the modality wrote it: we do not clean pixels
}
_TAG_ACTIONS = {int(tag_for_keyword(k)): a for k, a in DEID_ACTIONS.items()}  # type: ignore[arg-type]
#: Words a descriptor may hold and stay (Clean Descriptors option): laterality, view, exam type.
_SAFE_WORDS = frozenset(
    "L R LEFT RIGHT B BILATERAL CC MLO ML LM XCCL XCCM FB SIO LMO AT ID SPOT MAG MAGNIFICATION CV RL RM "
    "SCREENING DIAGNOSTIC MAMMOGRAPHY MAMMOGRAM MAMMO MG BREAST DIGITAL TOMO TOMOSYNTHESIS VIEW VIEWS "
    "CESM CONTRAST ENHANCED LOW HIGH ENERGY RECOMBINED SUBTRACTED STANDARD".split()
)
#: DeidentificationMethod (LO, several values of at most 64 characters).
_METHOD = [
    "mammo-review PS3.15 Basic Application Confidentiality Profile",
    "Clean Descriptors Option",
    "Retain Longitudinal Temporal Information Modified Dates Option",
    "private tags, overlays and curves removed",
    "pixel data unchanged",
]
_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113105", "Clean Descriptors Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)


def _keyed(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def _pseudo_patient(secret: bytes, patient_id: str) -> str:
    return "" if not patient_id else "P-" + _keyed(secret, "patient", patient_id)[:16]


def _pseudo_study(secret: bytes, study_uid: str) -> str:
    return "" if not study_uid else "S-" + _keyed(secret, "study", study_uid)[:16]


def _date_shift(secret: bytes, patient_id: str) -> int:
    """Days to add to every date of a patient: -365 .. -3999, fixed per (secret, patient)."""
    return -(365 + int(_keyed(secret, "date-shift", patient_id)[:8], 16) % 3635)


def _shift(value: str, days: int) -> str | None:
    """Shift a DA (YYYYMMDD) or the date part of a DT; None when it cannot be parsed."""
    text = str(value).strip()
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(.*)", text)
    if not m:
        return None
    try:
        d = date(int(m[1]), int(m[2]), int(m[3])) + timedelta(days=days)
    except ValueError:
        return None
    rest = re.sub(r"[+-]\d{4}$", "", m[4])  # drop the time zone offset
    return d.strftime("%Y%m%d") + rest


def _clean_descriptor(value: str) -> str | None:
    words = re.split(r"[\s_\-/,.()^]+", str(value).upper())
    return str(value) if all(w in _SAFE_WORDS or w.isdigit() or not w for w in words) else None


def deidentify_dataset(ds: Dataset, secret: bytes) -> Dataset:
    """De-identify ``ds`` in place (see :data:`DEID_ACTIONS`) and return it.

    Sequences are walked; any person name, date or UID left after the table is still removed,
    shifted or replaced. A dataset already marked ``PatientIdentityRemoved=YES`` keeps its UIDs.
    """
    already = str(ds.get("PatientIdentityRemoved", "")).upper() == "YES"
    patient = _pseudo_patient(secret, str(ds.get("PatientID", "")))
    days = _date_shift(secret, str(ds.get("PatientID", "")))
    ds.remove_private_tags()

    def new_uid(uid: str) -> str:
        if already or not uid or uid in UID_dictionary:
            return uid
        # pydicom ignores entropy_srcs when prefix=None (a random 2.25 UID): keep its root prefix
        return str(generate_uid(entropy_srcs=[secret.hex(), uid]))

    def visit(dataset: Dataset, elem: DataElement) -> None:
        group = elem.tag.group
        if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:  # curves, overlays
            del dataset[elem.tag]
            return
        action = _TAG_ACTIONS.get(int(elem.tag))
        if action is None:  # not in the table: person names go, dates shift, UIDs change
            action = {"PN": "X", "DA": "M", "DT": "M", "UI": "U"}.get(elem.VR, "K")
        if action == "X":
            del dataset[elem.tag]
        elif action == "Z":
            elem.value = None if elem.VR != "SQ" else DicomSequence([])
        elif action == "D":
            elem.value = patient or "ANONYMOUS"
        elif action == "C":
            if elem.VM == 0:
                return
            cleaned = _clean_descriptor(str(elem.value))
            if cleaned is None:
                del dataset[elem.tag]
        elif action == "M":
            if elem.VM == 0:
                return
            shifted = _shift(str(elem.value), days) if elem.VM == 1 else None
            if shifted is None:
                del dataset[elem.tag]
            else:
                elem.value = shifted
        elif action == "U" and elem.VM:
            if elem.VM == 1:
                elem.value = new_uid(str(elem.value))
            else:
                elem.value = [new_uid(str(v)) for v in elem.value]

    ds.walk(visit)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for kw in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle"):
            if kw in meta:
                delattr(meta, kw)
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        if "ImplementationVersionName" in meta:
            del meta.ImplementationVersionName
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = _METHOD
    codes = []
    for value, meaning in _METHOD_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = DicomSequence(codes)
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.preamble = b"\0" * 128
    return ds


# --------------------------------------------------------------------------- image copies
def _strip_jpeg(data: bytes) -> bytes:
    """The JPEG without APP1..APP15 and COM segments (EXIF, XMP, IPTC, comments); pixels untouched."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file")
    out, i = bytearray(b"\xff\xd8"), 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError("broken JPEG marker structure")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            out += data[i:]
            return bytes(out)
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        segment = data[i : i + 2 + length]
        if not (0xE1 <= marker <= 0xEF or marker == 0xFE):
            out += segment
        i += 2 + length
    raise ValueError("JPEG without image data")


def _reencode_png(path: Path) -> bytes:
    with Image.open(path) as im:
        im.load()
        clean = Image.new(im.mode, im.size)
        clean.frombytes(im.tobytes())
        if im.mode == "P":
            clean.putpalette(im.getpalette() or [])
    buf = io.BytesIO()
    clean.save(buf, "PNG", optimize=False)
    return buf.getvalue()


class ImageLike(Protocol):
    """What export needs of an image (:class:`inference.imaging.studies.ImageRecord` has it)."""

    @property
    def key(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def kind(self) -> str: ...
    @property
    def patient_id(self) -> str: ...
    @property
    def study_uid(self) -> str: ...
    @property
    def laterality(self) -> str: ...


@dataclass(frozen=True)
class ExportProblem:
    key: str
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    manifest: Path
    rows: int
    annotations: int
    identified: bool
    problems: tuple[ExportProblem, ...]


@dataclass(frozen=True)
class ImportResult:
    added: int
    skipped: int
    source: Path


ANNOTATION_COLUMNS: tuple[str, ...] = (
    "key", "annotator", "task", "value", "confidence", "status", "source", "model_version", "time",
)


def _copy_deidentified(record: ImageLike, images: Path, secret: bytes) -> tuple[str, str]:
    """Write the de-identified copy of one image; returns (pseudonymous key, relative path)."""
    if record.kind == "dicom":
        ds = dcmread(record.path, force=False)
        deidentify_dataset(ds, secret)
        key = str(ds.get("SOPInstanceUID", "")).strip()
        if not key:
            buf = io.BytesIO()
            dcmwrite(buf, ds, enforce_file_format=True)
            key = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
        name = re.sub(r"[^0-9A-Za-z.]", "_", key.removeprefix("sha256:")[:64]) + ".dcm"
        dcmwrite(images / name, ds, enforce_file_format=True)
        return key, f"images/{name}"
    if record.kind == "jpeg":
        data, suffix = _strip_jpeg(Path(record.path).read_bytes()), ".jpg"
    else:
        data, suffix = _reencode_png(Path(record.path)), ".png"
    digest = hashlib.sha256(data).hexdigest()
    name = digest[:32] + suffix
    (images / name).write_bytes(data)
    return "sha256:" + digest, f"images/{name}"


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return Path(path).resolve().as_posix()


_README = """mammo-review label export ({when})
Research use only. Not for diagnosis or any clinical decision.

manifest.csv / manifest.json  one row per image: each task's combined label and its uncertainty u
                              (loss weight 1 - u; empty = missing). Image paths are relative to this folder.
annotations.csv               every annotator's own label: key, annotator, task, value, confidence, status, time.
                              It names the annotators (readers), as they entered their names.
{images_line}
Combining annotators: only confirmed labels vote (suggestions from imported manifests count only when
nobody confirmed the task; the model's suggestions never count); "unknown" abstains; the class with the
largest summed confidence wins; u = 1 - (its summed confidence / number of voting annotators).

{deid}
"""
_DEID_TEXT = """De-identification: DICOM files follow the DICOM PS3.15 Annex E Basic Application Level
Confidentiality Profile (Clean Descriptors; Retain Longitudinal Temporal Information with Modified Dates):
patient names, IDs, birth dates, accession numbers, institution and physician names removed or replaced
by pseudonyms, dates shifted, private tags, overlays and curves removed, UIDs replaced consistently,
PatientIdentityRemoved=YES. Keys, patient and study columns are pseudonyms derived from a secret kept
in the exporting label store. PNG/TIFF/PGM were re-encoded as PNG without text chunks; JPEG lost its
EXIF/XMP/comment segments.
WARNING: pixel data is copied unchanged. Text or markers burned into the pixels (laterality/view
markers, names or dates printed on digitised film) may remain visible. Check the images before sharing
them outside your institution."""
_IDENTIFIED_TEXT = """IDENTIFIED export: no image was copied or de-identified. The manifest names the original
files; original_paths.csv maps every key to its original file. Keep this folder on the machine it was
made on; do not share it."""


def export_labels(
    store: LabelStore,
    records: Iterable[ImageLike],
    folder: str | Path,
    *,
    identified: bool = False,
    only_labelled: bool = True,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ExportResult:
    """Export the store's labels of ``records`` into the new (or empty) ``folder``.

    Images that cannot be copied are reported in :attr:`ExportResult.problems` and left out; the
    rest goes on. ``only_labelled`` leaves out images nobody labelled.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FormatError("the export folder must be new or empty", folder)
    images = folder / "images"
    try:
        images.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FormatError(f"cannot create the export folder ({exc.strerror or exc})", folder) from exc
    secret = store.secret
    todo = []
    for rec in dict((r.key, r) for r in records).values():
        labels = store.labels(rec.key)
        if labels or not only_labelled:
            todo.append((rec, labels))
    rows: list[LabelRow] = []
    notes: list[tuple[str, LabelRecord]] = []
    originals: list[tuple[str, str]] = []
    pseudonyms: list[tuple[str, str]] = []
    problems: list[ExportProblem] = []
    for n, (rec, labels) in enumerate(todo):
        if cancelled is not None and cancelled():
            break
        if progress is not None:
            progress(n, len(todo))
        if identified:
            key, image = rec.key, _relative(rec.path, folder)
            originals.append((key, str(Path(rec.path).resolve())))
        else:
            try:
                key, image = _copy_deidentified(rec, images, secret)
            except (OSError, ValueError, InvalidDicomError, AttributeError, TypeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                problems.append(ExportProblem(rec.key, Path(rec.path), f"cannot export: {reason}"))
                continue
            pseudonyms.append((key, rec.key))
        combined = combine(labels)
        row_labels = {t: TaskLabel(c.value, round(c.uncertainty, 6)) for t, c in combined.items() if c.value is not None}
        rows.append(
            LabelRow(
                key=key,
                image=image,
                labels=row_labels,
                laterality=rec.laterality,
                patient=_pseudo_patient(secret, rec.patient_id),
                study=_pseudo_study(secret, rec.study_uid),
                source="mammo-review",
            )
        )
        notes.extend((key, lab) for lab in labels)
    if progress is not None:
        progress(len(todo), len(todo))
    manifest = write_label_manifest(folder / "manifest.csv", rows)
    with open(folder / "annotations.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(ANNOTATION_COLUMNS)
        for key, lab in notes:
            writer.writerow(
                [key, lab.annotator, lab.task, "" if lab.value is None else lab.value, f"{lab.confidence:.6g}",
                 lab.status, lab.source, lab.model_version, lab.time]
            )
    if identified:
        with open(folder / "original_paths.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["key", "original_path"])
            writer.writerows(originals)
    if not any(images.iterdir()):
        images.rmdir()
    images_line = (
        "original_paths.csv            key -> original file (this export is IDENTIFIED)."
        if identified
        else "images/                       the de-identified image files."
    )
    (folder / "README.txt").write_text(
        _README.format(when=utc_now(), images_line=images_line, deid=_IDENTIFIED_TEXT if identified else _DEID_TEXT),
        encoding="utf-8",
    )
    if pseudonyms:
        store.remember_pseudonyms(pseudonyms)
    return ExportResult(folder, manifest, len(rows), len(notes), identified, tuple(problems))


# --------------------------------------------------------------------------- import
def _origin(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def import_labels(store: LabelStore, folder: str | Path) -> ImportResult:
    """Add the per-annotator labels of an export (its annotations.csv) to ``store``.

    Rows become history with source ``"import"`` under the exporter's annotator names; keys this
    store exported itself are mapped back to the original keys. Importing twice adds nothing.
    """
    folder = Path(folder)
    path = folder / "annotations.csv" if folder.is_dir() else folder
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FormatError(f"cannot read annotations ({exc.strerror or exc})", path) from exc
    reader = csv.DictReader(text.splitlines())
    missing = {"key", "annotator", "task", "value", "confidence", "time"} - set(reader.fieldnames or ())
    if missing:
        raise FormatError(f"annotations lack column(s) {', '.join(sorted(missing))}", path)
    batch = []
    for n, row in enumerate(reader, start=2):
        where = f"{path.name} line {n}"
        file_key = (row["key"] or "").strip()
        value = (row["value"] or "").strip() or None
        status = (row.get("status") or "confirmed").strip()
        try:
            confidence = float(row["confidence"])
        except ValueError as exc:
            raise FormatError(f"{where}: confidence {row['confidence']!r} is not a number", path) from exc
        rec = LabelRecord(
            key=store.resolve_pseudonym(file_key),
            annotator=(row["annotator"] or "").strip(),
            task=(row["task"] or "").strip(),
            value=value,
            confidence=confidence,
            status=status,
            source="import",
            model_version=(row.get("model_version") or "").strip(),
            time=(row["time"] or "").strip() or utc_now(),
        )
        origin = _origin("annotation", file_key, rec.annotator, rec.task, value or "", f"{confidence:.6g}", status, rec.time)
        batch.append((rec, origin))
    try:
        added = store.add_imported(batch, source="import")
    except ValueError as exc:
        raise FormatError(f"bad annotation ({exc})", path) from exc
    return ImportResult(added, len(batch) - added, path)


def import_manifest(store: LabelStore, path: str | Path, *, annotator: str | None = None) -> ImportResult:
    """Pre-fill ``store`` with a label manifest's labels as *suggested* (source ``"manifest"``).

    They vote in the combination only where nobody confirmed the task (see :func:`combine`).
    Importing the same manifest twice adds nothing.
    """
    path = Path(path)
    rows = read_label_manifest(path)
    who = annotator or f"manifest:{path.stem}"
    now = utc_now()
    batch = []
    for row in rows:
        for task in TASKS:
            lab = row.label(task)
            if lab.value is None:
                continue
            rec = LabelRecord(row.key, who, task, lab.value, 1.0 - lab.uncertainty, "suggested", "manifest", "", now)
            batch.append((rec, _origin("manifest", who, row.key, task, lab.value, f"{lab.uncertainty:.6g}")))
    added = store.add_imported(batch, source="manifest")
    return ImportResult(added, len(batch) - added, path)
