"""Decode one image into display-ready pixels and the modality values behind them.

``load_image`` takes the stored values of a DICOM file from :func:`inference.imaging.dicom.read_pixels`
(any transfer syntax the installed decoders handle, checked there), applies pydicom's modality LUT,
then the first VOI LUT or window (pydicom's ``apply_voi_lut`` / ``apply_windowing``), inverts
MONOCHROME1 and scales to [0, 1] so brighter always means denser. Without any VOI the breast's
0.5-99.5 percentile range is used. PNG, PGM, JPEG and TIFF are read
with Pillow (8 or 16 bit, grey, or RGB holding grey). The chest-wall side is decided from the pixels
(a chest wall on the right edge means a right breast), so a mirrored image can be flagged. The
breast is found once, on the modality values (on the display of an 8-bit picture, the same values
over 255), and kept with the image (:attr:`LoadedImage.breast`, :mod:`inference.imaging.geometry`):
it gives the side, the range of an image without a window, and what preprocessing crops to.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut, apply_windowing

from inference.errors import ImageReadError, MammoReviewError, PreprocessError, UnsupportedImageError
from inference.imaging.dicom import read_pixels
from inference.imaging.geometry import BreastMask, find_breast
from inference.imaging.studies import ImageRecord, read_record

__all__ = ["Window", "LoadedImage", "load_image", "resolve_laterality", "apply_window"]


@dataclass(frozen=True)
class Window:
    """A VOI transform found in the file: a window (centre, width) or a VOI LUT (centre/width NaN)."""

    center: float
    width: float
    name: str
    function: str  # "LINEAR" | "LINEAR_EXACT" | "SIGMOID" | "LUT"


@dataclass(frozen=True)
class LoadedImage:
    """An image ready to show and to preprocess."""

    record: ImageRecord
    pixels: np.ndarray  # float32 [H, W] in [0, 1], brighter = denser
    raw: np.ndarray  # float32 [H, W] modality-LUT values (pixel readout, re-windowing); not inverted
    windows: tuple[Window, ...]
    pixel_spacing_mm: tuple[float, float] | None
    chest_wall_right: bool  # from the pixels: chest wall on the right edge means a right breast
    pixel_laterality: str = ""  # "R" | "L" from the pixels, "" when no breast was found
    window_applied: str = ""  # what made `pixels`: a window's or VOI LUT's name, "breast range", "8-bit range"
    inverted: bool = False  # True for MONOCHROME1 (raw is darker where denser)

    @property
    def breast(self) -> BreastMask:
        """The breast (what preprocessing crops to and flips by), found once, while decoding: on the
        modality values of a DICOM or a deeper picture, on the display of an 8-bit picture (its values
        over 255). Not on a windowed display: a steep VOI LUT turns fat black, and the largest bright
        object left is the dense tissue, not the breast.

        Where the decoder found none, it is looked for on :attr:`pixels` when first asked for; raises
        PreprocessError when there is none there either. Pass it on as ``preprocess(image.pixels,
        height, mask=image.breast)``. Two threads asking at once may both compute it (the same mask).
        """
        found: BreastMask | None = self.__dict__.get("_breast")
        if found is None:
            found = find_breast(self.pixels)
            object.__setattr__(self, "_breast", found)  # a cache, not a field: the image stays frozen
        return found

    @property
    def laterality_mismatch(self) -> bool:
        """True when tags or text name one breast and the pixels show the other (a mirrored image?)."""
        lat = self.record.laterality
        return bool(lat and self.pixel_laterality and lat != self.pixel_laterality)


def resolve_laterality(
    record: ImageRecord, loaded: LoadedImage | None = None, pixel_laterality: str = ""
) -> tuple[str, str]:
    """(laterality, source): the record's when tags or text gave one, else the pixels' (``loaded``'s,
    or ``pixel_laterality`` as a decode worker reported it), else ("", "unknown")."""
    if record.laterality:
        return record.laterality, record.laterality_source
    seen = loaded.pixel_laterality if loaded is not None else pixel_laterality
    if seen:
        return seen, "pixels"
    return "", "unknown"


def load_image(source: ImageRecord | str | Path) -> LoadedImage:
    """Decode an image; raises errors.ImageReadError (or a subclass) naming the file and the reason."""
    record = source if isinstance(source, ImageRecord) else read_record(source)
    try:
        if record.kind == "dicom":
            pixels, raw, windows, applied, inverted, spacing = _load_dicom(record.path)
        else:
            pixels, raw, applied = _load_picture(record.path, record.kind)
            windows, inverted, spacing = (), False, None
        # The breast on the modality values (denser = brighter), not on the windowed display: a
        # steep VOI LUT can turn fat black and break the breast into pieces. Found once, it gives
        # the range of an image without a usable window, the chest-wall side, and the box and
        # background preprocessing crops to (LoadedImage.breast). An 8-bit picture's display is its
        # values over 255: found there, it is the same breast as on the values.
        if pixels is not None and record.kind != "dicom":
            breast = _breast_of(pixels, inverted=False)
        else:
            breast = _breast_of(raw, inverted)
        if pixels is None:
            pixels = _breast_range(raw, inverted, breast)
            applied = f"breast range ({applied})" if applied else "breast range"
        if inverted:
            np.subtract(np.float32(1.0), pixels, out=pixels)
    except MammoReviewError:
        raise
    except OSError as exc:
        raise ImageReadError(f"cannot read the file ({exc.strerror or exc})", record.path) from exc
    except MemoryError as exc:
        raise ImageReadError("not enough memory to decode the image", record.path) from exc
    if pixels.shape != (record.rows, record.cols):
        raise ImageReadError(
            f"decoded {pixels.shape[0]} x {pixels.shape[1]} pixels, the header says {record.rows} x {record.cols}",
            record.path,
        )
    right = breast is not None and breast.chest_wall_right
    side = "" if breast is None else "R" if right else "L"
    loaded = LoadedImage(
        record=record,
        pixels=pixels,
        raw=raw,
        windows=windows,
        pixel_spacing_mm=spacing,
        chest_wall_right=right,
        pixel_laterality=side,
        window_applied=applied,
        inverted=inverted,
    )
    if breast is not None:
        object.__setattr__(loaded, "_breast", breast)  # LoadedImage.breast's cache
    return loaded


def apply_window(raw: np.ndarray, window: Window, inverted: bool = False) -> np.ndarray:
    """Re-window modality values with pydicom's ``apply_windowing``: float32 in [0, 1], brighter = denser."""
    if window.function == "LUT" or not np.isfinite(window.center) or not np.isfinite(window.width):
        raise ValueError(f"window {window.name!r} is a VOI LUT, not a centre/width window")
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME1" if inverted else "MONOCHROME2"
    ds.BitsStored, ds.PixelRepresentation = 16, 0
    ds.WindowCenter, ds.WindowWidth = float(window.center), float(window.width)
    ds.VOILUTFunction = window.function
    with np.errstate(over="ignore"):  # a steep SIGMOID overflows exp() far from its centre: 1/(1+inf) = 0
        out = _normalise(apply_windowing(raw, ds), _window_range(ds, 0))
    return 1.0 - out if inverted else out


