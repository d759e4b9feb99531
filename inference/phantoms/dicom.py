"""DICOM writers for the synthetic mammograms of `inference.phantoms.drawing`.

`write_dicom` stores an image the ways real mammography DICOM varies (bit depth, MONOCHROME1/2,
VOI LUT or window, compressed transfer syntaxes, laterality/view in tags, in free text only or
nowhere); `write_non_image_dicom` writes a pixel-less SR or presentation state; `write_study`
renders and writes a 4-view screening study. All are re-exported by `inference.phantoms.generator`.

Synthetic images only: they are not anatomy and carry no clinical meaning.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (  # fmt: skip
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from inference.phantoms.drawing import CalcCluster, Density, Laterality, Mass, PhantomSpec, View, render

__all__ = [  # fmt: skip
    "TRANSFER_SYNTAXES", "MG_FOR_PRESENTATION", "TagsMode", "VoiMode", "write_dicom", "write_non_image_dicom",
    "write_study",
]

TagsMode = Literal["standard", "text_only", "none"]
VoiMode = Literal["window", "sigmoid", "lut"] | None

MG_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.2")
_BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
_GSPS = UID("1.2.840.10008.5.1.4.1.1.11.1")

#: Short names accepted by `write_dicom(transfer_syntax=...)` (a UID is accepted too).
TRANSFER_SYNTAXES: dict[str, UID] = {  # fmt: skip
    "explicit": ExplicitVRLittleEndian, "deflate": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless, "jpeg2000": JPEG2000Lossless, "jpegls": JPEGLSLossless,
    "jpeg-lossless": JPEGLosslessSV1, "jpeg-baseline": JPEGBaseline8Bit,
}

# View codes: (SNOMED-RT code, meaning) as carried by most archives' MG images.
_VIEW_CODES = {  # fmt: skip
    "CC": ("R-10242", "cranio-caudal"), "MLO": ("R-10226", "medio-lateral oblique"),
    "ML": ("R-10224", "medio-lateral"),
}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _patient_orientation(spec: PhantomSpec) -> list[str]:
    """(row direction, column direction) of the stored pixels, as the MG IOD wants them."""
    row = "A" if (spec.laterality == "L") != spec.mirrored else "P"
    return [row, "F" if spec.view != "CC" else "R" if spec.laterality == "L" else "L"]


def _header(
    sop_class: UID, sop_uid: str | None, patient_id: str, patient_name: str, birth_date: str,
    study_uid: str | None, series_uid: str | None, date: str, series: int, instance: int,
) -> Dataset:  # fmt: skip
    """File meta, patient, study, series and instance attributes every written file carries."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid) if sop_uid else generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = f"ACC{patient_id}"[:16], "1", ""
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = birth_date, "F"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = series, instance
    ds.Manufacturer, ds.ManufacturerModelName = "mammo-review phantom", "inference.phantoms.generator"
    ds.InstitutionName = "Synthetic"
    return ds


def _resolve_ts(transfer_syntax: str) -> UID:
    ts = TRANSFER_SYNTAXES.get(transfer_syntax) or transfer_syntax
    if ts not in TRANSFER_SYNTAXES.values():
        names = ", ".join(TRANSFER_SYNTAXES)
        raise ValueError(f"unsupported transfer syntax {transfer_syntax!r} (use one of {names})")
    return UID(ts)


def _voi(ds: Dataset, mode: VoiMode, max_value: int, inverted: bool) -> None:
    lo_f, hi_f = 0.05, 1.0  # the tissue range of a phantom, in displayed [0, 1] units
    if inverted:
        lo_f, hi_f = 1 - hi_f, 1 - lo_f
    lo, hi = int(lo_f * max_value), int(hi_f * max_value)
    if mode in ("window", "sigmoid"):
        ds.WindowCenter, ds.WindowWidth = f"{(lo + hi) / 2:.1f}", f"{hi - lo:.1f}"
        ds.WindowCenterWidthExplanation = "PHANTOM"
        if mode == "sigmoid":
            ds.VOILUTFunction = "SIGMOID"
    elif mode == "lut":
        n = hi - lo + 1
        t = np.linspace(-4.0, 4.0, n)
        lut = np.round(4095 * (1 / (1 + np.exp(-t)) - 1 / (1 + np.exp(4))) / (1 - 2 / (1 + np.exp(4))))
        item = Dataset()
        item.LUTDescriptor = [n if n < 65536 else 0, lo, 12]
        item.LUTExplanation = "PHANTOM SIGMOID"
        item.add_new(0x00283006, "OW", np.clip(lut, 0, 4095).astype("<u2").tobytes())
        ds.VOILUTSequence = DicomSequence([item])
    elif mode is not None:
        raise ValueError(f"voi_lut must be None, 'window', 'sigmoid' or 'lut', got {mode!r}")


