"""Hostile DICOM files the imaging and de-identification tests generate: a panicking RLE frame, decompression bombs.

Each builder writes a small file with pydicom and returns its path.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

MG = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation


def mg_dataset(rows: int, cols: int, bits: int, syntax: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
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
    import zlib

    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = mg_dataset(1, 1, 16, DeflatedExplicitVRLittleEndian)
    body = inflated_mb << 20
    rows = 8192
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
