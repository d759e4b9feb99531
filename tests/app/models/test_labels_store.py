"""The labels state tells the user at once when the label store cannot be used (issue 13): an empty
or foreign file, a damaged journal, read-only media; nothing is opened silently, no label is lost."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from app.models.labels import LabelsState
from app.models.settings import Settings
from app.models.state import AppState
from inference.labels import storefile
from inference.labels.store import LabelStore


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (name TEXT)")
    conn.commit()
    conn.close()


def _damaged_journal(path: Path) -> None:
    live = path.with_name("live.sqlite")
    store = LabelStore(live)
    for i in range(12):
        store.set_label(f"k{i}", "view", "CC", annotator="dr-a")
    shutil.copyfile(live, path)
    data = bytearray(Path(f"{live}-wal").read_bytes())
    store.close()
    data[32 + 24 + 100] ^= 0xFF  # the first frame's page: every later commit would be dropped
    Path(f"{path}-wal").write_bytes(bytes(data))


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (_empty, "empty (0 bytes): not a label store"),
    "foreign": (_foreign, "another program"),
    "damaged journal": (_damaged_journal, "labels.sqlite-wal is damaged"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unusable_store_is_told_at_once_and_nothing_is_saved_silently(
    case: str, make_state: Callable[..., AppState], settings: Settings, tmp_path: Path
) -> None:
    make, reason = CASES[case]
    path = tmp_path / "store" / "labels.sqlite"
    path.parent.mkdir()
    make(path)
    before = path.read_bytes()
    settings.store_path = path
    state = make_state()
    messages: list[tuple[str, str]] = []
    state.activity.message.connect(lambda level, text: messages.append((level, text)))
    labels = LabelsState(state)
    try:
        assert labels.store is None
        assert reason in labels.store_error and str(path) in labels.store_error
        assert messages and messages[-1][0] == "error" and reason in messages[-1][1]
        assert path.read_bytes() == before  # not opened as a new empty store, not changed
    finally:
        labels.close()


def test_read_only_media_is_told_at_once(
    make_state: Callable[..., AppState], settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.statvfs

    class ReadOnly:
        def __init__(self, probe: object) -> None:
            self.f_flag = real(probe).f_flag | os.ST_RDONLY  # type: ignore[arg-type]

    monkeypatch.setattr(storefile.os, "statvfs", ReadOnly)
    settings.store_path = tmp_path / "labels.sqlite"
    labels = LabelsState(make_state())
    try:
        assert labels.store is None and "on read-only media" in labels.store_error
    finally:
        labels.close()
