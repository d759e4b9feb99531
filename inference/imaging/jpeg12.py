"""A pydicom decoder plugin for JPEG Extended (process 2 and 4, ``1.2.840.10008.1.2.4.51``) with
12-bit samples, decoded by imagecodecs (BSD-3-Clause; its ``jpeg8`` codec is libjpeg-turbo 3, which
reads 8- and 12-bit lossy JPEG).

pydicom 3's plugins for this syntax do not fit the desktop bundle: pylibjpeg-libjpeg is GPL, and
GDCM and Pillow refuse 12-bit precision. :func:`register` adds this one (label ``"imagecodecs"``);
:mod:`inference.imaging.dicom` calls it at import, so every reader and every decode worker has it.
Only greyscale frames are decoded (mammograms are monochrome; the reader refuses colour first).
"""

from __future__ import annotations

import numpy as np
from pydicom.pixels.decoders.base import DecodeRunner, get_decoder
from pydicom.uid import JPEGExtended12Bit

__all__ = ["PLUGIN", "DECODER_DEPENDENCIES", "is_available", "decode_frame", "register"]

PLUGIN = "imagecodecs"
#: pydicom's plugin protocol: what a syntax needs when the plugin is unavailable.
DECODER_DEPENDENCIES = {JPEGExtended12Bit: ("imagecodecs>=2024.1",)}


def is_available(uid: str) -> bool:
    """pydicom's plugin protocol: True when imagecodecs and its JPEG codec are installed."""
    if uid != JPEGExtended12Bit:
        return False
    try:
        import imagecodecs  # noqa: PLC0415 - optional at import: the plugin says it is unavailable
    except ImportError:
        return False
    return bool(imagecodecs.JPEG8.available)


def decode_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """One frame's stored values as little-endian bytes (8 bits per sample for 8-bit precision, else 16)."""
    import imagecodecs  # noqa: PLC0415

    if runner.samples_per_pixel != 1:
        raise ValueError(f"{runner.samples_per_pixel} samples per pixel: only greyscale frames are decoded here")
    frame = np.asarray(imagecodecs.jpeg8_decode(src))
    if frame.shape != (runner.rows, runner.columns):
        raise ValueError(f"the JPEG frame is {frame.shape}, the header says {runner.rows} x {runner.columns}")
    runner.set_option("bits_allocated", 8 * frame.dtype.itemsize)
    return frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()


def register() -> None:
    """Add the plugin to pydicom's JPEG Extended decoder (once; later calls do nothing)."""
    try:
        get_decoder(JPEGExtended12Bit).add_plugin(PLUGIN, (__name__, "decode_frame"))
    except ValueError:  # pydicom: "already has a plugin named 'imagecodecs'"
        pass
