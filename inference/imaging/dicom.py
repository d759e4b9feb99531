"""The DICOM reader: the header and the pixel data of one file, every validity check written once.

:func:`read_header` reads a header only (what :func:`inference.imaging.studies.scan` needs) and checks,
without reading them, that the pixel data are there and whole. :func:`read_pixels` reads the whole
file and decodes the stored values of its one frame (what :func:`inference.imaging.decode.load_image`
turns into display pixels with the LUTs). Both run the same checks (:func:`check_image`: an image SOP
class with pixel data, an X-ray modality, greyscale, one frame, a size) with the same messages, so a
file is refused for the same reason whichever reads it first.
"""

from __future__ import annotations

import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID

from inference.errors import ImageReadError, NotAnImageError, UnsupportedImageError
from inference.imaging import jpeg12

__all__ = [
    "DicomDirectory",
    "DicomHeader",
    "DicomPixels",
    "check_image",
    "read_dicom",
    "read_header",
    "read_pixels",
    "transfer_syntax_of",
]

#: The header elements :func:`read_header` reads (laterality, view, grouping and the checks).
HEADER_TAGS = [
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyDate",
    "Modality",
    "StudyDescription",
    "SeriesDescription",
    "PatientName",
    "PatientID",
    "ProtocolName",
    "AcquisitionDeviceProcessingDescription",
    "ViewPosition",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientOrientation",
    "Laterality",
    "ImageLaterality",
    "ImageComments",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "BitsAllocated",
    "ViewCodeSequence",
]
_IMPLICIT_LE = UID("1.2.840.10008.1.2")
_EXPLICIT_LE = UID("1.2.840.10008.1.2.1")
_DEFLATED = UID("1.2.840.10008.1.2.1.99")
_BIG_ENDIAN = UID("1.2.840.10008.1.2.2")
_MEDIA_DIRECTORY = UID("1.2.840.10008.1.3.10")
# Projection X-ray modalities a mammogram may carry (research sets store MG as secondary capture "OT").
_X_RAY_MODALITIES = frozenset({"MG", "DX", "CR", "OT", ""})
# The pixel data elements by tag and keyword, with what kind of values they hold ("" = integers).
_PIXEL_TAGS = {0x7FE00010: "", 0x7FE00008: "float", 0x7FE00009: "double float"}
_PIXEL_KEYWORDS = {"PixelData": "", "FloatPixelData": "float", "DoubleFloatPixelData": "double float"}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
# The fastest installed plugin per syntax (measured on a 4096 x 3328 12-bit image: RLE 66 ms with
# pylibjpeg vs 425 ms with pydicom's own, JPEG-LS 290 vs 691 ms with gdcm, baseline 56 vs 185 ms).
_FAST_PLUGIN = {
    UID("1.2.840.10008.1.2.5"): "pylibjpeg",
    UID("1.2.840.10008.1.2.4.80"): "pyjpegls",
    UID("1.2.840.10008.1.2.4.81"): "pyjpegls",
    UID("1.2.840.10008.1.2.4.50"): "pillow",
    UID("1.2.840.10008.1.2.4.51"): jpeg12.PLUGIN,  # 12-bit JPEG Extended: imagecodecs (GDCM, Pillow refuse it)
}
jpeg12.register()


class DicomDirectory(Exception):
    """The file is a DICOM directory (DICOMDIR): an index of other files, not an image."""


@dataclass(frozen=True)
class DicomHeader:
    """A checked DICOM image header: the elements read and what the checks found."""

    dataset: Dataset  # only the elements read (HEADER_TAGS for read_header, everything for read_pixels)
    transfer_syntax: UID
    photometric: str  # "MONOCHROME1" | "MONOCHROME2" (a missing one counts as MONOCHROME2)
    frames: int
    rows: int
    cols: int


@dataclass(frozen=True)
class DicomPixels:
    """A whole DICOM file read and checked, and the stored values of its one frame."""

    header: DicomHeader
    stored: np.ndarray  # [rows, cols] as stored (before the modality LUT)


_QUIET = threading.Lock()


def read_dicom(src: Any, **kwargs: Any) -> Dataset:
    """``pydicom.dcmread`` with its warnings about fixable header quirks silenced.

    The warnings filters are process-wide and ``catch_warnings`` is not thread-safe, so reads take
    a lock (reading only; decoding pixels runs outside it, in parallel).
    """
    with _QUIET, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(src, **kwargs)


