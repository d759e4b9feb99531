"""Decoded images from the decode workers through shared memory: the same numbers, nothing left behind."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.errors import ImageReadError
from inference.imaging import transfer
from inference.imaging.decode import load_image
from inference.imaging.isolation import DecodePool
from inference.phantoms import generator as phantom


def _value() -> dict[str, object]:
    rng = np.random.default_rng(5)
    pixels = rng.random((700, 500), dtype=np.float32)
    return {"pixels": pixels, "raw": np.arange(350_000, dtype=np.float32), "name": "x"}


def test_a_large_result_goes_through_a_file_that_the_parent_removes(tmp_path: Path) -> None:
    value = _value()
    owner = transfer.new_owner()
    message = transfer.pack(("ok", value), owner, directory=tmp_path)
    assert message[0] == transfer.MAPPED and len(message[1]) < 2000  # the pickle without its arrays
    assert len(list(tmp_path.iterdir())) == 1
    got = transfer.unpack(message, owner, os.getpid(), directory=tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert got["name"] == "x"
    for k in ("pixels", "raw"):
        np.testing.assert_array_equal(got[k], value[k])
        assert got[k].dtype == np.float32 and got[k].flags.writeable
    got["pixels"][0, 0] = 7.0  # a private copy: writing changes nothing elsewhere


def test_small_results_and_no_directory_use_the_pipe(tmp_path: Path) -> None:
    small = ("ok", {"a": np.zeros(100, np.float32)})
    assert transfer.pack(small, "1-0", directory=tmp_path) is small
    assert transfer.pack(("ok", _value()), "1-0", directory=None)[0] == "ok"
    assert transfer.pack(("ok", _value()), "1-0", directory=tmp_path / "missing")[0] == "ok"  # cannot write: pipe
    assert list(tmp_path.iterdir()) == []


def test_a_name_that_is_not_this_workers_is_refused_and_left_alone(tmp_path: Path) -> None:
    owner = transfer.new_owner()
    message = transfer.pack(("ok", _value()), owner, directory=tmp_path)
    (kept,) = tmp_path.iterdir()
    for forged in (
        (message[0], message[1], "labels.sqlite", message[3]),
        (message[0], message[1], "../" + message[2], message[3]),
    ):
        with pytest.raises(ValueError):
            transfer.unpack(forged, owner, os.getpid(), directory=tmp_path)
    with pytest.raises(ValueError):  # another worker's
        transfer.unpack(message, owner, os.getpid() + 1, directory=tmp_path)
    with pytest.raises(ValueError):  # another pool's
        transfer.unpack(message, transfer.new_owner(), os.getpid(), directory=tmp_path)
    assert kept.exists()


def test_sweep_removes_a_pools_files_and_those_of_ended_processes(tmp_path: Path) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(ended.stdout)
    mine, other = transfer.new_owner(), transfer.new_owner()
    names = [f"mammo-decode-{mine}-1-0", f"mammo-decode-{other}-1-0", f"mammo-decode-{dead}-0-1-0", "unrelated"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    assert transfer.sweep(mine, directory=tmp_path) == 1
    assert transfer.sweep(None, directory=tmp_path) == 1  # the ended process's; this process still runs
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names[1], "unrelated"])


def _shm_files() -> set[Path]:
    return set() if transfer.SHM_DIR is None else set(transfer.SHM_DIR.glob("mammo-decode-*"))


def test_a_pool_hands_large_images_over_in_shared_memory(tmp_path: Path) -> None:
    """Where there is /dev/shm (Linux); elsewhere the same numbers come through the pipe."""
    spec = phantom.PhantomSpec("L", "MLO", shape=(1800, 1400), seed=4)
    path = phantom.write_dicom(tmp_path / "big.dcm", phantom.render(spec), spec=spec, bits_stored=16)
    before = _shm_files()
    with DecodePool(workers=1) as pool:
        got = pool.load(path)
        left = _shm_files() - before
    want = load_image(path)
    np.testing.assert_array_equal(got.pixels, want.pixels)
    np.testing.assert_array_equal(got.raw, want.raw)
    base = got.pixels
    while isinstance(base, np.ndarray):
        base = base.base
    mapped = isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
    assert mapped == (transfer.SHM_DIR is not None)  # mapped, not a copy from the pipe, where it can be
    assert left == set()


def _large(source: object) -> np.ndarray:  # a decode function for the pool (module level: pickled)
    return np.full((1000, 1000), 3.0, np.float32)


@pytest.mark.skipif(transfer.SHM_DIR is None, reason="no /dev/shm on this platform: results go through the pipe")
def test_a_result_that_cannot_be_taken_is_that_files_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "x.dcm"
    with DecodePool(workers=1, decode=_large) as pool:
        assert float(pool.load(source)[0, 0]) == 3.0  # through shared memory
        real = transfer.unpack

        def gone(*args: object, **kwargs: object) -> object:
            raise FileNotFoundError(2, "No such file or directory")

        monkeypatch.setattr(transfer, "unpack", gone)
        with pytest.raises(ImageReadError, match="could not be taken from shared memory"):
            pool.load(source)
        monkeypatch.setattr(transfer, "unpack", real)
        assert float(pool.load(source)[0, 0]) == 3.0  # the pool goes on
    assert not list(transfer.SHM_DIR.glob(f"mammo-decode-{os.getpid()}-*"))  # the abandoned file was swept