def _gdcm_jpeg_lossless(ds: Dataset, folder: Path) -> bytes:
    """Encapsulated JPEG lossless (process 14, SV1) pixel data, encoded by python-gdcm."""
    import gdcm  # python-gdcm: the only installed encoder of this syntax

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, dst = Path(tmp) / "native.dcm", Path(tmp) / "jpeg.dcm"
        dcmwrite(src, ds, enforce_file_format=True)
        reader, change, writer = gdcm.ImageReader(), gdcm.ImageChangeTransferSyntax(), gdcm.ImageWriter()
        reader.SetFileName(str(src))
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        writer.SetFileName(str(dst))
        if reader.Read():
            change.SetInput(reader.GetImage())
            writer.SetFile(reader.GetFile())
            if change.Change():
                writer.SetImage(change.GetOutput())
                if writer.Write():
                    data: bytes = dcmread(dst).PixelData
                    return data
        raise ValueError(f"{dst}: python-gdcm could not encode JPEG lossless")


def write_dicom(
    path: str | Path,
    image: np.ndarray,
    *,
    spec: PhantomSpec | None = None,
    patient_id: str = "PHANTOM001",
    patient_name: str = "Phantom^Patient",
    birth_date: str = "19650101",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    study_date: str = "20240115",
    bits_stored: int = 12,
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2",
    voi_lut: VoiMode = "window",
    transfer_syntax: str = "explicit",
    tags_mode: TagsMode = "standard",
    series_number: int = 1,
    instance_number: int = 1,
    pixel_spacing_mm: float | None = None,
) -> Path:
    """Write `image` (float [0, 1], 1 = bright) as an MG For Presentation DICOM file.

    `transfer_syntax` is a key of `TRANSFER_SYNTAXES` or its UID; "jpeg-baseline" stores 8 bits
    whatever `bits_stored` says. MONOCHROME1 stores inverted values. `tags_mode`: "standard"
    (ImageLaterality, ViewPosition, ViewCodeSequence, Laterality, PatientOrientation),
    "text_only" (only SeriesDescription / ProtocolName such as "L MLO"), "none" (nowhere).
    """
    path = Path(path)
    ts = _resolve_ts(transfer_syntax)
    for name, given, allowed in (
        ("tags_mode", tags_mode, ("standard", "text_only", "none")),
        ("photometric", photometric, ("MONOCHROME1", "MONOCHROME2")),
    ):
        if given not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {given!r}")
    if tags_mode != "none" and spec is None:
        raise ValueError("a spec is needed to write laterality and view")
    bits = 8 if ts == JPEGBaseline8Bit else int(bits_stored)
    if ts != JPEGBaseline8Bit and not 12 <= bits <= 16:
        raise ValueError(f"bits_stored must be 12..16, got {bits_stored}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    max_value = (1 << bits) - 1
    stored = np.round(np.clip(image, 0.0, 1.0) * max_value)
    if photometric == "MONOCHROME1":
        stored = max_value - stored
    stored = stored.astype(np.uint8 if bits == 8 else np.uint16)
    rows, cols = image.shape
    spacing = pixel_spacing_mm or round(300.0 / rows, 4)

    ds = _header(MG_FOR_PRESENTATION, sop_uid, patient_id, patient_name, birth_date, study_uid,
                 series_uid, study_date, series_number, instance_number)  # fmt: skip
    for keyword, value in {
        "ImageType": ["ORIGINAL", "PRIMARY", ""], "AcquisitionDate": study_date,
        "Modality": "MG", "PresentationIntentType": "FOR PRESENTATION",
        "BodyPartExamined": "BREAST", "KVP": "29", "BodyPartThickness": "45",
        "AnatomicRegionSequence": DicomSequence([_code("T-04000", "SRT", "Breast")]),
        "PositionerType": "MAMMOGRAPHIC", "DetectorType": "DIRECT", "BreastImplantPresent": "NO",
        "PartialView": "NO", "BurnedInAnnotation": "YES" if spec and spec.markers else "NO",
        "PixelSpacing": [spacing, spacing], "ImagerPixelSpacing": [spacing, spacing],
        "PixelIntensityRelationship": "LOG",
        "PixelIntensityRelationshipSign": -1 if photometric == "MONOCHROME2" else 1,
    }.items():  # fmt: skip
        setattr(ds, keyword, value)
    if tags_mode == "standard" and spec is not None:
        ds.Laterality = ds.ImageLaterality = spec.laterality
        ds.ViewPosition = spec.view
        ds.PatientOrientation = _patient_orientation(spec)
        code = _code(*_VIEW_CODES[spec.view][:1], "SRT", _VIEW_CODES[spec.view][1])
        code.ViewModifierCodeSequence = DicomSequence([])
        ds.ViewCodeSequence = DicomSequence([code])
        ds.SeriesDescription = ds.ProtocolName = "SCREENING MAMMOGRAPHY"
    elif tags_mode == "text_only" and spec is not None:
        ds.SeriesDescription = ds.ProtocolName = spec.label
    else:
        ds.SeriesDescription = "MAMMOGRAPHY"
    ds.set_pixel_data(stored, photometric, bits, generate_instance_uid=False)
    _voi(ds, voi_lut, max_value, photometric == "MONOCHROME1")

    if ts in (RLELossless, JPEG2000Lossless, JPEGLSLossless):
        plugin = "pyjpegls" if ts == JPEGLSLossless else ""
        ds.compress(ts, stored, encoding_plugin=plugin, generate_instance_uid=False)
    elif ts in (JPEGBaseline8Bit, JPEGLosslessSV1):
        path.parent.mkdir(parents=True, exist_ok=True)
        if ts == JPEGBaseline8Bit:
            buffer = io.BytesIO()
            Image.fromarray(stored).save(buffer, "JPEG", quality=95)
            ds.PixelData = encapsulate([buffer.getvalue()])
            ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
        else:
            ds.PixelData = _gdcm_jpeg_lossless(ds, path.parent)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = ts
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_non_image_dicom(
    path: str | Path,
    kind: Literal["sr", "gsps"] = "sr",
    *,
    patient_id: str = "PHANTOM001",
    study_uid: str | None = None,
) -> Path:
    """A DICOM file with no pixel data: a Basic Text SR or a Grayscale Softcopy Presentation State."""
    if kind not in ("sr", "gsps"):
        raise ValueError(f"kind must be 'sr' or 'gsps', got {kind!r}")
    path = Path(path)
    sop_class = _BASIC_TEXT_SR if kind == "sr" else _GSPS
    ds = _header(sop_class, None, patient_id, "Phantom^Patient", "", study_uid, None, "20240115", 99, 1)
    if kind == "sr":
        ds.Modality, ds.ValueType, ds.ContinuityOfContent = "SR", "CONTAINER", "SEPARATE"
        ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
        ds.ConceptNameCodeSequence = DicomSequence([_code("11528-7", "LN", "Radiology Report")])
        text = Dataset()
        text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
        text.ConceptNameCodeSequence = DicomSequence([_code("121071", "DCM", "Finding")])
        text.TextValue = "Synthetic phantom report. Not a diagnosis."
        ds.ContentSequence = DicomSequence([text])
    else:
        ds.Modality, ds.ContentLabel, ds.PresentationLUTShape = "PR", "PHANTOM", "IDENTITY"
        ds.PresentationCreationDate, ds.PresentationCreationTime = "20240115", "093000"
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    return path


_STUDY_VIEWS: tuple[tuple[Laterality, View], ...] = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


def write_study(
    folder: str | Path,
    *,
    patient_id: str = "PHANTOM001",
    patient_name: str = "Phantom^Patient",
    birth_date: str = "19650101",
    study_date: str = "20240115",
    shape: tuple[int, int] = (256, 192),
    density: Density = "B",
    malignant_side: Laterality | None = None,
    seed: int = 0,
    markers: bool = True,
    **encoding: Any,
) -> list[Path]:
    """A 4-view screening study (R CC, L CC, R MLO, L MLO) in `folder`, sharing one study UID.

    Files are named IM1.dcm .. IM4.dcm in that order. The `malignant_side` breast gets a
    spiculated mass and a calcification cluster at the same depth in both views. UIDs derive
    from `seed` and `patient_id`, so a study is reproducible byte for byte. `encoding` goes to
    `write_dicom`: transfer_syntax, bits_stored, photometric, voi_lut, tags_mode.
    """
    folder = Path(folder)
    rng = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, 77]))
    depth, mass_r = rng.uniform(0.25, 0.45), rng.uniform(0.03, 0.045)
    key = [str(seed), patient_id, study_date]
    study_uid = generate_uid(entropy_srcs=[*key, "study"])
    paths = []
    for i, (lat, view) in enumerate(_STUDY_VIEWS, start=1):
        y = rng.uniform(0.35, 0.6) if view == "CC" else rng.uniform(0.4, 0.6)
        sick = lat == malignant_side
        spec = PhantomSpec(
            lat, view, density, shape=shape, seed=seed * 16 + i, markers=markers,
            masses=(Mass(y, depth, mass_r, True),) if sick else (),
            calcifications=(CalcCluster(y + 0.09, depth * 1.1, 0.02, 14),) if sick else (),
        )  # fmt: skip
        path = write_dicom(
            folder / f"IM{i}.dcm", render(spec), spec=spec,
            patient_id=patient_id, patient_name=patient_name, birth_date=birth_date,
            study_date=study_date, study_uid=study_uid,
            series_uid=generate_uid(entropy_srcs=[*key, "series", str(i)]),
            sop_uid=generate_uid(entropy_srcs=[*key, "image", str(i)]),
            series_number=i, **encoding,
        )  # fmt: skip
        paths.append(path)
    return paths