def transfer_syntax_of(ds: Dataset) -> UID:
    """The dataset's transfer syntax; for a file without meta header, the encoding it was read in."""
    meta = getattr(ds, "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else "")
    if not ts:
        implicit, little = ds.original_encoding
        ts = _IMPLICIT_LE if implicit is not False else (_BIG_ENDIAN if little is False else _EXPLICIT_LE)
    return ts


def _uid_name(uid: str) -> str:
    name = UID(uid).name if uid else ""
    return name if name and name != uid else ""


def _sop_class(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))


# --------------------------------------------------------------------------- the checks
def check_image(ds: Dataset, ts: UID, path: Path, has_pixels: bool) -> DicomHeader:
    """Check that a dataset holds a mammogram this program reads; raise the reason when it does not.

    An image SOP class with (integer) pixel data, an X-ray modality, greyscale, one frame, rows and
    columns: NotAnImageError, UnsupportedImageError or ImageReadError otherwise.
    """
    sop_class = _sop_class(ds)
    class_name = _uid_name(sop_class).removesuffix(" Storage")
    if not has_pixels:
        if not sop_class:
            raise ImageReadError("incomplete DICOM header: no SOP Class UID and no pixel data (truncated?)", path)
        if "Image" in class_name:
            raise ImageReadError(f"{class_name} without pixel data (truncated?)", path)
        raise NotAnImageError(f"{class_name or 'SOP class ' + sop_class}: not an image", path)
    if class_name and "Image" not in class_name:
        raise NotAnImageError(f"{class_name}: not an image", path)
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality not in _X_RAY_MODALITIES:
        raise UnsupportedImageError(f"{class_name or 'image'} of modality {modality}: not a mammogram", path)
    photometric = _check_monochrome(ds, path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        what = class_name or "DICOM image"
        raise UnsupportedImageError(
            f"{what} with {frames} frames: only single-frame 2-D mammograms are supported", path
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or cols <= 0:
        raise ImageReadError(f"image of {rows} x {cols} pixels", path)
    return DicomHeader(ds, ts, photometric or "MONOCHROME2", frames, rows, cols)


def _check_monochrome(ds: Dataset, path: Path) -> str:
    """The photometric interpretation of a greyscale image ("" when absent); UnsupportedImageError for colour.

    Checked before the pixel data's length, which a colour image (three samples, or YBR_FULL_422's
    two bytes per pixel) would fail with a misleading "truncated pixel data"."""
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2", ""):
        what = f"PhotometricInterpretation {photometric}" if photometric else f"{samples} samples per pixel"
        raise UnsupportedImageError(f"colour image ({what}): mammograms are monochrome", path)
    return photometric


def _float_pixels(kind: str, path: Path) -> UnsupportedImageError:
    return UnsupportedImageError(f"{kind} pixel data is not supported", path)


def _check_length(ds: Dataset, found: int, path: Path) -> None:
    """Raise when uncompressed pixel data hold fewer bytes than rows x columns x frames x samples x bits."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    expected = (rows * cols * frames * samples * bits + 7) // 8
    if found < expected:
        raise ImageReadError(f"truncated pixel data: expected {expected} bytes, found {found}", path)


def _decodable(ts: UID, path: Path) -> None:
    if not ts.is_compressed:
        return
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise UnsupportedImageError(
            f"transfer syntax {ts} ({ts.name}) cannot be decoded: no decoder exists", path
        ) from exc
    if not decoder.is_available:
        raise UnsupportedImageError(f"transfer syntax {ts} ({ts.name}) cannot be decoded: no decoder installed", path)


# --------------------------------------------------------------------------- headers
def _pixel_element(fp: IO[bytes], ds: Dataset, size: int) -> tuple[int, int, int] | None:
    """After a header read stopped before the pixels: (tag, value length, bytes left in the file),
    with the file at the value's first byte; None when no pixel data element follows."""
    implicit, little = ds.original_encoding
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None
    order = "<" if little is not False else ">"
    group, element = struct.unpack(order + "HH", head[:4])
    tag = group << 16 | element
    if tag not in _PIXEL_TAGS:
        return None
    if implicit:
        (length,), offset = struct.unpack(order + "I", head[4:8]), 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            return tag, 0xFFFFFFFF, 0
        (length,), offset = struct.unpack(order + "I", head[8:12]), 12
    else:
        (length,), offset = struct.unpack(order + "H", head[6:8]), 8
    fp.seek(start + offset)
    return tag, length, size - start - offset


def _fragments_problem(fp: IO[bytes], size: int) -> str:
    """Walk the items of encapsulated pixel data by their lengths: "" when the delimiter closes them."""
    pos = fp.tell()
    while True:
        head = fp.read(8)
        if len(head) < 8:
            return "truncated pixel data: the compressed frames end before their sequence delimiter"
        group, element, length = struct.unpack("<HHI", head)
        if (group, element) == (0xFFFE, 0xE0DD):
            return ""
        if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            return f"corrupt pixel data: element ({group:04X},{element:04X}) among the compressed frames"
        pos += 8 + length
        if pos > size:
            found = size - (pos - length)
            return f"truncated pixel data: a compressed fragment of {length} bytes has {found} in the file"
        fp.seek(pos)


def _pixels_follow(path: Path, fp: IO[bytes], ds: Dataset, ts: UID, size: int) -> bool:
    """Raise for truncated pixel data; False when the file has no pixel data at all."""
    if ts == _DEFLATED:  # the stream is compressed: only a full read can tell
        fp.seek(0)
        full = read_dicom(fp, force=True)
        return any(keyword in full for keyword in _PIXEL_KEYWORDS)
    element = _pixel_element(fp, ds, size)
    if element is None:
        return False
    tag, length, left = element
    if _PIXEL_TAGS[tag]:
        raise _float_pixels(_PIXEL_TAGS[tag], path)
    if length == 0xFFFFFFFF:  # encapsulated: every fragment must be whole, then the delimiter
        if problem := _fragments_problem(fp, size):
            raise ImageReadError(problem, path)
        return True
    _check_length(ds, min(length, left), path)
    return True


def read_header(path: Path, raw: bool = False, size: int | None = None) -> DicomHeader:
    """Read and check the header of a DICOM file (``raw``: one without the 128-byte preamble),
    without its pixels; raises :class:`DicomDirectory` for a DICOMDIR, ImageReadError (or a
    subclass) naming the file for anything else that is not a readable mammogram."""
    if size is None:
        size = path.stat().st_size
    try:
        with open(path, "rb") as fp:
            ds = read_dicom(fp, stop_before_pixels=True, specific_tags=HEADER_TAGS, force=raw)
            ts = transfer_syntax_of(ds)
            if _sop_class(ds) == _MEDIA_DIRECTORY:
                raise DicomDirectory(str(path))
            if "PhotometricInterpretation" in ds or "SamplesPerPixel" in ds:  # an image: colour is told first
                _check_monochrome(ds, path)
            has_pixels = _pixels_follow(path, fp, ds, ts, size)
    except (DicomDirectory, ImageReadError):
        raise
    except Exception as exc:  # pydicom raises many types for broken headers; none may stop a scan
        raise ImageReadError(f"unreadable DICOM header ({type(exc).__name__}: {exc})", path) from exc
    return check_image(ds, ts, path, has_pixels)


# --------------------------------------------------------------------------- pixels
def _decode(ds: Dataset, ts: UID) -> np.ndarray:
    """The stored values, decoded by the fastest installed plugin (pydicom's choice if that one fails)."""
    plugin = _FAST_PLUGIN.get(ts, "")
    if plugin and plugin in get_decoder(ts).available_plugins:
        try:
            return pixel_array(ds, decoding_plugin=plugin)
        except Exception:  # noqa: BLE001 - any failure of the fast path: let pydicom pick a plugin
            pass
    return pixel_array(ds)


def read_pixels(path: Path) -> DicomPixels:
    """Read a whole DICOM file, check it as :func:`read_header` does and decode its one frame.

    Raises ImageReadError (or a subclass) naming the file: unreadable, not a mammogram, no decoder
    for its transfer syntax, truncated or undecodable pixel data.
    """
    try:
        ds = read_dicom(path, force=True)
    except Exception as exc:  # pydicom raises many types for a broken file
        raise ImageReadError(f"unreadable DICOM ({type(exc).__name__}: {exc})", path) from exc
    ts = transfer_syntax_of(ds)
    if "PhotometricInterpretation" in ds or "SamplesPerPixel" in ds:  # as read_header: colour is told first
        _check_monochrome(ds, path)
    if "PixelData" not in ds:
        for keyword, kind in _PIXEL_KEYWORDS.items():
            if kind and keyword in ds:
                raise _float_pixels(kind, path)
    header = check_image(ds, ts, path, "PixelData" in ds)
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = ts  # files without a meta header (read by their encoding)
    _decodable(ts, path)
    if not ts.is_compressed:
        _check_length(ds, len(ds.PixelData), path)
    try:
        stored = _decode(ds, ts)
    except Exception as exc:  # decoder plugins raise ValueError, RuntimeError and their own types
        why = f"{type(exc).__name__}: {exc}"
        raise ImageReadError(f"cannot decode {ts.name or ts} pixel data ({why})", path) from exc
    if stored.ndim != 2:
        raise UnsupportedImageError(f"decoded an array of shape {stored.shape}, expected one 2-D frame", path)
    return DicomPixels(header, stored)
