"""The paper's preprocessing (section 3.2), as pure functions shared by training and inference.

``preprocess(image, height)`` puts the chest wall on the left (decided from the pixels), removes the
background and burned-in markers (keeps the largest object), crops to the breast, resizes to the
model's height, pads the width to a multiple of 64 and scales to [0, 1]. It returns the array and a
:class:`Geometry` that maps any model-space map or point back onto the original image exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from inference.errors import PreprocessError
from inference.imaging.geometry import BreastMask, find_breast
from inference.imaging.pilview import float_image

__all__ = ["Geometry", "Preprocess", "preprocess", "WIDTH_MULTIPLE"]

WIDTH_MULTIPLE = 64


@dataclass(frozen=True)
class Geometry:
    """How an original image became the model's input; maps model space back onto the original.

    Coordinates are pixel centres, (row, column). The chain is: flip (if ``flipped``), crop to
    ``crop`` = (y0, y1, x0, x1) in the flipped frame, resize the crop to ``content_shape``, pad on
    the right to ``shape``.
    """

    original_shape: tuple[int, int]
    flipped: bool
    crop: tuple[int, int, int, int]
    content_shape: tuple[int, int]
    shape: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """Model pixels per original pixel, (rows, columns)."""
        y0, y1, x0, x1 = self.crop
        return self.content_shape[0] / (y1 - y0), self.content_shape[1] / (x1 - x0)

    def model_to_original(self, y: float | np.ndarray, x: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-space pixel coordinates -> original-image pixel coordinates."""
        sy, sx = self.scale
        y0, _, x0, _ = self.crop
        oy = (np.asarray(y, np.float64) + 0.5) / sy - 0.5 + y0
        ox = (np.asarray(x, np.float64) + 0.5) / sx - 0.5 + x0
        if self.flipped:
            ox = self.original_shape[1] - 1 - ox
        return oy, ox

    def original_to_model(self, y: float | np.ndarray, x: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original-image pixel coordinates -> model-space pixel coordinates."""
        sy, sx = self.scale
        y0, _, x0, _ = self.crop
        x = np.asarray(x, np.float64)
        if self.flipped:
            x = self.original_shape[1] - 1 - x
        my = (np.asarray(y, np.float64) - y0 + 0.5) * sy - 0.5
        mx = (x - x0 + 0.5) * sx - 0.5
        return my, mx

    def to_original(self, model_map: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Draw a map over the model input (at the input's resolution or any coarser grid with the
        same aspect, e.g. H/16 x W/16) back onto the original image's pixel grid (bilinear)."""
        m = np.asarray(model_map, np.float32)
        if m.ndim != 2:
            raise ValueError(f"expected a 2-D map, got shape {m.shape}")
        fy, fx = m.shape[0] / self.shape[0], m.shape[1] / self.shape[1]
        y0, y1, x0, x1 = self.crop
        box = (0.0, 0.0, self.content_shape[1] * fx, self.content_shape[0] * fy)
        region = float_image(m).resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR, box=box)
        out = np.full(self.original_shape, fill, np.float32)
        out[y0:y1, x0:x1] = np.asarray(region)
        return out[:, ::-1].copy() if self.flipped else out


