"""The DICOM reader: headers and pixels checked by the same rules, with the same messages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from inference.errors import ImageReadError, NotAnImageError, UnsupportedImageError
from inference.imaging.decode import load_image
from inference.imaging.dicom import DicomDirectory, read_header, read_pixels
from inference.imaging.studies import read_record
from inference.phantoms import generator as phantom

SHAPE = (96, 72)


def _write(path: Path) -> Path:
    spec = phantom.PhantomSpec("L", "MLO", shape=SHAPE, seed=2)
    return phantom.write_dicom(path, phantom.render(spec), spec=spec)


def _colour(ds: Dataset) -> None:
    ds.set_pixel_data(np.zeros((*SHAPE, 3), np.uint8), "RGB", 8)


def _frames(ds: Dataset) -> None:
    ds.set_pixel_data(np.zeros((3, *SHAPE), np.uint16), "MONOCHROME2", 12)


def _modality(ds: Dataset) -> None:
    ds.Modality = "CT"


def _no_pixels(ds: Dataset) -> None:
    del ds.PixelData


def _float_pixels(ds: Dataset) -> None:
    ds.FloatPixelData = np.zeros(SHAPE, np.float32).tobytes()
    del ds.PixelData


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (_colour, UnsupportedImageError, "colour image (PhotometricInterpretation RGB): mammograms are monochrome"),
        (_frames, UnsupportedImageError, "with 3 frames: only single-frame 2-D mammograms are supported"),
        (_modality, UnsupportedImageError, "of modality CT: not a mammogram"),
        (_no_pixels, ImageReadError, "without pixel data (truncated?)"),
        (_float_pixels, UnsupportedImageError, "float pixel data is not supported"),
    ],
)
def test_the_header_and_the_pixel_reader_refuse_a_file_with_the_same_message(
    tmp_path: Path, change: Callable[[Dataset], None], error: type[Exception], message: str
) -> None:
    path = _write(tmp_path / "a.dcm")
    record = read_record(path)  # scanned while good ...
    ds = dcmread(path)
    change(ds)
    ds.save_as(path)  # ... changed before its pixels are loaded
    with pytest.raises(error) as by_header:
        read_record(path)
    with pytest.raises(error) as by_pixels:
        load_image(record)
    assert str(by_header.value) == str(by_pixels.value)
    assert message in str(by_pixels.value) and str(path) in str(by_pixels.value)


def test_truncated_pixel_data_reads_the_same_from_the_header_and_the_pixels(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.dcm")
    record = read_record(path)
    ds = dcmread(path)
    ds.PixelData = ds.PixelData[:-100]  # a short value, still a well-formed file
    ds.save_as(path)
    expected = SHAPE[0] * SHAPE[1] * 2
    message = f"truncated pixel data: expected {expected} bytes, found {expected - 100}"
    with pytest.raises(ImageReadError) as by_header:
        read_header(path)
    with pytest.raises(ImageReadError) as by_pixels:
        read_pixels(record.path)
    assert by_header.value.reason == by_pixels.value.reason == message


def test_a_good_file_reads_the_same_header_both_ways(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.dcm")
    header, pixels = read_header(path), read_pixels(path)
    for h in (header, pixels.header):
        assert (h.rows, h.cols, h.frames, h.photometric) == (*SHAPE, 1, "MONOCHROME2")
    assert header.transfer_syntax == pixels.header.transfer_syntax
    assert pixels.stored.shape == SHAPE and pixels.stored.dtype.kind in "iu"


def test_a_dicom_directory_is_told_apart(tmp_path: Path) -> None:
    ds = dcmread(_write(tmp_path / "a.dcm"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.save_as(tmp_path / "DICOMDIR")
    with pytest.raises(DicomDirectory):
        read_header(tmp_path / "DICOMDIR")
    with pytest.raises(NotAnImageError, match="DICOMDIR"):
        read_record(tmp_path / "DICOMDIR")
