"""De-identification of exported images: DICOM per PS3.15 Annex E, PNG/TIFF/PGM re-encoded, JPEG stripped.

DICOM files go through :class:`inference.imaging.confidentiality.Deidentifier`, the project's one
implementation of the Basic Application Level Confidentiality Profile (every attribute of Table
E.1-1, recursively, from dicom-anonymizer's transcription of the table; private tags, overlays and
curves removed), with the options the export has always used: Clean Descriptors (laterality and
view words only, :func:`clean_descriptor`) and Retain Longitudinal Temporal Information with
Modified Dates (a per-patient shift). UIDs become ``2.25.<int>`` from a keyed hash of the store's
secret, the same UID always the same new one; a file already marked PatientIdentityRemoved=YES keeps
its UIDs, so a re-export keeps its keys.

Burned-in text: before the profile runs, every pixel outside the breast (the preprocessing's own
breast mask) is set to the background (:func:`inference.imaging.confidentiality.blank_dataset`); only
then does BurnedInAnnotation become NO. Text inside the breast cannot be told from tissue: an image
whose text reaches the breast is flagged (:attr:`CopiedImage.text_touches_breast`) for the export
report. Colour or multi-frame images, and images where no breast is found, keep their pixels and
their BurnedInAnnotation, with the reason.

Export names never collide silently: a DICOM file is named after its new SOP instance UID, other
images after the SHA-256 of their de-identified bytes, and every file is created exclusively (a name
taken is an error, never an overwrite). PNG, TIFF and PGM are re-encoded as PNG without text chunks;
JPEG keeps its compressed data and loses its APP1..APP15 and comment segments (EXIF, XMP, IPTC).
Patient and study pseudonyms of the manifest are keyed hashes (HMAC-SHA-256 with the store's secret),
so re-exports give the same names.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from PIL import Image
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from inference.errors import ImageReadError
from inference.imaging.confidentiality import (
    DeidentificationReport,
    Deidentifier,
    ProfileOptions,
    blank_dataset,
)
from inference.imaging.dicom import read_dicom, transfer_syntax_of
from inference.imaging.limits import check_file, limits_from_env

__all__ = [
    "CopiedImage",
    "export_deidentifier",
    "deidentify_dataset",
    "clean_descriptor",
    "copy_deidentified",
    "copy_dicom",
    "pseudo_patient",
    "pseudo_study",
    "strip_jpeg",
    "reencode_png",
]

#: Words a descriptor may hold and stay (Clean Descriptors option): laterality, view, exam type.
_SAFE_WORDS = frozenset(
    "L R LEFT RIGHT B BILATERAL CC MLO ML LM XCCL XCCM FB SIO LMO AT ID SPOT MAG MAGNIFICATION CV RL RM "
    "SCREENING DIAGNOSTIC MAMMOGRAPHY MAMMOGRAM MAMMO MG BREAST DIGITAL TOMO TOMOSYNTHESIS VIEW VIEWS "
    "CESM CONTRAST ENHANCED LOW HIGH ENERGY RECOMBINED SUBTRACTED STANDARD".split()
)
def _keyed(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def pseudo_patient(secret: bytes, patient_id: str) -> str:
    return "" if not patient_id else "P-" + _keyed(secret, "patient", patient_id)[:16]


def pseudo_study(secret: bytes, study_uid: str) -> str:
    return "" if not study_uid else "S-" + _keyed(secret, "study", study_uid)[:16]


def clean_descriptor(value: str) -> str | None:
    """The Clean Descriptors option: a descriptor made only of laterality, view and exam words (and
    numbers) stays as it is; anything else (None) gets the profile's basic action."""
    words = re.split(r"[\s_\-/,.()^]+", str(value).upper())
    return str(value) if all(w in _SAFE_WORDS or w.isdigit() or not w for w in words) else None



def export_deidentifier(secret: bytes) -> Deidentifier:
    """The label export's profile: Clean Descriptors and Modified Dates; de-identified files keep their UIDs."""
    options = ProfileOptions(retain_modified_dates=True, clean_descriptors=clean_descriptor)
    return Deidentifier(secret, options, keep_deidentified_uids=True)