# --------------------------------------------------------------------------- DICOM: windows and LUTs
def _window_range(ds: Dataset, index: int) -> tuple[float, float]:
    """The output range of pydicom's apply_windowing for this dataset (its extremes, probed)."""
    with np.errstate(over="ignore"):
        lo, hi = apply_windowing(np.array([-1e30, 1e30]), ds, index)
    return float(lo), float(hi)


def _normalise(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    lo, hi = bounds
    out = np.asarray(values, np.float32)
    if out is values:
        out = out.copy()
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo)) if hi > lo else np.float32(0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _values(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        return [value]
    return list(value)


def _windows(ds: Dataset) -> tuple[Window, ...]:
    """Every VOI LUT and window in the file, in the order of the file; unparseable ones are left out."""
    found: list[Window] = []
    for n, item in enumerate(ds.get("VOILUTSequence", None) or (), start=1):
        found.append(Window(float("nan"), float("nan"), str(item.get("LUTExplanation", "") or f"VOI LUT {n}"), "LUT"))
    centers, widths = _values(ds.get("WindowCenter")), _values(ds.get("WindowWidth"))
    names = _values(ds.get("WindowCenterWidthExplanation"))
    function = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):  # a centre without its width is left out
        try:
            # a DICOM DS value of any type: float() of it or the TypeError/ValueError caught below
            center, width = float(c), float(w)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        name = str(names[i]) if i < len(names) and names[i] else f"Window {i + 1}"
        found.append(Window(center, width, name, function))
    return tuple(found)


def _voi(modality: np.ndarray, ds: Dataset, windows: tuple[Window, ...]) -> tuple[np.ndarray | None, str]:
    """(pixels, name) of the first VOI LUT (preferred, as pydicom does) or window, scaled to [0, 1];
    (None, why) when the file has none or it cannot be used."""
    if not windows:
        return None, ""
    first = windows[0]
    try:
        if first.function == "LUT":
            item = ds.VOILUTSequence[0]
            entries, first_map = int(item.LUTDescriptor[0]) or 65536, int(item.LUTDescriptor[1])
            lut = apply_voi_lut(np.arange(first_map, first_map + entries), ds, index=0, prefer_lut=True)
            if lut.max() <= lut.min():
                raise ValueError("the VOI LUT is constant")
            out = apply_voi_lut(_as_integers(modality), ds, index=0, prefer_lut=True)
            return _normalise(out, (float(lut.min()), float(lut.max()))), first.name
        with np.errstate(over="ignore"):  # a steep SIGMOID overflows exp() far from its centre: 1/(1+inf) = 0
            out = apply_windowing(modality, ds, index=0)
        return _normalise(out, _window_range(ds, 0)), first.name
    except (ValueError, NotImplementedError, AttributeError, IndexError, KeyError, TypeError) as exc:
        return None, f"{first.name} ignored: {exc}"


def _as_integers(values: np.ndarray) -> np.ndarray:
    """Whole-numbered floats (a rescale with integer slope and intercept) as int64, so that a VOI LUT
    indexes them without pydicom's warning about float input; other values unchanged (pydicom
    truncates them, and says so)."""
    whole = values.dtype.kind == "f" and values.size and np.all(np.isfinite(values))
    if whole and np.array_equal(values, np.trunc(values)):
        return values.astype(np.int64)
    return values


def _load_dicom(
    path: Path,
) -> tuple[np.ndarray | None, np.ndarray, tuple[Window, ...], str, bool, tuple[float, float] | None]:
    """(pixels, raw, windows, applied, inverted, spacing): pixels by the first usable VOI, not yet
    inverted, with the VOI's name as ``applied``; None and the reason ("" for none) without one."""
    dicom = read_pixels(path)
    ds, stored = dicom.header.dataset, dicom.stored
    windows = _windows(ds)
    inverted = dicom.header.photometric == "MONOCHROME1"
    table = _value_table(stored)
    values = stored if table is None else table[0]  # the LUT chain runs once per distinct value
    try:
        modality = apply_modality_lut(values, ds)
    except Exception as exc:
        raise ImageReadError(f"invalid modality LUT or rescale ({type(exc).__name__}: {exc})", path) from exc
    pixels, applied = _voi(modality, ds, windows)
    if table is None:
        raw = modality.astype(np.float32, copy=True)
    else:
        index = table[1]
        # an identity modality LUT (no rescale, or slope 1 and intercept 0): the stored values are
        # the raw ones, and converting them is a quarter of the time of gathering them
        if np.array_equal(modality, table[0]):
            raw = stored.astype(np.float32)
        else:
            raw = _gather(modality.astype(np.float32), index)
        pixels = None if pixels is None else _gather(pixels, index)
    return pixels, raw, windows, applied, inverted, _spacing(ds)


def _value_table(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For integer pixels: (every value from the least to the greatest, each pixel's index into it).

    pydicom's LUT functions are then applied to a few thousand values instead of millions of
    pixels, and the result gathered back: the same numbers, several times faster.
    """
    if stored.dtype.kind not in "iu" or stored.size == 0:
        return None
    lo, hi = int(stored.min()), int(stored.max())
    if hi - lo >= 1 << 17:
        return None
    values = np.arange(lo, hi + 1, dtype=stored.dtype)
    index = stored if lo == 0 and stored.dtype.kind == "u" else np.subtract(stored, lo, dtype=np.int32)
    return values, index


def _gather(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index]`` in bands of rows: numpy turns the whole index into 64-bit integers first (58 MB
    for a 3000 x 2400 image, out of cache); a band's stays in cache. The same values, ~30 % faster."""
    out = np.empty(index.shape, table.dtype)
    rows = max(1, (1 << 16) // max(1, index.shape[-1]))  # ~64 K pixels a band
    for i in range(0, index.shape[0], rows):
        np.take(table, index[i : i + rows].astype(np.intp), out=out[i : i + rows])
    return out


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    """PixelSpacing, else ImagerPixelSpacing corrected by the estimated magnification, in mm."""
    try:
        if "PixelSpacing" in ds and len(ds.PixelSpacing) == 2:
            return float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])
        if "ImagerPixelSpacing" in ds and len(ds.ImagerPixelSpacing) == 2:
            mag = float(ds.get("EstimatedRadiographicMagnificationFactor", 1.0) or 1.0)
            return float(ds.ImagerPixelSpacing[0]) / mag, float(ds.ImagerPixelSpacing[1]) / mag
    except (TypeError, ValueError):
        return None
    return None


# --------------------------------------------------------------------------- other images
def _load_picture(path: Path, kind: str) -> tuple[np.ndarray | None, np.ndarray, str]:
    """(pixels, raw, applied): 8-bit images as read; None for deeper ones (the breast's range)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F", "L"):
                values = np.asarray(img)
            elif img.mode in ("RGB", "RGBA", "LA", "P", "1", "CMYK", "YCbCr", "PA", "La", "RGBa", "RGBX"):
                values = np.asarray(img.convert("L"))  # grey stored as colour (CDD-CESM): ITU-R 601 luma
            else:
                raise UnsupportedImageError(f"{kind.upper()} in Pillow mode {img.mode!r} is not supported", path)
    except MammoReviewError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot decode {kind.upper()} ({exc})", path) from exc
    raw = values.astype(np.float32)
    if values.dtype == np.uint8:
        return raw * np.float32(1.0 / 255.0), raw, "8-bit range"
    return None, raw, ""


# --------------------------------------------------------------------------- pixels
def _breast_of(values: np.ndarray, inverted: bool) -> BreastMask | None:
    """The breast on the values turned denser = brighter; None when there is none."""
    try:
        return find_breast(-values if inverted else values)
    except PreprocessError:
        return None


def _breast_range(raw: np.ndarray, inverted: bool, breast: BreastMask | None) -> np.ndarray:
    """Scale to [0, 1] by the breast's 0.5-99.5 percentiles (the image's when no breast is found)."""
    values = -raw if inverted else raw
    if breast is None:
        lo, hi = float(values.min()), float(values.max())
    else:
        mask, f = breast.grid, breast.factor
        sub = values[::f, ::f][: mask.shape[0], : mask.shape[1]]
        inside = sub[mask[: sub.shape[0], : sub.shape[1]]]
        lo, hi = np.percentile(inside, [0.5, 99.5]) if inside.size else (values.min(), values.max())
    if inverted:  # the range of the negated values, back in raw units
        lo, hi = -hi, -lo
    return _normalise(raw, (float(lo), float(hi)))