def _checked(image: np.ndarray) -> np.ndarray:
    """The image as a 2-D array in its own dtype (colour averaged to grey, as float32)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].mean(axis=-1).astype(np.float32)
    if a.ndim != 2:
        raise PreprocessError(f"expected a 2-D grey image, got shape {a.shape}")
    if a.shape[0] < 8 or a.shape[1] < 8:
        raise PreprocessError(f"image of {a.shape[0]} x {a.shape[1]} pixels is too small")
    return a


def _bands(rows: int, f: int, cells: int) -> list[tuple[int, int]]:
    """Bands of whole mask rows over a crop of ``rows`` pixel rows (``cells`` mask rows of ``f``
    pixels, the last possibly short), each about 64 pixel rows: (first mask row, end mask row).
    A short last mask row is a band of its own, so every band reshapes to (cells, f, columns)."""
    full = rows // f
    step = max(1, 64 // f)
    bands = [(i, min(i + step, full)) for i in range(0, full, step)]
    if full < cells:
        bands.append((full, cells))
    return bands


def _scaled_crop(crop: np.ndarray, cells: np.ndarray, f: int, background: float) -> np.ndarray:
    """The crop scaled to [0, 1] between ``background`` and the breast's brightest pixel, 0 outside
    the breast. ``cells`` is the mask over the crop, one cell per f x f block (the last row and
    column of cells may hang over the crop's edge). The crop is read as stored (rows contiguous):
    numpy's casts and arithmetic on a mirrored view run about ten times slower. Band by band, so
    each band's arithmetic stays in cache; the only full-size array made is the result (float32,
    as stored: not mirrored)."""
    ch, cw = crop.shape
    bands = _bands(ch, f, cells.shape[0])
    # Each band's column mask: a cell stands for f columns; the last cell may hang over the edge.
    cols = [np.repeat(cells[i0:i1], f, axis=1)[:, :cw] for i0, i1 in bands]
    peaks = [np.float32(-np.inf)]
    for (i0, i1), m in zip(bands, cols, strict=True):
        part = crop[i0 * f : min(i1 * f, ch)]
        peak = part.reshape(i1 - i0, -1, cw).max(axis=1).astype(np.float32)
        if m.any():
            peaks.append(peak[m].max())
    top = float(np.max(peaks))
    if top - background <= 1e-6:
        raise PreprocessError("the breast has no contrast against the background")
    out = np.empty((ch, cw), np.float32)
    low, span = np.float32(background), np.float32(top - background)
    for (i0, i1), m in zip(bands, cols, strict=True):
        src = crop[i0 * f : min(i1 * f, ch)]
        dst = out[i0 * f : min(i1 * f, ch)]
        np.subtract(src, low, out=dst, dtype=np.float32, casting="unsafe")
        np.divide(dst, span, out=dst)
        np.clip(dst, 0.0, 1.0, out=dst)
        np.copyto(dst.reshape(i1 - i0, -1, cw), np.float32(0.0), where=~m[:, None, :])
    return out


def preprocess(image: np.ndarray, height: int, mask: BreastMask | None = None) -> tuple[np.ndarray, Geometry]:
    """The model input [height, W] float32 in [0, 1] (W a multiple of 64) and its :class:`Geometry`.

    ``image`` is a 2-D grey array of any dtype where brighter means denser (MONOCHROME2 after the
    modality and VOI LUTs; 8-bit PNG/JPEG as read). ``mask`` is the breast found on this same image
    (:func:`inference.imaging.geometry.find_breast`, e.g. ``LoadedImage.breast``): handed on, it is not
    found again; the result is the same either way.

    The pixels are read in their own dtype and converted to float32 within the breast's box only,
    in bands; the result equals a full-size float32 conversion followed by whole-image arithmetic
    bit for bit (tests/inference/model/test_preprocess.py keeps that reference).
    """
    if height <= 0 or height % WIDTH_MULTIPLE:
        raise PreprocessError(f"model height {height} is not a positive multiple of {WIDTH_MULTIPLE}")
    a = _checked(image)
    if mask is None:
        mask = find_breast(a.astype(np.float32, copy=False))
    elif mask.shape != a.shape:
        raise ValueError(f"the breast mask was found on an image of {mask.shape}, not on this one of {a.shape}")
    mask_small, f = mask.grid, mask.factor
    h, w = a.shape
    flipped = mask.chest_wall_right
    # The breast's box on the full grid, where each mask cell stands for an f x f block.
    rows = np.nonzero(mask_small.any(axis=1))[0]
    cols = np.nonzero(mask_small.any(axis=0))[0]
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    y0, y1 = r0 * f, min(r1 * f, h)
    ox0, ox1 = c0 * f, min(c1 * f, w)  # columns of the unflipped image
    crop, cells = a[y0:y1, ox0:ox1], mask_small[r0:r1, c0:c1]
    # The background level: the 1st percentile of every 4th pixel of the chest-wall-left image.
    sample = a[::4, ::-1][:, ::4] if flipped else a[::4, ::4]
    background = float(np.percentile(sample.astype(np.float32), 1.0))
    x0, x1 = (w - ox1, w - ox0) if flipped else (ox0, ox1)
    scaled = _scaled_crop(crop, cells, f, background)
    ch, cw = scaled.shape
    content_w = max(1, int(round(cw * height / ch)))
    content = float_image(scaled)
    if flipped:  # mirrored by PIL, a copy at memory speed (the chest wall now on the left)
        content = content.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    resized = np.asarray(content.resize((content_w, height), Image.Resampling.BILINEAR, reducing_gap=2.0))
    width = int(np.ceil(content_w / WIDTH_MULTIPLE) * WIDTH_MULTIPLE)
    out = np.zeros((height, width), np.float32)
    out[:, :content_w] = np.clip(resized, 0.0, 1.0)
    geometry = Geometry(
        original_shape=(h, w),
        flipped=flipped,
        crop=(y0, y1, x0, x1),
        content_shape=(height, content_w),
        shape=(height, width),
    )
    return out, geometry


@dataclass(frozen=True)
class Preprocess:
    """The preprocessing as a callable transform (MONAI style): ``Preprocess(512)(image)``."""

    height: int

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        return preprocess(image, self.height)
