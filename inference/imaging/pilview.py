"""A Pillow image over a float32 array without a copy.

``Image.fromarray(a, mode="F")`` copies a float array into a new image (Pillow maps only 8- and
16-bit buffers): a zero-filled 14 MB image and a copy per 2400 x 1500 picture, three times an image
on the way to the model, a third of a worker's time on a JPEG. :func:`float_image` maps the array's
own memory instead (Pillow's ``map_buffer``, what ``Image.frombuffer`` does for the modes it maps);
the image holds a reference to the array and is read-only. Pillow's operations on it (reduce,
resize, transpose) read the same numbers and return new images, so the results are the same bit for
bit (tests/inference/imaging/test_pilview.py).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["float_image"]


def float_image(a: np.ndarray) -> Image.Image:
    """A read-only Pillow ``F`` image of the 2-D array ``a`` (float32, C-contiguous: no copy;
    anything else is converted first)."""
    a = np.ascontiguousarray(a, np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {a.shape}")
    try:
        core = Image.core.map_buffer(a, (a.shape[1], a.shape[0]), "raw", 0, ("F", 0, 1))  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):  # a Pillow without map_buffer for F: the copy
        return Image.fromarray(a, mode="F")
    image = Image.new("F", (0, 0))._new(core)
    image.readonly = 1
    return image
