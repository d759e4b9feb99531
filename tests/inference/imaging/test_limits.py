"""Limits checked from the header: bombs are refused before any decode, with little memory; good files pass."""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from inference.errors import ImageReadError
from inference.imaging.decode import load_image
from inference.imaging.limits import (
    LimitExceededError,
    Limits,
    check_file,
    check_pixel_claim,
    codestream_size,
    limits_from_env,
)
from inference.phantoms import generator as phantom
from inference.phantoms.hostile import (
    mg_dataset,
    panic_rle,
    patch_j2k_size,
    pixel_claim,
    rle_frame,
    write_deflate_bomb,
    write_rle,
)

SMALL_MEMORY = 16 << 20  # bytes of Python allocations a check may peak at


@pytest.fixture
def low_memory() -> Iterator[Callable[[], int]]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("good")
    spec = phantom.PhantomSpec("L", "MLO", shape=(128, 96), seed=4)
    image = phantom.render(spec)
    return {ts: phantom.write_dicom(folder / f"{ts}.dcm", image, spec=spec, transfer_syntax=ts)
            for ts in phantom.TRANSFER_SYNTAXES}


def test_every_good_phantom_passes(good: dict[str, Path], tmp_path: Path) -> None:
    for path in good.values():
        check_file(path)
    check_file(panic_rle(tmp_path / "panic.dcm"))  # a broken decoder input, but no bomb: the pool's business


def test_rle_claiming_16384_squared_is_refused(tmp_path: Path, low_memory: Callable[[], int]) -> None:
    run = b"\x81\x00"
    path = write_rle(tmp_path / "bomb.dcm", 16384, 16384, 16, rle_frame([run * 4096, run * 4096]))
    with pytest.raises(LimitExceededError, match=r"16384 x 16384 = 268435456 pixels per frame, over the limit of "
                                                 r"120000000 \(raise it with MAMMO_MAX_PIXELS or --max-pixels\)"):
        check_file(path)
    assert low_memory() < SMALL_MEMORY


def test_rle_claim_beyond_64_to_1_is_refused(tmp_path: Path) -> None:
    path = write_rle(tmp_path / "thin.dcm", 8000, 8000, 16, rle_frame([b"\x81\x00", b"\x81\x00"]))
    with pytest.raises(ImageReadError, match=r"RLE data of \d+ bytes cannot hold the 128000000 bytes"):
        check_file(path)


def test_a_65535_squared_claim_is_refused(tmp_path: Path, low_memory: Callable[[], int]) -> None:
    path = pixel_claim(tmp_path / "huge.dcm", 65535, 65535, stored_bytes=512)
    with pytest.raises(LimitExceededError, match=r"65535 x 65535 = 4294836225 pixels per frame"):
        check_file(path)
    with pytest.raises(ImageReadError, match=r"truncated pixel data: expected 8589672450 bytes, found 512"):
        check_file(path, Limits(max_pixels=1 << 33))  # raised limit: the stored size still gives it away
    assert low_memory() < SMALL_MEMORY


def test_uncompressed_size_must_match(tmp_path: Path) -> None:
    ds = mg_dataset(16, 16, 16, ExplicitVRLittleEndian)
    ds.PixelData = bytes(16 * 16 * 2 + 64)
    ds["PixelData"].VR = "OW"
    ds.save_as(tmp_path / "long.dcm", enforce_file_format=True)
    with pytest.raises(ImageReadError, match=r"pixel data of 576 bytes where the header claims 512"):
        check_file(tmp_path / "long.dcm")


def test_deflated_bomb_is_refused_while_streaming(tmp_path: Path, low_memory: Callable[[], int]) -> None:
    path = write_deflate_bomb(tmp_path / "deflate.dcm", inflated_mb=192)
    assert path.stat().st_size < 1 << 20
    low_memory()
    tracemalloc.reset_peak()
    with pytest.raises(LimitExceededError, match=r"inflates to over 64 MB \(the inflated-size limit; raise it with "
                                                 r"MAMMO_MAX_INFLATED_MB or --max-inflated-mb\)"):
        check_file(path, Limits(max_inflated_mb=64))
    assert low_memory() < SMALL_MEMORY


def test_deflated_good_file_is_read_and_checked(good: dict[str, Path], tmp_path: Path) -> None:
    check_file(good["deflate"], Limits(max_inflated_mb=1))
    with pytest.raises(LimitExceededError, match="MAMMO_MAX_PIXELS"):
        check_file(good["deflate"], Limits(max_pixels=100))


