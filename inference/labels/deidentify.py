"""De-identification of exported images: DICOM per PS3.15 Annex E, PNG/TIFF/PGM re-encoded, JPEG stripped.

DICOM files are rewritten following the Basic Application Level Confidentiality Profile of DICOM
PS3.15 Annex E (:data:`DEID_ACTIONS`) with the Clean Descriptors and Retain Longitudinal Temporal
Information with Modified Dates options: identifying attributes removed or emptied, dates shifted
by a per-patient number of days, private tags, overlays and curves removed, UIDs replaced
consistently (``generate_uid(entropy_srcs=[secret, uid])`` under pydicom's root: the same UID always
gets the same new one), ``PatientIdentityRemoved=YES``. The pixels are copied unchanged, so text
burned into them (markers, labels on digitised film) may remain. PNG, TIFF and PGM are re-encoded as
PNG without text chunks; JPEG keeps its compressed data and loses its APP1..APP15 and comment
segments (EXIF, XMP, IPTC). Patient and study pseudonyms are keyed hashes (HMAC-SHA-256 with the
store's secret), so re-exports give the same names.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
from datetime import date, timedelta
from pathlib import Path

from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, generate_uid

__all__ = [
    "DEID_ACTIONS",
    "deidentify_dataset",
    "copy_deidentified",
    "pseudo_patient",
    "pseudo_study",
    "strip_jpeg",
    "reencode_png",
]

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


def pseudo_patient(secret: bytes, patient_id: str) -> str:
    return "" if not patient_id else "P-" + _keyed(secret, "patient", patient_id)[:16]


def pseudo_study(secret: bytes, study_uid: str) -> str:
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
    patient = pseudo_patient(secret, str(ds.get("PatientID", "")))
    days = _date_shift(secret, str(ds.get("PatientID", "")))
    ds.remove_private_tags()

    def new_uid(uid: str) -> str:
        if already or not uid or UID(uid).name != uid:  # a well-known UID (a transfer syntax, a class)
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
def strip_jpeg(data: bytes) -> bytes:
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


def reencode_png(path: Path) -> bytes:
    with Image.open(path) as im:
        im.load()
        clean = Image.new(im.mode, im.size)
        clean.frombytes(im.tobytes())
        if im.mode == "P":
            clean.putpalette(im.getpalette() or [])
    buf = io.BytesIO()
    clean.save(buf, "PNG", optimize=False)
    return buf.getvalue()



def copy_deidentified(path: Path, kind: str, images: Path, secret: bytes) -> tuple[str, str]:
    """Write the de-identified copy of the image at ``path`` (``kind`` dicom, jpeg or another
    format) into ``images``; returns (pseudonymous key, path relative to the export folder)."""
    if kind == "dicom":
        ds = dcmread(path, force=False)
        deidentify_dataset(ds, secret)
        key = str(ds.get("SOPInstanceUID", "")).strip()
        if not key:
            buf = io.BytesIO()
            dcmwrite(buf, ds, enforce_file_format=True)
            key = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
        name = re.sub(r"[^0-9A-Za-z.]", "_", key.removeprefix("sha256:")[:64]) + ".dcm"
        dcmwrite(images / name, ds, enforce_file_format=True)
        return key, f"images/{name}"
    if kind == "jpeg":
        data, suffix = strip_jpeg(Path(path).read_bytes()), ".jpg"
    else:
        data, suffix = reencode_png(Path(path)), ".png"
    digest = hashlib.sha256(data).hexdigest()
    name = digest[:32] + suffix
    (images / name).write_bytes(data)
    return "sha256:" + digest, f"images/{name}"

