"""The banded preprocessing equals the whole-image implementation it replaced, bit for bit.

``reference`` is a frozen copy of ``preprocess`` as it was before (main 52c04a8): the whole image
converted to float32, a full-size breast mask, ``np.where`` and in-place arithmetic over the crop.
The cases are phantoms of several sizes, both chest-wall sides and the dtypes decoders hand on.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.imaging.geometry import BreastMask, find_breast
from inference.model.preprocess import Geometry, preprocess
from inference.phantoms.drawing import PhantomSpec, render


def reference(image: np.ndarray, height: int, mask: BreastMask | None = None) -> tuple[np.ndarray, Geometry]:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].mean(axis=-1)
    a = a.astype(np.float32, copy=False)
    if mask is None:
        mask = find_breast(a)
    mask_small, f = mask.grid, mask.factor
    h, w = a.shape
    flipped = mask.chest_wall_right
    rows = np.nonzero(mask_small.any(axis=1))[0]
    cols = np.nonzero(mask_small.any(axis=0))[0]
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    y0, y1 = r0 * f, min(r1 * f, h)
    ox0, ox1 = c0 * f, min(c1 * f, w)
    block = np.repeat(np.repeat(mask_small[r0:r1, c0:c1], f, axis=0), f, axis=1)[: y1 - y0, : ox1 - ox0]
    crop = a[y0:y1, ox0:ox1]
    if flipped:
        a, crop, block = a[:, ::-1], crop[:, ::-1], block[:, ::-1]
        x0, x1 = w - ox1, w - ox0
    else:
        x0, x1 = ox0, ox1
    background = float(np.percentile(a[::4, ::4], 1.0))
    scaled = np.where(block, crop, np.float32(-np.inf))
    top = float(scaled.max())
    assert top - background > 1e-6
    np.subtract(scaled, background, out=scaled)
    np.divide(scaled, top - background, out=scaled)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    ch, cw = scaled.shape
    content_w = max(1, int(round(cw * height / ch)))
    content = Image.fromarray(scaled, mode="F")
    resized = np.asarray(content.resize((content_w, height), Image.Resampling.BILINEAR, reducing_gap=2.0))
    width = int(np.ceil(content_w / 64) * 64)
    out = np.zeros((height, width), np.float32)
    out[:, :content_w] = np.clip(resized, 0.0, 1.0)
    return out, Geometry((h, w), flipped, (y0, y1, x0, x1), (height, content_w), (height, width))


def _as(image: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint16":
        return np.round(image * 4095).astype(np.uint16)  # 12 bits stored in 16, as MG detectors do
    if dtype == "int16":
        return (np.round(image * 3000) - 1000).astype(np.int16)  # signed, with an offset
    if dtype == "uint8":
        return np.round(image * 255).astype(np.uint8)
    if dtype == "rgb":
        g = np.round(image * 255).astype(np.uint8)
        return np.stack([g, g, np.roll(g, 3, axis=1)], axis=-1)  # colour channels that differ
    return image.astype(dtype)


CASES = [
    # (shape, laterality, view, mirrored, seed): sizes not multiples of the mask factor on purpose
    ((3000, 2400), "R", "MLO", False, 1),
    ((3000, 2400), "L", "CC", False, 2),
    ((2294, 1914), "R", "CC", False, 3),
    ((1021, 797), "L", "MLO", True, 4),
    ((641, 515), "R", "MLO", False, 5),
    ((300, 239), "L", "CC", False, 6),
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint16", "int16", "uint8", "rgb"])
@pytest.mark.parametrize(("shape", "laterality", "view", "mirrored", "seed"), CASES[2:])
def test_same_as_the_whole_image_version(
    shape: tuple[int, int], laterality: str, view: str, mirrored: bool, seed: int, dtype: str
) -> None:
    spec = PhantomSpec(shape=shape, laterality=laterality, view=view, mirrored=mirrored, seed=seed)  # type: ignore[arg-type]
    image = _as(render(spec), dtype)
    for height in (128, 384):
        want, want_g = reference(image, height)
        got, got_g = preprocess(image, height)
        assert got_g == want_g
        np.testing.assert_array_equal(got, want)  # max abs difference 0


@pytest.mark.parametrize(("shape", "laterality", "view", "mirrored", "seed"), CASES[:2])
def test_same_on_full_size_16_bit(
    shape: tuple[int, int], laterality: str, view: str, mirrored: bool, seed: int
) -> None:
    spec = PhantomSpec(shape=shape, laterality=laterality, view=view, mirrored=mirrored, seed=seed)  # type: ignore[arg-type]
    image = _as(render(spec), "uint16")
    want, want_g = reference(image, 384)
    # with the mask handed on (the decode path) and found here: the same array
    for got, got_g in (preprocess(image, 384, mask=find_breast(image.astype(np.float32))), preprocess(image, 384)):
        assert got_g == want_g
        np.testing.assert_array_equal(got, want)
