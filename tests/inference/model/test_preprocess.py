"""The paper's preprocessing: flip, background and marker removal, crop, resize, pad, geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.errors import PreprocessError
from inference.imaging import decode
from inference.imaging.decode import load_image
from inference.imaging.geometry import BreastMask, find_breast
from inference.model import preprocess as preprocess_module
from inference.model.predict import prepare
from inference.model.preprocess import Geometry, Preprocess, preprocess
from inference.phantoms import generator as phantom


def breast(h: int = 300, w: int = 240, right: bool = False, marker: bool = True) -> np.ndarray:
    """A half-disc breast against the left edge (or the right when ``right``), with a bright marker."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, r = h / 2, h * 0.42
    dist = np.hypot(yy - cy, xx * 1.4)
    img = np.where(dist < r, 0.35 + 0.25 * (1 - dist / r), 0.02).astype(np.float32)
    img += np.random.default_rng(0).normal(0, 0.005, img.shape).astype(np.float32)
    if marker:
        img[10:22, w - 40 : w - 12] = 1.0  # burned-in label, far from the breast
    return img[:, ::-1].copy() if right else img


def test_output_shape_range_and_padding() -> None:
    out, g = preprocess(breast(), 128)
    assert out.dtype == np.float32 and out.shape[0] == 128 and out.shape[1] % 64 == 0
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out.max() == pytest.approx(1.0, abs=0.02)
    # padding on the right is background
    assert np.all(out[:, g.content_shape[1] :] == 0)
    assert g.shape == out.shape and not g.flipped


def test_marker_is_removed_and_crop_hugs_breast() -> None:
    img = breast()
    out, g = preprocess(img, 128)
    y0, y1, x0, x1 = g.crop
    # the marker at rows 10-22, columns w-40..w-12 lies outside the crop or was zeroed
    assert x1 < img.shape[1] - 40 or out[:6, -20:].max() == 0
    assert x0 == 0  # the breast touches the chest wall edge
    assert (y1 - y0) < img.shape[0]


def test_right_breast_is_flipped_to_the_left() -> None:
    left, gl = preprocess(breast(), 128)
    right, gr = preprocess(breast(right=True), 128)
    assert gr.flipped and not gl.flipped
    np.testing.assert_allclose(left, right, atol=1e-6)


