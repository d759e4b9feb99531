"""Decode one image into display-ready pixels and the modality values behind them.

``load_image`` decodes DICOM pixel data in any transfer syntax the installed decoders handle, applies
pydicom's modality LUT, then the first VOI LUT or window (pydicom's ``apply_voi_lut`` /
``apply_windowing``), inverts MONOCHROME1 and scales to [0, 1] so brighter always means denser.
PNG, PGM, JPEG and TIFF are read with Pillow (8 or 16 bit, grey or RGB stored grey).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .studies import ImageRecord

__all__ = ["Window", "LoadedImage", "load_image", "resolve_laterality"]


@dataclass(frozen=True)
class Window:
    """A VOI transform found in the file: a window (centre, width) or a VOI LUT."""

    center: float
    width: float
    name: str
    function: str  # "LINEAR" | "LINEAR_EXACT" | "SIGMOID" | "LUT"


@dataclass(frozen=True)
class LoadedImage:
    """An image ready to show and to preprocess."""

    record: ImageRecord
    pixels: np.ndarray  # float32 [H, W] in [0, 1], brighter = denser
    raw: np.ndarray  # float32 [H, W] modality-LUT values (pixel readout, re-windowing)
    windows: tuple[Window, ...]
    pixel_spacing_mm: tuple[float, float] | None
    chest_wall_right: bool  # from the pixels: chest wall on the right edge means a right breast
    pixel_laterality: str = ""  # "R" | "L" from the pixels, "" when no breast was found
    window_applied: str = ""  # what made `pixels`: the window's name, "VOI LUT", or "breast range"
    inverted: bool = False  # True when MONOCHROME1 was inverted


def load_image(source: ImageRecord | str | Path) -> LoadedImage:
    """Decode an image; raises errors.ImageReadError (or a subclass) naming the file and the reason."""
    raise NotImplementedError  # pragma: no cover - being written


def resolve_laterality(record: ImageRecord, loaded: LoadedImage | None = None) -> tuple[str, str]:
    """(laterality, source): the record's when tags or text gave one, else the pixels', else ("", "unknown")."""
    if record.laterality:
        return record.laterality, record.laterality_source
    if loaded is not None and loaded.pixel_laterality:
        return loaded.pixel_laterality, "pixels"
    return "", "unknown"