def deidentify_dataset(ds: Dataset, secret: bytes, *, pixels_blanked: bool = False) -> DeidentificationReport:
    """De-identify ``ds`` in place with the export's profile (:func:`export_deidentifier`); the pixels are
    not touched (``pixels_blanked``: the caller blanked them, BurnedInAnnotation becomes NO)."""
    return export_deidentifier(secret).deidentify(ds, pixels_blanked=pixels_blanked)


@dataclass(frozen=True)
class CopiedImage:
    """One de-identified copy: its key (the exported file's image key) and what was done to its pixels."""

    key: str
    image: str  # path relative to the export folder
    pixels_blanked: bool = False
    text_outside_breast: int | None = None  # bright objects blanked outside the breast (None: not looked at)
    text_touches_breast: bool = False  # burned-in text reaches the breast: check the image
    burned_in_annotation: str = ""  # as written in the copy ("NO" after blanking)
    note: str = ""


def _create(target: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a new file; a name already taken is an error, never an overwrite."""
    try:
        f = open(target, "xb")  # noqa: SIM115 - exclusive create
    except FileExistsError:
        raise ImageReadError(
            f"the export name images/{target.name} is taken (the same image twice?): not overwritten", target
        ) from None
    try:
        with f:
            write(f)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def copy_dicom(images: Path, secret: bytes, source: str | Path | Any) -> CopiedImage:
    """The de-identified copy of one DICOM file (a path, or anything with ``.path``) in ``images``:
    the work :func:`inference.labels.exchange.export_labels` runs in a decode worker (it decodes and
    blanks untrusted pixel data), hence the argument order for ``functools.partial``."""
    path = Path(source) if isinstance(source, (str, Path)) else Path(source.path)
    check_file(path, limits_from_env())  # the header's claims, before pydicom reads the file whole
    ds = read_dicom(path, force=True)
    syntax = transfer_syntax_of(ds)  # a file without meta header: the encoding it was read in
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = syntax
    deid = export_deidentifier(secret)
    original = str(ds.get("SOPInstanceUID", "") or "").strip()
    blanking = blank_dataset(ds) if "PixelData" in ds else None
    report = deid.deidentify(ds, pixels_blanked=blanking is not None and blanking.blanked)
    for meta, element in (("MediaStorageSOPInstanceUID", "SOPInstanceUID"), ("MediaStorageSOPClassUID", "SOPClassUID")):
        if element in ds:
            setattr(ds.file_meta, meta, ds[element].value)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    sop = str(ds.get("SOPInstanceUID", "") or "").strip()
    key = sop or "sha256:" + hashlib.sha256(data).hexdigest()
    # the new UID (digits and dots), also for a kept one: an untrusted UID never becomes a file name
    name = deid.uid(original or key) + ".dcm"
    _create(images / name, lambda f: f.write(data))
    note = blanking.note if blanking is not None else "no pixel data"
    return CopiedImage(
        key=key,
        image=f"images/{name}",
        pixels_blanked=blanking is not None and blanking.blanked,
        text_outside_breast=blanking.text_components if blanking is not None else None,
        text_touches_breast=bool(blanking is not None and blanking.text_touches_breast),
        burned_in_annotation=report.burned_in_annotation,
        note=note,
    )


def copy_deidentified(path: Path, kind: str, images: Path, secret: bytes) -> CopiedImage:
    """Write the de-identified copy of the image at ``path`` (``kind`` dicom, jpeg or another format)
    into the folder ``images``, in this process (the export runs DICOM files through
    :func:`copy_dicom` in a decode worker). Raises ImageReadError for a name already taken (never overwrites),
    LimitExceededError / ImageReadError, OSError or ValueError for a file that cannot be copied."""
    if kind == "dicom":
        return copy_dicom(images, secret, path)
    if kind == "jpeg":
        data, suffix = strip_jpeg(Path(path).read_bytes()), ".jpg"
    else:
        data, suffix = reencode_png(Path(path)), ".png"
    digest = hashlib.sha256(data).hexdigest()
    name = digest[:32] + suffix
    _create(images / name, lambda f: f.write(data))
    note = "pixels not blanked: not a DICOM file (burned-in text may remain)"
    return CopiedImage("sha256:" + digest, f"images/{name}", note=note)


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