def test_hot_spot_round_trip_to_original_pixel() -> None:
    for right in (False, True):
        img = breast(right=right)
        out, g = preprocess(img, 128)
        my, mx = 64, 20  # a point inside the breast in model space
        oy, ox = g.model_to_original(my, mx)
        by, bx = g.original_to_model(oy, ox)
        assert (float(by), float(bx)) == pytest.approx((my, mx))
        # a map with one hot model pixel lands on that original pixel
        hot = np.zeros(g.shape, np.float32)
        hot[my, mx] = 1.0
        back = g.to_original(hot)
        py, px = np.unravel_index(np.argmax(back), back.shape)
        assert abs(py - float(oy)) <= 2 and abs(px - float(ox)) <= 2
        # coarse maps (H/16) keep the same geometry
        coarse = np.zeros((g.shape[0] // 16, g.shape[1] // 16), np.float32)
        coarse[my // 16, mx // 16] = 1.0
        back = g.to_original(coarse)
        py, px = np.unravel_index(np.argmax(back), back.shape)
        assert abs(py - float(oy)) <= 16 / g.scale[0] and abs(px - float(ox)) <= 16 / g.scale[1]


def test_pure_and_deterministic() -> None:
    img = breast()
    before = img.copy()
    a, ga = Preprocess(128)(img)
    b, gb = preprocess(img, 128)
    assert np.array_equal(a, b) and ga == gb
    assert np.array_equal(img, before)
    assert isinstance(ga, Geometry)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_any_grey_dtype(dtype: type) -> None:
    img = breast()
    scaled = (img * (255 if dtype is np.uint8 else 4095 if dtype is np.uint16 else 1)).astype(dtype)
    out, _ = preprocess(scaled, 64)
    assert out.shape[0] == 64 and out.max() <= 1.0


def test_blank_and_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(PreprocessError, match="blank"):
        preprocess(np.zeros((100, 80), np.float32), 64)
    with pytest.raises(PreprocessError, match="multiple of 64"):
        preprocess(breast(), 100)
    with pytest.raises(PreprocessError, match="2-D"):
        preprocess(np.zeros((4, 5, 6, 7)), 64)


# --------------------------------------------------------------------------- the breast handed on
@pytest.mark.parametrize(
    ("laterality", "photometric", "voi_lut"),
    [
        ("L", "MONOCHROME2", "window"),
        ("R", "MONOCHROME2", None),
        ("R", "MONOCHROME1", "lut"),
        ("L", "MONOCHROME1", None),
    ],
)
def test_the_model_input_is_cropped_to_the_breast_found_on_the_modality_values(
    tmp_path: Path, laterality: str, photometric: str, voi_lut: str | None
) -> None:
    spec = phantom.PhantomSpec(laterality, "MLO", shape=(200, 150), seed=7)  # type: ignore[arg-type]
    path = phantom.write_dicom(
        tmp_path / "a.dcm", phantom.render(spec), spec=spec, photometric=photometric, voi_lut=voi_lut  # type: ignore[arg-type]
    )
    loaded = load_image(path)
    on_values = find_breast(-loaded.raw if loaded.inverted else loaded.raw)
    assert loaded.breast.factor == on_values.factor and np.array_equal(loaded.breast.grid, on_values.grid)
    want, want_geometry = preprocess(loaded.pixels, 128, mask=on_values)
    item = prepare(loaded, 128)
    np.testing.assert_array_equal(item.array, want)
    assert item.geometry == want_geometry and want_geometry.flipped == (laterality == "R")


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_an_eight_bit_picture_gives_the_same_input_as_finding_its_breast_again(tmp_path: Path, suffix: str) -> None:
    from inference.phantoms.drawing import render, write_jpeg, write_png

    image = render(phantom.PhantomSpec("R", "MLO", shape=(240, 180), seed=3))
    path = (write_png if suffix == "png" else write_jpeg)(tmp_path / f"a.{suffix}", image)
    loaded = load_image(path)
    found, found_geometry = preprocess(loaded.pixels, 128)
    item = prepare(loaded, 128)
    np.testing.assert_array_equal(item.array, found)
    assert item.geometry == found_geometry and found_geometry.flipped


def test_a_loaded_image_finds_its_breast_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = phantom.PhantomSpec("R", "CC", shape=(200, 150), seed=7)
    path = phantom.write_dicom(tmp_path / "a.dcm", phantom.render(spec), spec=spec, voi_lut=None)
    calls: list[tuple[int, ...]] = []

    def counted(image: np.ndarray) -> BreastMask:
        calls.append(image.shape)
        return find_breast(image)

    monkeypatch.setattr(decode, "find_breast", counted)
    monkeypatch.setattr(preprocess_module, "find_breast", counted)
    loaded = load_image(path)  # on the modality values: the side, the breast range, the crop
    assert len(calls) == 1 and loaded.pixel_laterality == "R"
    for height in (128, 192):  # two models
        prepare(loaded, height)
    assert len(calls) == 1  # once in all


def test_a_breast_found_on_another_image_is_refused() -> None:
    with pytest.raises(ValueError, match="found on an image of"):
        preprocess(breast(300, 240), 128, mask=find_breast(breast(200, 240)))


@pytest.mark.parametrize(("side", "bits", "seed"), [("L", 12, 48), ("R", 12, 48), ("R", 16, 52)])
def test_a_steep_voi_lut_crops_to_the_breast_not_to_its_dense_tissue(
    tmp_path: Path, side: str, bits: int, seed: int
) -> None:
    """A steep VOI LUT turns a fatty breast's fat black: on the display, the largest bright object is
    the dense tissue, on its own side of the image. The breast the decoder found on the modality
    values is what the model input is cropped to and flipped by."""
    from inference.phantoms import generator as g

    spec = g.PhantomSpec(side, "CC", "A", shape=(600, 480), seed=seed)  # type: ignore[arg-type]
    path = g.write_dicom(tmp_path / "steep.dcm", g.render(spec), spec=spec, voi_lut="lut",
                         photometric="MONOCHROME1", bits_stored=bits)  # fmt: skip
    image = load_image(path)
    assert image.pixel_laterality == side
    on_display = find_breast(image.pixels)
    assert on_display.chest_wall_right != (side == "R")  # the display alone points the wrong way
    on_values = find_breast(-image.raw)  # MONOCHROME1: denser is darker in the values
    assert image.breast.factor == on_values.factor and np.array_equal(image.breast.grid, on_values.grid)
    item = prepare(image, 256)
    assert item.geometry.flipped == (side == "R")
    y0, y1, x0, x1 = item.geometry.crop
    rows, cols = np.nonzero(on_display.grid.any(axis=1))[0], np.nonzero(on_display.grid.any(axis=0))[0]
    dense_box = (rows[-1] + 1 - rows[0]) * (cols[-1] + 1 - cols[0]) * on_display.factor**2
    assert (y1 - y0) * (x1 - x0) > 1.2 * dense_box  # the whole breast, not its dense part
    assert on_display.grid.sum() < 0.6 * on_values.grid.sum()
