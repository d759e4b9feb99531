"""DecodePool: a panic, a segfault, an abort, an out-of-memory or a timeout costs one file, not the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inference.errors import ImageReadError, NotAnImageError
from inference.imaging.decode import LoadedImage, load_image
from inference.imaging.isolation import DecodePool, Source, settings_from_env
from inference.imaging.studies import read_record
from inference.phantoms import generator as phantom
from inference.phantoms.hostile import good_rle, panic_rle

LINUX = sys.platform.startswith("linux")


# Test-only decode functions, injected through DecodePool(decode=...): the file's name says what to do.
def _hostile(source: Source) -> LoadedImage:
    name = Path(source if not hasattr(source, "path") else source.path).name  # type: ignore[union-attr]
    if name.startswith("segv"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("abort"):
        os.abort()
    if name.startswith("hog"):
        _ = np.ones(1 << 30, dtype=np.uint8)  # 1 GiB, over a 256 MB cap
    if name.startswith("sleep"):
        time.sleep(60)
    if name.startswith("oops"):
        raise KeyError("not a decoder error type")
    return load_image(source)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("isolation")
    spec = phantom.PhantomSpec("R", "CC", shape=(96, 72), seed=2)
    image = phantom.render(spec)
    out = {
        "explicit": phantom.write_dicom(folder / "explicit.dcm", image, spec=spec),
        "rle": phantom.write_dicom(folder / "rle.dcm", image, spec=spec, transfer_syntax="rle"),
        "j2k": phantom.write_dicom(folder / "j2k.dcm", image, spec=spec, transfer_syntax="jpeg2000"),
        "panic": panic_rle(folder / "panic.dcm"),
        "small_rle": good_rle(folder / "small_rle.dcm"),
        "sr": phantom.write_non_image_dicom(folder / "sr.dcm"),
    }
    for name in ("segv", "abort", "hog", "sleep", "oops"):
        out[name] = phantom.write_dicom(folder / f"{name}.dcm", image, spec=spec)
    return out


@pytest.fixture(scope="module")
def pool() -> Iterator[DecodePool]:
    with DecodePool(workers=2, memory_limit_mb=256, timeout_s=20, decode=_hostile) as p:
        yield p


def _same(a: LoadedImage, b: LoadedImage) -> None:
    assert a.record == b.record
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.raw, b.raw)
    assert (a.windows, a.window_applied, a.inverted) == (b.windows, b.window_applied, b.inverted)
    assert (a.chest_wall_right, a.pixel_laterality, a.pixel_spacing_mm) == (
        b.chest_wall_right, b.pixel_laterality, b.pixel_spacing_mm)


def test_the_rle_file_really_panics_in_process(files: dict[str, Path]) -> None:
    code = (
        "import sys\nfrom inference.imaging.decode import load_image\n"
        "try:\n    load_image(sys.argv[1])\n"
        "except Exception as e:\n    print('EXCEPTION', type(e).__name__)\n"
        "except BaseException as e:\n    print('BASE', type(e).__name__)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3]), RUST_BACKTRACE="0")
    run = subprocess.run([sys.executable, "-c", code, str(files["panic"])], capture_output=True, text=True,
                         env=env, timeout=120)
    assert "BASE PanicException" in run.stdout, run.stdout + run.stderr


def test_good_files_decode_as_in_process(pool: DecodePool, files: dict[str, Path]) -> None:
    for name in ("explicit", "rle", "j2k", "small_rle"):
        _same(pool.load(files[name]), load_image(files[name]))
    record = read_record(files["explicit"])
    _same(pool.load(record), load_image(record))


def test_a_panic_is_that_files_error(pool: DecodePool, files: dict[str, Path]) -> None:
    with pytest.raises(ImageReadError, match=r"the decoder panicked \(PanicException: index out of bounds") as info:
        pool.load(files["panic"])
    assert info.value.path == files["panic"]
    _same(pool.load(files["explicit"]), load_image(files["explicit"]))


@pytest.mark.parametrize(("name", "reason"), [("segv", r"signal 11, SIGSEGV"), ("abort", r"signal 6, SIGABRT")])
def test_a_crash_is_that_files_error_and_the_worker_is_replaced(
    pool: DecodePool, files: dict[str, Path], name: str, reason: str
) -> None:
    before = pool.replaced
    with pytest.raises(ImageReadError, match=rf"the decoder crashed \({reason}\)") as info:
        pool.load(files[name])
    assert ("raise the 256 MB decode limit" in info.value.reason) == (name == "abort")
    assert pool.replaced == before + 1
    _same(pool.load(files["rle"]), load_image(files["rle"]))


@pytest.mark.skipif(not LINUX, reason="RLIMIT_AS is enforced on Linux only (documented)")
def test_out_of_memory_names_the_limit(pool: DecodePool, files: dict[str, Path]) -> None:
    with pytest.raises(ImageReadError, match=r"out of memory: over the 256 MB decode limit; raise it with "
                                             r"MAMMO_DECODE_MEMORY_MB or --decode-memory-mb"):
        pool.load(files["hog"])
    _same(pool.load(files["explicit"]), load_image(files["explicit"]))


def test_a_timeout_kills_the_decode(files: dict[str, Path]) -> None:
    with DecodePool(workers=1, timeout_s=1.5, decode=_hostile) as short:
        with pytest.raises(ImageReadError, match=r"decoding took over 1.5 s .*MAMMO_DECODE_TIMEOUT_S"):
            short.load(files["sleep"])
        assert short.replaced == 1
        _same(short.load(files["explicit"]), load_image(files["explicit"]))


def test_error_types_and_reasons_come_back(pool: DecodePool, files: dict[str, Path]) -> None:
    with pytest.raises(NotAnImageError) as info:
        pool.load(files["sr"])
    with pytest.raises(NotAnImageError) as here:
        load_image(files["sr"])
    assert info.value.reason == here.value.reason and "not an image" in info.value.reason
    assert info.value.path == files["sr"]
    with pytest.raises(ImageReadError, match=r"unexpected error in the decoder \(KeyError"):
        pool.load(files["oops"])


def test_map_streams_in_order_and_goes_on(pool: DecodePool, files: dict[str, Path]) -> None:
    order = ["explicit", "segv", "rle", "panic", "abort", "j2k", "sr", "explicit"]
    results = list(pool.map(files[n] for n in order))
    assert [src for src, _ in results] == [files[n] for n in order]
    for name, (_, result) in zip(order, results, strict=True):
        if name in ("explicit", "rle", "j2k"):
            assert isinstance(result, LoadedImage)
            _same(result, load_image(files[name]))
        else:
            assert isinstance(result, ImageReadError), name
    assert isinstance(results[6][1], NotAnImageError)


def test_map_stopped_early_leaves_the_pool_usable(pool: DecodePool, files: dict[str, Path]) -> None:
    stream = pool.map([files["explicit"]] * 6)
    next(stream)
    stream.close()
    _same(pool.load(files["rle"]), load_image(files["rle"]))


def test_settings_from_env() -> None:
    assert settings_from_env({}) == {}
    assert settings_from_env({"MAMMO_DECODE_MEMORY_MB": "4096", "MAMMO_DECODE_TIMEOUT_S": "0",
                              "MAMMO_DECODE_WORKERS": "3"}) == {"memory_limit_mb": 4096, "timeout_s": None,
                                                                "workers": 3}
    with pytest.raises(ValueError, match="MAMMO_DECODE_MEMORY_MB"):
        settings_from_env({"MAMMO_DECODE_MEMORY_MB": "lots"})
    with pytest.raises(ValueError, match="out of range"):
        settings_from_env({"MAMMO_DECODE_WORKERS": "0"})


def test_bad_arguments_and_closed_pool() -> None:
    with pytest.raises(ValueError, match="no fork"):
        DecodePool(context="fork")
    with pytest.raises(ValueError):
        DecodePool(workers=0)
    p = DecodePool(workers=1)
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.load("x.dcm")


def test_close_wakes_a_thread_waiting_for_a_worker(files: dict[str, Path]) -> None:
    pool = DecodePool(workers=1, timeout_s=60, decode=_hostile)
    results: dict[str, str] = {}

    def run(name: str) -> None:
        try:
            pool.load(files[name])
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test reads
            results[name] = type(exc).__name__

    busy = threading.Thread(target=run, args=("sleep",))
    busy.start()
    while not pool._all:  # the one worker is taken by the sleeping decode
        time.sleep(0.05)
    time.sleep(1.0)
    waiting = threading.Thread(target=run, args=("explicit",))
    waiting.start()
    time.sleep(0.5)
    pool.close()
    busy.join(30)
    waiting.join(30)
    assert results == {"sleep": "ImageReadError", "explicit": "RuntimeError"}


def test_start_spawns_every_worker_at_once_and_they_serve(files: dict[str, Path]) -> None:
    with DecodePool(workers=2) as pool:
        assert pool.start() == 2 and pool.start() == 0  # all started; a second call starts none
        assert len(pool._all) == 2 and all(w.alive() for w in pool._all)
        assert pool.load(files["explicit"]).pixels.size > 0
        assert len(pool._all) == 2  # the started workers served it: none more
    with pytest.raises(RuntimeError, match="closed"):
        pool.start()
