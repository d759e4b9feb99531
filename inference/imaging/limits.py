"""Limits checked from a DICOM file's header before anything is decoded: no decompression bomb gets far.

A crafted file claims far more pixels than it stores, and decoders allocate what the header (or the
codestream) claims before reading a byte of data: an 8 MB RLE file claiming 16384 x 16384 pixels took
3.8 GB, a 0.8 MB JPEG 2000 whose SIZ marker claims 60000 x 60000 took 7.5 GB, a 1.1 MB deflated data
set took 3.2 GB just to be read. These checks read the header, the pixel data element's length and the
first bytes of the first compressed frame, never the pixels:

- *pixels per frame* (``Rows x Columns``, and the codestream's own claim for JPEG, JPEG-LS and
  JPEG 2000) at most :attr:`Limits.max_pixels` (default 120 million: the largest real mammograms are
  about 100 Mpx); the codestream's size must also match the header's;
- *claimed vs stored size*: uncompressed pixel data must hold exactly ``rows x cols x frames x
  samples x bits / 8`` bytes (one byte of padding allowed); RLE cannot expand more than 64:1 (a
  two-byte run makes 128 bytes), and no other compressed syntax is let past
  :attr:`Limits.max_compression_ratio` (default 1000:1; real mammograms compress about 2-10:1);
- *deflated data sets*: the deflate stream is inflated in 1 MB steps (``zlib.decompressobj`` with
  ``max_length``), counting, and refused past :attr:`Limits.max_inflated_mb` (default 512 MB), before
  pydicom inflates it whole.

A file over a limit raises :class:`inference.errors.LimitExceededError` (an ImageReadError) that names the limit and
how to raise it: an environment variable (``MAMMO_MAX_PIXELS``, ``MAMMO_MAX_COMPRESSION_RATIO``,
``MAMMO_MAX_INFLATED_MB``, read by :func:`limits_from_env`) or the matching CLI option
(``--max-pixels``, ``--max-compression-ratio``, ``--max-inflated-mb``, wired by the CLI).

:func:`check_file` does every check on a path; :func:`check_inflated_size`, :func:`pixel_element`
and :func:`check_pixel_claim` are its parts, for a reader that already holds the header.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from inference.errors import ImageReadError, LimitExceededError
from inference.imaging.dicom import _QUIET as _WARNINGS_LOCK  # the reader's lock over catch_warnings

__all__ = [
    "Limits",
    "LimitExceededError",
    "PixelElement",
    "LIMIT_SETTINGS",
    "limits_from_env",
    "check_file",
    "check_deflated",
    "check_inflated_size",
    "pixel_element",
    "check_pixel_claim",
    "codestream_size",
]

_RLE = UID("1.2.840.10008.1.2.5")
_DEFLATED = UID("1.2.840.10008.1.2.1.99")
_RLE_MAX_RATIO = 64
_CHUNK = 1 << 20

#: Limits field -> (environment variable, CLI option, unit shown in messages).
LIMIT_SETTINGS: dict[str, tuple[str, str]] = {
    "max_pixels": ("MAMMO_MAX_PIXELS", "--max-pixels"),
    "max_compression_ratio": ("MAMMO_MAX_COMPRESSION_RATIO", "--max-compression-ratio"),
    "max_inflated_mb": ("MAMMO_MAX_INFLATED_MB", "--max-inflated-mb"),
}


@dataclass(frozen=True)
class Limits:
    """The limits; see the module's docstring."""

    max_pixels: int = 120_000_000
    max_compression_ratio: float = 1000.0
    max_inflated_mb: int = 512

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.max_compression_ratio < 1 or self.max_inflated_mb < 1:
            raise ValueError(f"limits must be positive: {self}")


def _how(field: str) -> str:
    env, option = LIMIT_SETTINGS[field]
    return f"raise it with {env} or {option}"


