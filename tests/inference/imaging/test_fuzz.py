"""Fuzz: a few hundred mutated generated files through the header limits and the decode pool.

Every file ends as a decoded image or that file's ImageReadError with a reason; nothing escapes, and
the pool still decodes a good file afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inference.errors import ImageReadError
from inference.imaging.decode import LoadedImage, load_image
from inference.imaging.isolation import DecodePool
from inference.imaging.limits import check_file
from inference.phantoms import generator as phantom
from inference.phantoms.hostile import panic_rle

SYNTAXES = ("explicit", "deflate", "rle", "jpeg2000", "jpegls", "jpeg-lossless")
COUNT = 240


def _mutants(folder: Path) -> Iterator[Path]:
    spec = phantom.PhantomSpec("L", "MLO", shape=(64, 48), seed=11)
    image = phantom.render(spec)
    bases = [phantom.write_dicom(folder / f"base-{s}.dcm", image, spec=spec, transfer_syntax=s).read_bytes()
             for s in SYNTAXES]
    bases.append(panic_rle(folder / "base-panic.dcm").read_bytes())
    rng = np.random.default_rng(13)
    for i in range(COUNT):
        data = bytearray(bases[i % len(bases)])
        kind = rng.integers(0, 4)
        if kind == 3:  # truncated
            data = data[: int(rng.integers(132, len(data)))]
        else:
            start = 132 if kind == 0 else len(data) // 2  # anywhere, or in the pixel data's half
            for at in rng.integers(start, len(data), size=int(rng.integers(1, 9))):
                data[at] = int(rng.integers(0, 256))
        path = folder / f"m{i:03d}.dcm"
        path.write_bytes(bytes(data))
        yield path


@pytest.mark.slow
def test_mutated_files_end_as_images_or_reasons(tmp_path: Path) -> None:
    screened: list[Path] = []
    refused = 0
    for path in _mutants(tmp_path):
        try:
            check_file(path)
        except ImageReadError as exc:
            assert exc.reason and exc.path == path
            refused += 1
            continue
        screened.append(path)
    decoded = failed = 0
    reasons: list[str] = []
    with DecodePool(workers=2, memory_limit_mb=512, timeout_s=60) as pool:
        for path, result in pool.map(screened):
            if isinstance(result, LoadedImage):
                assert result.pixels.shape == (result.record.rows, result.record.cols)
                assert np.isfinite(result.pixels).all()
                decoded += 1
            else:
                assert isinstance(result, ImageReadError) and result.reason and result.path == path
                failed += 1
                reasons.append(result.reason)
        good = tmp_path / "base-rle.dcm"
        np.testing.assert_array_equal(pool.load(good).pixels, load_image(good).pixels)
    assert refused + decoded + failed == COUNT
    assert decoded and failed  # the mutations both spare and break files
    assert any("the decoder panicked" in r for r in reasons)  # mutants of the panic file still panic
