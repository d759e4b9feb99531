"""load_image: every transfer syntax, the LUT chain, MONOCHROME1, laterality from pixels, other formats, errors."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.uid import UID

from inference.errors import ImageReadError, NotAnImageError, UnsupportedImageError
from inference.imaging.decode import LoadedImage, Window, _gather, apply_window, load_image, resolve_laterality
from inference.imaging.geometry import breast_mask
from inference.imaging.studies import read_record
from inference.phantoms import generator as phantom

SHAPE = (160, 120)
LOSSLESS = [name for name in phantom.TRANSFER_SYNTAXES if name != "jpeg-baseline"]


def _spec(laterality: str = "R", view: str = "CC", **kw: object) -> phantom.PhantomSpec:
    return phantom.PhantomSpec(laterality, view, shape=SHAPE, seed=5, **kw)  # type: ignore[arg-type]


def _write(path: Path, spec: phantom.PhantomSpec | None = None, **kw: object) -> Path:
    spec = spec or _spec()
    return phantom.write_dicom(path, phantom.render(spec), spec=spec, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> LoadedImage:
    return load_image(_write(tmp_path_factory.mktemp("ref") / "explicit.dcm"))


# --------------------------------------------------------------------------- transfer syntaxes
@pytest.mark.parametrize("syntax", LOSSLESS)
def test_lossless_transfer_syntaxes_decode_to_the_uncompressed_pixels(
    tmp_path: Path, reference: LoadedImage, syntax: str
) -> None:
    loaded = load_image(_write(tmp_path / f"{syntax}.dcm", transfer_syntax=syntax))
    assert loaded.record.transfer_syntax == str(phantom.TRANSFER_SYNTAXES[syntax])
    assert loaded.pixels.dtype == np.float32 and loaded.raw.dtype == np.float32
    np.testing.assert_array_equal(loaded.raw, reference.raw)
    np.testing.assert_array_equal(loaded.pixels, reference.pixels)


def test_raw_holds_the_stored_values_and_pixels_span_the_unit_range(reference: LoadedImage) -> None:
    stored = np.round(np.clip(phantom.render(_spec()), 0, 1) * 4095)
    np.testing.assert_array_equal(reference.raw, stored)
    assert reference.pixels.min() == 0.0 and reference.pixels.max() == 1.0
    assert reference.pixel_spacing_mm is not None and reference.pixel_spacing_mm[0] > 0


def test_jpeg_baseline_is_close_to_the_uncompressed_pixels(tmp_path: Path, reference: LoadedImage) -> None:
    loaded = load_image(_write(tmp_path / "baseline.dcm", transfer_syntax="jpeg-baseline"))
    assert loaded.record.transfer_syntax == "1.2.840.10008.1.2.4.50"
    assert float(np.abs(loaded.pixels - reference.pixels).mean()) < 0.02


# --------------------------------------------------------------------------- LUT chain
def test_linear_window_follows_the_dicom_formula(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.dcm", voi_lut="window")
    loaded = load_image(path)
    ds = dcmread(path)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    x = np.round(np.clip(phantom.render(_spec()), 0, 1) * 4095)
    expected = np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)  # PS3.3 C.11.2.1.2.1
    np.testing.assert_allclose(loaded.pixels, expected, atol=1e-5)
    assert loaded.windows == (Window(c, w, "PHANTOM", "LINEAR"),)
    assert loaded.window_applied == "PHANTOM"


def test_sigmoid_window_follows_the_dicom_formula(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.dcm", voi_lut="sigmoid")
    loaded = load_image(path)
    ds = dcmread(path)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    x = np.round(np.clip(phantom.render(_spec()), 0, 1) * 4095)
    expected = 1 / (1 + np.exp(-4 * (x - c) / w))  # PS3.3 C.11.2.1.3.1
    np.testing.assert_allclose(loaded.pixels, expected, atol=1e-5)
    assert loaded.windows[0].function == "SIGMOID"


def test_voi_lut_is_applied_before_any_window(tmp_path: Path) -> None:
    path = _write(tmp_path / "lut.dcm", voi_lut="lut")
    loaded = load_image(path)
    item = dcmread(path).VOILUTSequence[0]
    n, first = int(item.LUTDescriptor[0]), int(item.LUTDescriptor[1])
    lut = np.frombuffer(item.LUTData, "<u2").astype(np.float64)
    x = np.round(np.clip(phantom.render(_spec()), 0, 1) * 4095).astype(int)
    expected = (lut[np.clip(x - first, 0, n - 1)] - lut.min()) / (lut.max() - lut.min())
    np.testing.assert_allclose(loaded.pixels, expected, atol=1e-6)
    assert loaded.windows[0].function == "LUT" and loaded.window_applied == "PHANTOM SIGMOID"


def test_rescale_gives_modality_values_and_the_window_applies_to_them(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.dcm")
    ds = dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 2, -100, "US"
    ds.WindowCenter = float(ds.WindowCenter) * 2 - 100
    ds.WindowWidth = float(ds.WindowWidth) * 2
    ds.save_as(tmp_path / "rescaled.dcm")
    plain, rescaled = load_image(path), load_image(tmp_path / "rescaled.dcm")
    np.testing.assert_array_equal(rescaled.raw, plain.raw * 2 - 100)
    np.testing.assert_allclose(rescaled.pixels, plain.pixels, atol=1e-3)


def test_voi_lut_after_an_integer_rescale_gives_the_same_picture(tmp_path: Path) -> None:
    """Slope 1 and intercept 0 make pydicom's modality values floats; the VOI LUT still indexes them
    exactly, without a warning (the suite turns warnings into errors)."""
    path = _write(tmp_path / "lut.dcm", voi_lut="lut")
    ds = dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.save_as(tmp_path / "rescaled.dcm")
    plain, rescaled = load_image(path), load_image(tmp_path / "rescaled.dcm")
    assert rescaled.window_applied == plain.window_applied and plain.windows[0].function == "LUT"
    np.testing.assert_array_equal(rescaled.raw, plain.raw)
    np.testing.assert_array_equal(rescaled.pixels, plain.pixels)


@pytest.mark.parametrize("voi", ["window", "lut", None])
def test_monochrome1_is_inverted_to_match_monochrome2(tmp_path: Path, voi: str | None) -> None:
    m2 = load_image(_write(tmp_path / "m2.dcm", voi_lut=voi))
    m1 = load_image(_write(tmp_path / "m1.dcm", voi_lut=voi, photometric="MONOCHROME1"))
    assert m1.inverted and not m2.inverted
    np.testing.assert_array_equal(m1.raw, 4095 - m2.raw)
    assert float(np.abs(m1.pixels - m2.pixels).max()) < 0.01
    assert m1.pixel_laterality == m2.pixel_laterality == "R"


def test_sixteen_bits_stored_gives_the_same_picture_as_twelve(tmp_path: Path) -> None:
    b12 = load_image(_write(tmp_path / "b12.dcm", bits_stored=12))
    b16 = load_image(_write(tmp_path / "b16.dcm", bits_stored=16))
    assert b16.raw.max() > 4095
    assert float(np.abs(b12.pixels - b16.pixels).max()) < 2e-3


def test_without_any_window_the_breast_range_is_used(tmp_path: Path) -> None:
    loaded = load_image(_write(tmp_path / "novoi.dcm", voi_lut=None))
    assert loaded.windows == () and loaded.window_applied == "breast range"
    mask, f = breast_mask(loaded.raw)
    inside = loaded.pixels[::f, ::f][mask]
    assert np.mean(inside <= 0.0) <= 0.01 and np.mean(inside >= 1.0) <= 0.01
    assert np.median(loaded.pixels[~np.repeat(np.repeat(mask, f, 0), f, 1)[: SHAPE[0], : SHAPE[1]]]) == 0.0


def test_apply_window_rewindows_raw_like_the_loader(reference: LoadedImage) -> None:
    again = apply_window(reference.raw, reference.windows[0])
    np.testing.assert_allclose(again, reference.pixels, atol=1e-6)
    narrow = apply_window(reference.raw, Window(1500, 800, "narrow", "LINEAR_EXACT"))
    expected = np.clip((reference.raw - 1500) / 800 + 0.5, 0, 1)  # PS3.3 C.11.2.1.3.2
    np.testing.assert_allclose(narrow, expected, atol=1e-6)
    inverted = apply_window(reference.raw, Window(1500, 800, "narrow", "LINEAR_EXACT"), inverted=True)
    np.testing.assert_allclose(inverted, 1 - expected, atol=1e-6)
    with pytest.raises(ValueError, match="VOI LUT"):
        apply_window(reference.raw, Window(float("nan"), float("nan"), "lut", "LUT"))


# --------------------------------------------------------------------------- laterality from pixels
@pytest.mark.parametrize(("laterality", "view"), [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")])
def test_untagged_breasts_get_their_side_from_the_pixels(tmp_path: Path, laterality: str, view: str) -> None:
    spec = _spec(laterality, view)
    loaded = load_image(_write(tmp_path / "x.dcm", spec, tags_mode="none"))
    assert (loaded.record.laterality, loaded.record.laterality_source) == ("", "unknown")
    assert loaded.pixel_laterality == laterality
    assert loaded.chest_wall_right is (laterality == "R")
    assert resolve_laterality(loaded.record, loaded) == (laterality, "pixels")
    assert resolve_laterality(loaded.record) == ("", "unknown")


def test_a_mirrored_image_keeps_its_tag_and_reports_the_pixels(tmp_path: Path) -> None:
    spec = _spec("L", "CC", mirrored=True)
    loaded = load_image(_write(tmp_path / "mirror.dcm", spec))
    assert (loaded.record.laterality, loaded.record.laterality_source) == ("L", "tag")
    assert loaded.pixel_laterality == "R" and loaded.laterality_mismatch
    assert resolve_laterality(loaded.record, loaded) == ("L", "tag")


def test_burned_in_markers_do_not_break_loading_or_the_side(tmp_path: Path) -> None:
    spec = _spec("L", "MLO", markers=True, marker_text="LMLO")
    loaded = load_image(_write(tmp_path / "marked.dcm", spec, tags_mode="none"))
    assert loaded.pixel_laterality == "L" and not loaded.laterality_mismatch


# --------------------------------------------------------------------------- PNG, JPEG, TIFF, PGM
@pytest.mark.parametrize("suffix", [".png", ".tif", ".pgm"])
def test_eight_bit_pictures_keep_their_values(tmp_path: Path, suffix: str) -> None:
    image = phantom.render(_spec("R", "MLO"))
    path = phantom.write_png(tmp_path / f"P1_R_DM_MLO{suffix}", image, bits=8)
    loaded = load_image(path)
    stored = np.asarray(Image.open(path), np.float32)
    np.testing.assert_array_equal(loaded.raw, stored)
    np.testing.assert_allclose(loaded.pixels, stored / 255, atol=1e-7)
    assert loaded.window_applied == "8-bit range" and loaded.pixel_spacing_mm is None
    assert (loaded.record.laterality, loaded.record.view) == ("R", "MLO")
    assert loaded.pixel_laterality == "R"


@pytest.mark.parametrize("suffix", [".png", ".tif", ".pgm"])
def test_sixteen_bit_pictures_use_the_breast_range(tmp_path: Path, suffix: str) -> None:
    image = phantom.render(_spec("L", "CC")) * 0.25  # a 14-bit detector in a 16-bit file
    loaded = load_image(phantom.write_png(tmp_path / f"img{suffix}", image, bits=16))
    assert loaded.raw.max() > 255 and loaded.window_applied == "breast range"
    assert loaded.pixels.max() == 1.0 and loaded.pixel_laterality == "L"


def test_jpeg_and_grey_stored_as_rgb_jpeg_read_as_grey(tmp_path: Path) -> None:
    image = phantom.render(_spec("L", "CC"))
    grey = load_image(phantom.write_jpeg(tmp_path / "grey.jpg", image))
    rgb_path = tmp_path / "rgb.jpg"
    Image.open(tmp_path / "grey.jpg").convert("RGB").save(rgb_path, quality=95)
    rgb = load_image(rgb_path)
    assert grey.record.kind == rgb.record.kind == "jpeg"
    assert rgb.pixels.shape == grey.pixels.shape == SHAPE
    assert float(np.abs(grey.pixels - image).mean()) < 0.02
    assert float(np.abs(rgb.pixels - grey.pixels).mean()) < 0.02


# --------------------------------------------------------------------------- errors name the file
def test_truncated_pixel_data_names_the_file_and_the_byte_counts(tmp_path: Path) -> None:
    data = _write(tmp_path / "ok.dcm").read_bytes()
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(data[:-1000])
    expected = SHAPE[0] * SHAPE[1] * 2
    message = f"truncated pixel data: expected {expected} bytes, found {expected - 1000}"
    with pytest.raises(ImageReadError, match=message) as info:
        load_image(bad)
    assert info.value.path == bad and "cut.dcm" in str(info.value)


def test_a_record_whose_file_was_cut_after_the_scan_fails_cleanly(tmp_path: Path) -> None:
    path = _write(tmp_path / "later.dcm", transfer_syntax="jpeg2000")
    record = read_record(path)
    path.write_bytes(path.read_bytes()[:-400])
    with pytest.raises(ImageReadError, match="later.dcm"):
        load_image(record)


def test_non_image_dicom_is_not_an_image(tmp_path: Path) -> None:
    path = phantom.write_non_image_dicom(tmp_path / "report.dcm", "sr")
    with pytest.raises(NotAnImageError, match="Basic Text SR: not an image"):
        load_image(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (bytes(range(256)) * 20, "not a DICOM, PNG, JPEG, TIFF or PGM file")],
)
def test_empty_and_random_files_raise_with_the_reason(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "junk.dcm"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as info:
        load_image(path)
    assert info.value.path == path


def test_truncated_png_and_jpeg_raise(tmp_path: Path) -> None:
    image = phantom.render(_spec())
    for path in (phantom.write_png(tmp_path / "a.png", image), phantom.write_jpeg(tmp_path / "a.jpg", image)):
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        with pytest.raises(ImageReadError, match="truncated") as info:
            load_image(path)
        assert info.value.path == path


def test_a_transfer_syntax_without_decoder_is_unsupported(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.dcm", transfer_syntax="jpeg2000")
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2: no pixel decoder exists
    ds.save_as(tmp_path / "mpeg.dcm")
    message = r"transfer syntax 1\.2\.840\.10008\.1\.2\.4\.100 \(MPEG2.*cannot be decoded"
    with pytest.raises(UnsupportedImageError, match=message):
        load_image(tmp_path / "mpeg.dcm")


def test_colour_and_multi_frame_dicom_are_unsupported(tmp_path: Path) -> None:
    ds = dcmread(_write(tmp_path / "x.dcm"))
    rgb = np.zeros((*SHAPE, 3), np.uint8)
    ds.set_pixel_data(rgb, "RGB", 8)
    ds.save_as(tmp_path / "rgb.dcm")
    with pytest.raises(UnsupportedImageError, match="colour image \\(PhotometricInterpretation RGB\\)"):
        load_image(tmp_path / "rgb.dcm")
    ds = dcmread(tmp_path / "x.dcm")
    ds.set_pixel_data(np.zeros((3, *SHAPE), np.uint16), "MONOCHROME2", 12)
    ds.save_as(tmp_path / "frames.dcm")
    with pytest.raises(UnsupportedImageError, match="3 frames"):
        load_image(tmp_path / "frames.dcm")


def test_an_unusable_window_falls_back_to_the_breast_range(tmp_path: Path) -> None:
    ds = dcmread(_write(tmp_path / "w.dcm"))
    ds.WindowWidth = 0  # LINEAR needs a width of at least 1
    ds.save_as(tmp_path / "zero.dcm")
    loaded = load_image(tmp_path / "zero.dcm")
    assert loaded.window_applied.startswith("breast range (PHANTOM ignored: ")
    assert loaded.windows[0].width == 0 and loaded.pixels.max() == 1.0


def test_a_missing_decoder_plugin_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build without the JPEG-LS plugins (pyjpegls, gdcm) says so instead of failing inside pydicom."""
    path = _write(tmp_path / "ls.dcm", transfer_syntax="jpegls")

    class NoPlugins:
        is_available = False

    monkeypatch.setattr("inference.imaging.dicom.get_decoder", lambda uid: NoPlugins())
    message = r"transfer syntax 1\.2\.840\.10008\.1\.2\.4\.80 \(JPEG-LS Lossless.*\) cannot be decoded: no decoder inst"
    with pytest.raises(UnsupportedImageError, match=message):
        load_image(path)