def limits_from_env(env: Mapping[str, str] | None = None, base: Limits = Limits()) -> Limits:
    """``base`` with every limit set in the environment; ValueError names a malformed variable."""
    env = os.environ if env is None else env
    values: dict[str, float] = {}
    for field, (name, _) in LIMIT_SETTINGS.items():
        text = env.get(name, "").strip()
        if not text:
            continue
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{name}={text!r} is not a number") from None
        if not number >= 1:
            raise ValueError(f"{name}={text!r}: the limit must be at least 1")
        values[field] = number
    return Limits(
        max_pixels=int(values.get("max_pixels", base.max_pixels)),
        max_compression_ratio=values.get("max_compression_ratio", base.max_compression_ratio),
        max_inflated_mb=int(values.get("max_inflated_mb", base.max_inflated_mb)),
    )


# --------------------------------------------------------------------------- deflate
def _file_meta(fp: BinaryIO) -> tuple[int, str] | None:
    """(offset after the file meta group, its transfer syntax UID), read by hand (explicit VR little
    endian, as the standard says); None without a preamble."""
    fp.seek(128)
    if fp.read(4) != b"DICM":
        return None
    syntax = ""
    while True:
        at = fp.tell()
        head = fp.read(8)
        if len(head) < 8:
            return at, syntax
        group, element = struct.unpack("<HH", head[:4])
        if group != 0x0002:
            return at, syntax
        vr = head[4:6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV"):
            extra = fp.read(4)
            if len(extra) < 4:
                return at, syntax
            (length,) = struct.unpack("<I", extra)
        else:
            (length,) = struct.unpack("<H", head[6:8])
        if length == 0xFFFFFFFF:
            return at, syntax
        if element == 0x0010 and length <= 64:
            syntax = fp.read(length).rstrip(b"\x00 ").decode("ascii", "replace")
        else:
            fp.seek(length, os.SEEK_CUR)


def check_inflated_size(fp: BinaryIO, limits: Limits = Limits(), path: str | Path | None = None) -> int:
    """Inflate the data set after the file meta in 1 MB steps and return its size in bytes; raises
    LimitExceededError past ``limits.max_inflated_mb`` (memory stays at a few MB whatever the claim).

    For a file whose transfer syntax is Deflated Explicit VR Little Endian; ``fp`` is left anywhere.
    """
    meta = _file_meta(fp)
    if meta is None:
        raise ImageReadError("deflated data set without a file meta header", path)
    fp.seek(meta[0])
    cap = limits.max_inflated_mb * (1 << 20)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    pending = b""
    while True:
        if not pending:
            pending = fp.read(_CHUNK)
            if not pending:
                break
        try:
            out = inflater.decompress(pending, _CHUNK)
        except zlib.error as exc:
            raise ImageReadError(f"corrupt deflated data set ({exc})", path) from exc
        total += len(out)
        if total > cap:
            raise LimitExceededError(
                f"the deflated data set inflates to over {limits.max_inflated_mb} MB (the inflated-size limit; "
                f"{_how('max_inflated_mb')})",
                path,
            )
        pending = inflater.unconsumed_tail
        if inflater.eof:
            break
    return total


# --------------------------------------------------------------------------- pixel data element
@dataclass(frozen=True)
class PixelElement:
    """The pixel data as stored: its byte count (fragments summed when encapsulated) and, when
    encapsulated, the first bytes of the first frame's first fragment (for the codestream header)."""

    stored_bytes: int
    encapsulated: bool
    first_fragment_head: bytes = b""


def _walk_fragments(fp: BinaryIO, little: bool) -> PixelElement:
    order = "<" if little else ">"
    stored, head, index = 0, b"", 0
    while True:
        item = fp.read(8)
        if len(item) < 8:
            break
        group, element, length = struct.unpack(order + "HHI", item)
        if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            break  # the sequence delimiter, or something a decoder will refuse anyway
        if index == 1:  # item 0 is the basic offset table
            head = fp.read(min(length, 4096))
            fp.seek(length - len(head), os.SEEK_CUR)
        else:
            fp.seek(length, os.SEEK_CUR)
        if index >= 1:
            stored += length
        index += 1
    return PixelElement(stored, True, head)


def pixel_element(fp: BinaryIO, ds: Dataset) -> PixelElement | None:
    """With ``fp`` just after a header read with ``stop_before_pixels=True``: the pixel data element's
    stored size, without reading its value (None when no PixelData follows)."""
    implicit, little = ds.original_encoding
    order = "<" if little is not False else ">"
    start = fp.tell()
    size = fp.seek(0, os.SEEK_END)
    fp.seek(start)
    head = fp.read(12)
    if len(head) < 8 or struct.unpack(order + "HH", head[:4]) != (0x7FE0, 0x0010):
        return None
    if implicit:
        (length,), offset = struct.unpack(order + "I", head[4:8]), 8
    elif head[4:6] in (b"OB", b"OW", b"UN") and len(head) == 12:
        (length,), offset = struct.unpack(order + "I", head[8:12]), 12
    else:
        (length,), offset = struct.unpack(order + "H", head[6:8]), 8
    fp.seek(start + offset)
    left = size - start - offset
    if length == 0xFFFFFFFF:  # fragments claiming more than the file holds count for what it holds
        walked = _walk_fragments(fp, little is not False)
        return PixelElement(min(walked.stored_bytes, left), True, walked.first_fragment_head)
    return PixelElement(min(length, left), False)


# --------------------------------------------------------------------------- codestreams
def _j2k_size(data: bytes) -> tuple[int, int] | None:
    at = data.find(b"\xff\x4f\xff\x51")  # SOC then SIZ (also inside a JP2 wrapper)
    if at < 0 or len(data) < at + 4 + 2 + 2 + 16:
        return None
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", data[at + 8 : at + 24])
    return max(0, ysiz - yo), max(0, xsiz - xo)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(rows, columns) from the first SOFn (JPEG) or SOF55 (JPEG-LS) frame header."""
    if not data.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        is_sof = (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7
        if is_sof:
            if at + 9 > len(data):
                return None
            rows, cols = struct.unpack(">HH", data[at + 5 : at + 9])
            return rows, cols
        at += 2 + length
    return None


def codestream_size(head: bytes) -> tuple[int, int] | None:
    """(rows, columns) that a JPEG, JPEG-LS or JPEG 2000 codestream claims, from its first bytes."""
    return _jpeg_size(head) or _j2k_size(head)


# --------------------------------------------------------------------------- the claim
def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        return int(ds.get(keyword, default) or default)
    except Exception:  # noqa: BLE001 - pydicom raises many types for a corrupt element: the default
        return default


def check_pixel_claim(
    ds: Dataset, element: PixelElement | None, ts: UID, limits: Limits = Limits(), path: str | Path | None = None
) -> None:
    """Raise LimitExceededError (or ImageReadError for a plain mismatch) when the header claims more
    pixels than allowed or than the stored bytes can hold. ``element`` None: no pixel data, nothing to do."""
    if element is None:
        return
    rows, cols = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    frames, samples = max(1, _int(ds, "NumberOfFrames", 1)), max(1, _int(ds, "SamplesPerPixel", 1))
    bits = max(1, _int(ds, "BitsAllocated", 16))
    pixels = rows * cols
    if pixels > limits.max_pixels:
        raise LimitExceededError(
            f"the header claims {rows} x {cols} = {pixels} pixels per frame, over the limit of "
            f"{limits.max_pixels} ({_how('max_pixels')})",
            path,
        )
    claimed = (pixels * frames * samples * bits + 7) // 8
    if not element.encapsulated:
        found = element.stored_bytes
        if found < claimed:
            raise ImageReadError(f"truncated pixel data: expected {claimed} bytes, found {found}", path)
        if found > claimed + 1:
            raise ImageReadError(f"pixel data of {found} bytes where the header claims {claimed}", path)
        return
    stored = max(1, element.stored_bytes)
    if ts == _RLE:
        if claimed > _RLE_MAX_RATIO * stored + 64 * frames:
            raise ImageReadError(
                f"RLE data of {stored} bytes cannot hold the {claimed} bytes the header claims "
                f"(RLE expands at most {_RLE_MAX_RATIO}:1)",
                path,
            )
        return
    ratio = claimed / stored
    if ratio > limits.max_compression_ratio:
        raise LimitExceededError(
            f"the header claims {claimed} bytes from {stored} stored, a compression ratio of {ratio:.0f}:1, over "
            f"the limit of {limits.max_compression_ratio:g}:1 ({_how('max_compression_ratio')})",
            path,
        )
    size = codestream_size(element.first_fragment_head)
    if size is None:
        return
    c_rows, c_cols = size
    if c_rows * c_cols > limits.max_pixels:
        raise LimitExceededError(
            f"the {ts.name or ts} codestream claims {c_rows} x {c_cols} = {c_rows * c_cols} pixels, over the "
            f"limit of {limits.max_pixels} ({_how('max_pixels')})",
            path,
        )
    if (c_rows, c_cols) != (rows, cols):
        raise ImageReadError(
            f"the {ts.name or ts} codestream claims {c_rows} x {c_cols} pixels, the header {rows} x {cols}", path
        )


def check_file(path: str | Path, limits: Limits = Limits()) -> None:
    """Every check on one DICOM file, reading its header but no pixel data; raises LimitExceededError
    (over a limit) or ImageReadError (a claim the stored data cannot meet)."""
    path = Path(path)
    try:
        # pydicom converts elements lazily and warns about odd values on access: silence them here,
        # under the reader's lock (catch_warnings is process-wide state)
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _check_file(path, limits)
    except ImageReadError:
        raise
    except OSError as exc:
        raise ImageReadError(f"cannot read the file ({exc.strerror or exc})", path) from exc
    except Exception as exc:  # a corrupt header element that pydicom cannot convert
        raise ImageReadError(f"unreadable DICOM header ({type(exc).__name__}: {exc})", path) from exc


def _check_file(path: Path, limits: Limits) -> None:
    with open(path, "rb") as fp:
        deflated = _is_deflated(fp)
        if deflated:  # pydicom inflates the whole stream even for a header: measure it first
            check_inflated_size(fp, limits, path)
        fp.seek(0)
        try:
            ds = dcmread(fp, stop_before_pixels=not deflated, force=True)
        except Exception as exc:  # pydicom raises many types for a broken header
            raise ImageReadError(f"unreadable DICOM ({type(exc).__name__}: {exc})", path) from exc
        if deflated:
            data = ds.get("PixelData")
            element = None if data is None else PixelElement(len(data), False)
            check_pixel_claim(ds, element, _DEFLATED, limits, path)
            return
        meta = getattr(ds, "file_meta", None)
        ts = UID(str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else "")
        check_pixel_claim(ds, pixel_element(fp, ds), ts, limits, path)


def check_deflated(path: str | Path, limits: Limits | None = None) -> None:
    """For a deflated data set only: raise LimitExceededError when it inflates past the limit
    (``limits``, else the environment's). Scanning calls it before pydicom reads the header, which
    inflates the whole stream; any other file costs one read of its file meta."""
    path = Path(path)
    try:
        with open(path, "rb") as fp:
            if _is_deflated(fp):
                check_inflated_size(fp, limits_from_env() if limits is None else limits, path)
    except OSError as exc:
        raise ImageReadError(f"cannot read the file ({exc.strerror or exc})", path) from exc


def _is_deflated(fp: BinaryIO) -> bool:
    """True when the file meta names the deflated transfer syntax (read without pydicom's full read)."""
    meta = _file_meta(fp)
    return meta is not None and meta[1] == _DEFLATED
