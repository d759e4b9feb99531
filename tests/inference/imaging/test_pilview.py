"""The Pillow view of a float32 array: the same numbers as Pillow's own copy, and no copy made."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from PIL import Image

from inference.imaging.pilview import float_image


def _array(rows: int = 301, cols: int = 207) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((rows, cols)) ** 3).astype(np.float32)


@pytest.mark.parametrize(
    "operation",
    [
        lambda im: im.reduce(7),
        lambda im: im.resize((90, 128), Image.Resampling.BILINEAR, reducing_gap=2.0),
        lambda im: im.resize((40, 60), Image.Resampling.BOX),
        lambda im: im.resize((400, 520), Image.Resampling.BILINEAR, box=(0.0, 0.0, 150.5, 200.25)),
        lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_operations_give_what_a_copied_image_gives(operation) -> None:  # type: ignore[no-untyped-def]
    a = _array()
    expected = np.asarray(operation(Image.fromarray(a, mode="F")))
    got = np.asarray(operation(float_image(a)))
    assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_the_image_reads_the_array_itself_and_keeps_it_alive() -> None:
    a = _array()
    image = float_image(a)
    assert image.mode == "F" and image.size == (a.shape[1], a.shape[0])
    a[5, 6] = 42.0  # the same memory: a copy would not see this
    assert image.getpixel((6, 5)) == 42.0
    expected = np.asarray(image).copy()
    del a
    gc.collect()
    assert np.array_equal(np.asarray(image), expected)  # the image holds the array


def test_other_inputs_are_converted_first() -> None:
    a = _array().astype(np.float64)
    assert np.array_equal(np.asarray(float_image(a)), a.astype(np.float32))
    mirrored = _array()[:, ::-1]  # not contiguous: converted, then mapped
    assert np.array_equal(np.asarray(float_image(mirrored)), mirrored)
    with pytest.raises(ValueError, match="2-D"):
        float_image(np.zeros((2, 3, 4), np.float32))