def test_a_steep_sigmoid_saturates_without_overflow_warnings(tmp_path: Path) -> None:
    ds = dcmread(_write(tmp_path / "s.dcm", voi_lut="sigmoid"))
    ds.WindowWidth = 2  # exp(-4 (x - c) / w) overflows far below the centre
    ds.save_as(tmp_path / "steep.dcm")
    loaded = load_image(tmp_path / "steep.dcm")
    assert set(np.unique(np.round(loaded.pixels[loaded.raw < float(ds.WindowCenter) - 100], 6))) == {0.0}
    assert loaded.pixels.max() == 1.0


def test_concurrent_loads_give_equal_pixels_and_leave_the_warnings_filters_alone(tmp_path: Path) -> None:
    paths = [_write(tmp_path / f"{s}.dcm", transfer_syntax=s) for s in ("explicit", "rle", "jpeg2000", "jpegls")]
    before = list(warnings.filters)
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(load_image, paths * 3))
    assert warnings.filters == before
    assert all(np.array_equal(li.pixels, loaded[0].pixels) for li in loaded)


def test_eight_bit_and_signed_pixels_follow_the_same_chain(tmp_path: Path, reference: LoadedImage) -> None:
    ds = dcmread(_write(tmp_path / "x.dcm"))
    stored = ds.pixel_array
    ds.set_pixel_data((stored >> 4).astype(np.uint8), "MONOCHROME2", 8)
    ds.WindowCenter, ds.WindowWidth = float(ds.WindowCenter) / 16, float(ds.WindowWidth) / 16
    ds.save_as(tmp_path / "eight.dcm")
    eight = load_image(tmp_path / "eight.dcm")
    assert eight.raw.max() <= 255 and float(np.abs(eight.pixels - reference.pixels).max()) < 0.02
    ds = dcmread(tmp_path / "x.dcm")
    ds.set_pixel_data((stored.astype(np.int32) - 2048).astype(np.int16), "MONOCHROME2", 12)
    ds.RescaleSlope, ds.RescaleIntercept = 1, 2048  # signed storage, same modality values
    ds.save_as(tmp_path / "signed.dcm")
    signed = load_image(tmp_path / "signed.dcm")
    assert dcmread(tmp_path / "signed.dcm").PixelRepresentation == 1
    np.testing.assert_array_equal(signed.raw, reference.raw)
    np.testing.assert_allclose(signed.pixels, reference.pixels, atol=1e-6)


