"""The paper's augmentation: translation, zoom and vertical flip, each with probability 0.5.

No horizontal flip (the chest wall stays on the left, as preprocessing put it) and no shear.
Randomness comes only from the ``numpy.random.Generator`` passed to each call, so a run that saves
and restores that generator's state repeats its augmentations exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Augment"]


@dataclass(frozen=True)
class Augment:
    """``Augment()(image, rng)`` -> a randomly moved copy of a preprocessed ``[H, W]`` image.

    - translation (p): up to ``translate_y`` of the height up/down and ``translate_x`` of the
      width right (never left, which would cut off the chest wall);
    - zoom (p): a factor in ``zoom`` about the middle of the chest-wall edge;
    - vertical flip (p): upside down (a left MLO flipped vertically still looks like a breast).
    Empty space is filled with 0 (background).
    """

    p: float = 0.5
    translate_y: float = 0.1
    translate_x: float = 0.05
    zoom: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"probability {self.p} is outside [0, 1]")
        if not 0.0 < self.zoom[0] <= self.zoom[1]:
            raise ValueError(f"zoom range {self.zoom} is not a positive interval")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = np.asarray(image, np.float32)
        h, w = a.shape
        # draw every number every time so the generator advances the same way whatever is applied
        do_shift, do_zoom, do_flip = rng.random(3) < self.p
        dy = rng.uniform(-self.translate_y, self.translate_y) * h
        dx = rng.uniform(0.0, self.translate_x) * w
        s = rng.uniform(*self.zoom)
        if do_shift or do_zoom:
            s = s if do_zoom else 1.0
            dy, dx = (dy, dx) if do_shift else (0.0, 0.0)
            # output (y, x) samples input ((y - cy - dy) / s + cy, (x - dx) / s), centre cy = h/2 on the left edge
            cy = (h - 1) / 2.0
            matrix = np.array([1.0 / s, 1.0 / s])
            offset = np.array([cy - (cy + dy) / s, -dx / s])
            a = ndimage.affine_transform(a, matrix, offset=offset, order=1, mode="constant", cval=0.0, prefilter=False)
            np.clip(a, 0.0, 1.0, out=a)
        if do_flip:
            a = a[::-1]
        return np.ascontiguousarray(a, dtype=np.float32)
