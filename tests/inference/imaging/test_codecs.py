"""Real files that must open (issue 13): 12-bit JPEG Extended (process 2 and 4) decoded by imagecodecs
(not the GPL decoder), Explicit VR Big Endian without a file meta header; colour files refused as colour."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import JPEGBaseline8Bit, JPEGExtended12Bit, generate_uid

from inference.errors import UnsupportedImageError
from inference.imaging import jpeg12
from inference.imaging.decode import load_image
from inference.imaging.dicom import read_header, read_pixels
from inference.imaging.isolation import DecodePool
from inference.imaging.studies import scan
from inference.phantoms import generator as phantom

SHAPE = (160, 120)


def _phantom(path: Path) -> tuple[Dataset, np.ndarray]:
    spec = phantom.PhantomSpec("R", "CC", shape=SHAPE, seed=4)
    phantom.write_dicom(path, phantom.render(spec), spec=spec, bits_stored=12)
    ds = dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds, ds.pixel_array.copy()


def _encapsulated(ds: Dataset, frame: bytes, syntax: str) -> None:
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax


def _jpeg_extended_12(path: Path) -> np.ndarray:
    ds, stored = _phantom(path)
    _encapsulated(ds, imagecodecs.jpeg8_encode(stored, level=95, bitspersample=12), JPEGExtended12Bit)
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    ds.save_as(path, enforce_file_format=True)
    return stored


def test_jpeg_extended_12_bit_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "jpeg12.dcm"
    stored = _jpeg_extended_12(path)
    frame = next(generate_frames(dcmread(path).PixelData, number_of_frames=1))
    sof = frame.find(b"\xff\xc1")  # SOF1: extended sequential DCT, process 2 and 4
    assert sof > 0 and frame[sof + 4] == 12  # 12-bit sample precision
    assert jpeg12.PLUGIN in get_decoder(JPEGExtended12Bit).available_plugins
    pixels = read_pixels(path)
    assert pixels.header.transfer_syntax == JPEGExtended12Bit
    assert pixels.stored.shape == SHAPE and pixels.stored.dtype == np.uint16
    error = np.abs(pixels.stored.astype(np.int32) - stored.astype(np.int32))
    assert stored.max() > 2000 and error.mean() < 4 and error.max() < 64  # lossy at quality 95, 12 bits
    (record,) = scan([path]).images
    assert load_image(record).pixels.shape == SHAPE
    with DecodePool(workers=1) as pool:  # a decode worker registers the plugin too (it imports the reader)
        np.testing.assert_array_equal(pool.load(record).pixels, load_image(record).pixels)


def test_big_endian_file_without_meta_header_opens(tmp_path: Path) -> None:
    ds, stored = _phantom(tmp_path / "source.dcm")
    del ds.file_meta
    ds.preamble = None
    ds.PixelData = stored.astype(">u2").tobytes()
    ds["PixelData"].VR = "OW"
    path = tmp_path / "big-endian.dcm"
    dcmwrite(path, ds, implicit_vr=False, little_endian=False, enforce_file_format=False, force_encoding=True)
    assert path.read_bytes()[:2] == b"\x00\x08"  # no preamble, no meta: group 0008 first, big-endian
    found = scan([path])
    assert not found.problems, found.problems
    (record,) = found.images
    assert record.key == ds.SOPInstanceUID and record.laterality == "R"
    assert read_header(path, raw=True).transfer_syntax == "1.2.840.10008.1.2.2"
    np.testing.assert_array_equal(read_pixels(path).stored, stored)
    assert load_image(record).pixels.shape == SHAPE


def _colour(ds: Dataset, photometric: str) -> None:
    ds.set_pixel_data(np.full((*SHAPE, 3), 90, np.uint8), "RGB", 8, generate_instance_uid=False)
    ds.PhotometricInterpretation = photometric


def _ybr_full(ds: Dataset) -> None:
    _colour(ds, "YBR_FULL")


def _ybr_full_422(ds: Dataset) -> None:  # uncompressed 4:2:2: two bytes a pixel, less than 3 samples claim
    _colour(ds, "YBR_FULL_422")
    ds.PixelData = ds.PixelData[: SHAPE[0] * SHAPE[1] * 2]


def _jpeg(photometric: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        _colour(ds, photometric)
        buffer = io.BytesIO()
        Image.fromarray(np.full((*SHAPE, 3), 90, np.uint8)).save(buffer, "JPEG", quality=90, subsampling=1)
        _encapsulated(ds, buffer.getvalue(), JPEGBaseline8Bit)

    return change


@pytest.mark.parametrize(
    ("change", "photometric"),
    [
        (_ybr_full, "YBR_FULL"),
        (_ybr_full_422, "YBR_FULL_422"),
        (_jpeg("YBR_FULL_422"), "YBR_FULL_422"),
        (_jpeg("RGB"), "RGB"),
    ],
)
def test_colour_files_are_skipped_as_colour(
    tmp_path: Path, change: Callable[[Dataset], None], photometric: str
) -> None:
    path = tmp_path / "colour.dcm"
    ds, _ = _phantom(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)
    message = f"colour image (PhotometricInterpretation {photometric}): mammograms are monochrome"
    with pytest.raises(UnsupportedImageError) as by_header:
        read_header(path)
    with pytest.raises(UnsupportedImageError) as by_pixels:
        read_pixels(path)
    assert by_header.value.reason == by_pixels.value.reason == message
    found = scan([path])
    assert not found.images and [p.reason for p in found.problems] == [message]
