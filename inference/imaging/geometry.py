"""Breast geometry in the pixels: the breast's mask (the largest bright object) and its chest-wall side.

Decoding uses it to tell laterality when no tag does and to scale an image without a window to the
breast's range; preprocessing uses it to flip, clean and crop. :func:`find_breast` returns the mask as
a :class:`BreastMask` that remembers the image shape it was found on, so it can be computed once and
handed on (``LoadedImage.breast`` -> ``preprocess(..., mask=)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inference.errors import PreprocessError
from inference.imaging.pilview import float_image

__all__ = ["BreastMask", "breast_mask", "chest_wall_on_right", "find_breast", "MASK_SIDE"]

MASK_SIDE = 256  # the breast mask is found on an image of about this size


def _small(a: np.ndarray) -> tuple[np.ndarray, int]:
    """An area-averaged copy of about MASK_SIDE pixels on its longer side, and its factor."""
    f = max(1, int(np.ceil(max(a.shape) / MASK_SIDE)))
    return np.asarray(float_image(a).reduce(f)), f


def breast_mask(image: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest bright object (the breast) on a reduced grid, holes filled, and the grid's factor.

    The threshold sits a little above the background (Otsu's split of the reduced image, halved
    towards the background level), which keeps fatty tissue and drops film noise; burned-in markers
    and labels are separate objects and fall away with everything but the largest.
    """
    small, f = _small(image)
    lo, hi = np.percentile(small, [1.0, 99.5])
    if not np.isfinite(hi - lo) or hi - lo <= 1e-6:
        raise PreprocessError("the image is blank: no breast to find")
    norm = np.clip((small - lo) / (hi - lo), 0.0, 1.0)
    hist, edges = np.histogram(norm, bins=128, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    otsu = float(centres[int(np.nanargmax(np.nan_to_num(between[:-1])))])
    mask = norm > max(0.03, otsu * 0.35)
    mask = ndimage.binary_opening(mask, structure=np.ones((3, 3), bool))
    labels, n = ndimage.label(mask)
    if n == 0:
        raise PreprocessError("no breast found: the image has no object brighter than its background")
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    if largest.sum() < 0.005 * largest.size:
        raise PreprocessError("no breast found: the largest object covers under 0.5 % of the image")
    # Fill holes, closing the chest-wall edge first: dark fat against the chest wall touches the
    # image border and would otherwise count as background.
    right = chest_wall_on_right(largest)
    padded = np.pad(largest, ((0, 0), (0, 1)) if right else ((0, 0), (1, 0)), constant_values=True)
    filled = ndimage.binary_fill_holes(padded)
    return (filled[:, :-1] if right else filled[:, 1:]) & np.ones_like(largest), f


def chest_wall_on_right(mask: np.ndarray) -> bool:
    """True when the breast's mass lies toward the right edge (the chest wall is on the right)."""
    cols = mask.sum(axis=0).astype(np.float64)
    xs = np.nonzero(cols)[0]
    left, right = xs[0], xs[-1] + 1
    mid = (left + right) / 2
    idx = np.arange(cols.size)
    # The chest wall is the wide, straight side: more of the breast sits on that half, and the
    # object touches that edge over a longer run of rows.
    mass_r = cols[idx >= mid].sum()
    mass_l = cols[idx < mid].sum()
    edge_l = mask[:, left].sum()
    edge_r = mask[:, right - 1].sum()
    return bool((mass_r - mass_l) + (edge_r - edge_l) * 2 > 0)


@dataclass(frozen=True, eq=False)
class BreastMask:
    """The breast's mask on a reduced grid: each cell of ``grid`` stands for ``factor`` x ``factor``
    pixels of an image of ``shape`` (the last row and column of cells may hang over its edge)."""

    grid: np.ndarray  # bool [ceil(H / factor), ceil(W / factor)]
    factor: int
    shape: tuple[int, int]  # (H, W) of the image it was found on

    @property
    def chest_wall_right(self) -> bool:
        """True when the chest wall is on the right edge (a right breast as stored)."""
        return chest_wall_on_right(self.grid)


def find_breast(image: np.ndarray) -> BreastMask:
    """:func:`breast_mask` of a 2-D float32 image, with the shape it was found on (PreprocessError when
    there is no breast)."""
    grid, factor = breast_mask(image)
    return BreastMask(grid, factor, (int(image.shape[0]), int(image.shape[1])))