def test_jpeg2000_siz_claiming_60000_squared_is_refused(good: dict[str, Path], tmp_path: Path,
                                                         low_memory: Callable[[], int]) -> None:
    path = patch_j2k_size(good["jpeg2000"], tmp_path / "siz.dcm", 60000, 60000)
    with pytest.raises(LimitExceededError, match=r"codestream claims 60000 x 60000 = 3600000000 pixels, over the "
                                                 r"limit of 120000000 \(raise it with MAMMO_MAX_PIXELS"):
        check_file(path)
    assert low_memory() < SMALL_MEMORY


def test_a_codestream_that_disagrees_with_the_header_is_refused(good: dict[str, Path], tmp_path: Path) -> None:
    path = patch_j2k_size(good["jpeg2000"], tmp_path / "other.dcm", 300, 200)
    with pytest.raises(ImageReadError, match=r"codestream claims 300 x 200 pixels, the header 128 x 96"):
        check_file(path)


@pytest.mark.parametrize("ts", ["jpeg2000", "jpegls", "jpeg-lossless", "jpeg-baseline"])
def test_codestream_sizes_are_read(good: dict[str, Path], ts: str) -> None:
    from pydicom.encaps import generate_frames

    ds = dcmread(good[ts])
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert codestream_size(frame[:4096]) == (128, 96)
    assert load_image(good[ts]).pixels.shape == (128, 96)


def test_compression_ratio_limit() -> None:
    from inference.imaging.limits import PixelElement

    ds = mg_dataset(4000, 3000, 16, "1.2.840.10008.1.2.4.90")
    with pytest.raises(LimitExceededError, match=r"ratio of 2400:1, over the limit of 1000:1 \(raise it with "
                                                 r"MAMMO_MAX_COMPRESSION_RATIO or --max-compression-ratio\)"):
        check_pixel_claim(ds, PixelElement(10_000, True), ds.file_meta.TransferSyntaxUID)
    relaxed = Limits(max_compression_ratio=3000)
    check_pixel_claim(ds, PixelElement(10_000, True), ds.file_meta.TransferSyntaxUID, relaxed)
    check_pixel_claim(ds, None, ds.file_meta.TransferSyntaxUID)  # no pixel data: nothing to check


def test_limits_from_env() -> None:
    assert limits_from_env({}) == Limits()
    env = {"MAMMO_MAX_PIXELS": "2e8", "MAMMO_MAX_INFLATED_MB": "1024", "MAMMO_MAX_COMPRESSION_RATIO": "50"}
    got = limits_from_env(env)
    assert got == Limits(max_pixels=200_000_000, max_compression_ratio=50.0, max_inflated_mb=1024)
    with pytest.raises(ValueError, match="MAMMO_MAX_PIXELS"):
        limits_from_env({"MAMMO_MAX_PIXELS": "many"})
    with pytest.raises(ValueError, match="at least 1"):
        limits_from_env({"MAMMO_MAX_INFLATED_MB": "0"})
    assert np.isfinite(Limits().max_compression_ratio)


def test_fragments_claiming_more_than_the_file_holds(tmp_path: Path) -> None:
    from inference.imaging.limits import pixel_element

    path = write_rle(tmp_path / "short.dcm", 64, 64, 16, rle_frame([b"\x81\x00" * 32, b"\x81\x00" * 32]))
    data = bytearray(path.read_bytes())
    at = data.rfind(b"\xfe\xff\x00\xe0")  # the frame's item: claim 10 MB
    data[at + 4: at + 8] = struct.pack("<I", 10 << 20)
    path.write_bytes(bytes(data))

    with open(path, "rb") as fp:
        ds = dcmread(fp, stop_before_pixels=True)
        element = pixel_element(fp, ds)
    assert element is not None and element.encapsulated and element.stored_bytes < 1024


def test_odd_header_values_raise_no_warning(good: dict[str, Path], tmp_path: Path) -> None:
    data = good["explicit"].read_bytes()
    syntax = b"1.2.840.10008.1.2.1\x00"
    assert data.count(syntax) == 1
    odd = tmp_path / "odd.dcm"
    odd.write_bytes(data.replace(syntax, b"1.2.840.1|008.1.2.1\x00"))
    check_file(odd)  # pydicom's "Invalid value for VR UI" stays silent (under pytest a warning is an error)