def test_the_banded_gather_is_fancy_indexing() -> None:
    rng = np.random.default_rng(11)
    table = rng.random(4096).astype(np.float32)
    for shape in ((3001, 2399), (7, 1), (1, 70_000), (12,)):
        index = rng.integers(0, 4096, shape).astype(np.uint16)
        got = _gather(table, index)
        assert got.dtype == np.float32 and np.array_equal(got, table[index])


def test_an_eight_bit_pictures_breast_is_found_once_and_tells_the_same_side(tmp_path: Path) -> None:
    """The breast found on the display pixels of an 8-bit picture is kept (preprocessing does not find it
    again) and gives the side the modality values gave (what the side was found on before)."""
    from inference.imaging.geometry import find_breast
    from inference.phantoms.drawing import render, write_jpeg, write_png

    for i in range(16):
        side, view = "LR"[i % 2], ("CC", "MLO")[(i // 2) % 2]
        image = render(phantom.PhantomSpec(side, view, "ABCD"[i % 4], shape=(300, 240), seed=i))  # type: ignore[arg-type]
        write = write_png if i % 3 else write_jpeg
        loaded = load_image(write(tmp_path / f"p{i}.{'png' if i % 3 else 'jpg'}", image))
        assert "_breast" in loaded.__dict__  # found while decoding
        again = find_breast(loaded.pixels)
        assert loaded.breast.factor == again.factor and np.array_equal(loaded.breast.grid, again.grid)
        on_values = find_breast(loaded.raw)
        assert loaded.pixel_laterality == ("R" if on_values.chest_wall_right else "L") == side
