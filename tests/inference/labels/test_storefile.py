"""The label store refuses what SQLite would open silently: empty and foreign files, a damaged
write-ahead log, read-only media (issue 13)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest

from inference.errors import LabelStoreError
from inference.labels import storefile
from inference.labels.store import LabelStore
from inference.labels.storefile import check_wal

ACTIONS = 20


def test_empty_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    path.write_bytes(b"")
    with pytest.raises(LabelStoreError, match=r"empty \(0 bytes\): not a label store") as info:
        LabelStore(path)
    assert info.value.path == path and str(path) in str(info.value)
    assert path.stat().st_size == 0 and not path.with_name("labels.sqlite-wal").exists()


def test_foreign_sqlite_database_is_refused_and_not_changed(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('x')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(LabelStoreError, match="another program .*customers.*not a label store") as info:
        LabelStore(path)
    assert info.value.path == path
    assert path.read_bytes() == before


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    path.write_bytes(b"PK\x03\x04 a zip file, say")
    with pytest.raises(LabelStoreError, match=r"not a label store \(not an SQLite database\)"):
        LabelStore(path)


def _snapshot_with_wal(tmp_path: Path) -> Path:
    """A store with ACTIONS saved changes still in its write-ahead log (copied while it was open, as
    after a crash: closing the store would checkpoint the log into the database)."""
    live = tmp_path / "live" / "labels.sqlite"
    store = LabelStore(live)
    for i in range(ACTIONS):
        store.set_label(f"key-{i:03d}", "malignancy", "malignant", 0.5, annotator="dr-a")
    snap = tmp_path / "snap"
    snap.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(str(live) + suffix, snap / f"labels.sqlite{suffix}")
    store.close()
    return snap / "labels.sqlite"


def _wal_frames(wal: Path) -> tuple[int, int]:
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    return page_size, (len(data) - 32) // (24 + page_size)


def _copy(path: Path, to: Path) -> Path:
    to.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(str(path) + suffix, to / f"{path.name}{suffix}")
    return to / path.name


def test_intact_wal_opens_with_every_saved_change(tmp_path: Path) -> None:
    path = _snapshot_with_wal(tmp_path)
    found = check_wal(path.with_name("labels.sqlite-wal").read_bytes())
    assert not found.damaged and found.frames > ACTIONS
    with LabelStore(path) as store:
        assert len(store.labels()) == ACTIONS


def test_damaged_wal_is_reported_never_silently_dropped(tmp_path: Path) -> None:
    path = _snapshot_with_wal(tmp_path)
    wal = path.with_name("labels.sqlite-wal")
    page_size, frames = _wal_frames(wal)
    assert frames > 10
    damaged_frame = frames // 3
    data = bytearray(wal.read_bytes())
    at = 32 + damaged_frame * (24 + page_size) + 24 + page_size // 2
    data[at : at + 16] = bytes(b ^ 0xFF for b in data[at : at + 16])
    wal.write_bytes(bytes(data))
    # what SQLite alone does with this log: opens it and silently drops the changes after the damage
    bare = _copy(path, tmp_path / "bare")
    conn = sqlite3.connect(bare)
    kept = conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    conn.close()
    assert kept < ACTIONS
    before = wal.read_bytes()
    with pytest.raises(LabelStoreError, match=r"journal labels.sqlite-wal is damaged .*saved change") as info:
        LabelStore(path)
    assert info.value.path == path and f"frame {damaged_frame}" in str(info.value)
    assert wal.read_bytes() == before  # left as it was, for recovery


def test_damaged_wal_header_is_reported(tmp_path: Path) -> None:
    path = _snapshot_with_wal(tmp_path)
    wal = path.with_name("labels.sqlite-wal")
    data = bytearray(wal.read_bytes())
    data[16] ^= 0xFF  # salt-1: the header checksum fails, SQLite would ignore the whole log
    wal.write_bytes(bytes(data))
    with pytest.raises(LabelStoreError, match="header fails its checksum"):
        LabelStore(path)


def test_read_only_media_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "labels.sqlite"
    LabelStore(path).close()
    real = os.statvfs

    class ReadOnly:
        def __init__(self, probe: object) -> None:
            self.f_flag = real(probe).f_flag | os.ST_RDONLY  # type: ignore[arg-type]

    monkeypatch.setattr(storefile.os, "statvfs", ReadOnly)  # a file system mounted read-only
    with pytest.raises(LabelStoreError, match="on read-only media") as info:
        LabelStore(path)
    assert info.value.path == path
    with pytest.raises(LabelStoreError, match="on read-only media"):
        LabelStore(tmp_path / "new" / "labels.sqlite")  # a new store on that medium too


def test_damaged_database_fails_quick_check(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        for i in range(200):
            store.set_label(f"key-{i:04d}-{'x' * 100}", "view", "CC", annotator="dr-a")
    conn = sqlite3.connect(path)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'history_key'").fetchone()
    conn.close()
    data = bytearray(path.read_bytes())
    page_size = struct.unpack(">H", data[16:18])[0]
    data[(root - 1) * page_size] = 0xFF  # the index's root page gets an invalid page type: nothing else reads it
    path.write_bytes(bytes(data))
    with pytest.raises(LabelStoreError, match=r"damaged \(SQLite quick_check") as info:
        LabelStore(path)
    assert info.value.path == path
