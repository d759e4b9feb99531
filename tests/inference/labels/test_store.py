"""The label store: durability, schema versions, failures, undo/redo, several annotators."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from inference.errors import LabelStoreError
from inference.labels.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    CombinedLabel,
    LabelEdit,
    LabelRecord,
    LabelState,
    LabelStore,
    combine,
    default_store_path,
)


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    s = LabelStore(tmp_path / "labels.sqlite")
    yield s
    s.close()


def test_settings_are_durable(store: LabelStore) -> None:
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION[0] << 16 | SCHEMA_VERSION[1]


_WRITER = r"""
import sys, time
from inference.labels.store import LabelStore
store = LabelStore(sys.argv[1])
store.set_label("1.2.3.4", "malignancy", "malignant", 0.7, annotator="dr-a")
print("committed", flush=True)
time.sleep(60)
"""


def test_label_survives_kill_right_after_commit(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "committed"
        proc.kill()  # SIGKILL on POSIX: no clean-up, no checkpoint
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    with LabelStore(path) as store:
        rec = store.label("1.2.3.4", "malignancy", "dr-a")
        assert rec is not None and (rec.value, rec.confidence, rec.status) == ("malignant", 0.7, "confirmed")
        assert len(store.history("1.2.3.4")) == 1


def _make_v1(path: Path) -> None:
    """A version 1.0 store as the first release wrote it, by hand."""
    conn = sqlite3.connect(path)
    MIGRATIONS[0][1](conn)
    conn.execute(
        "INSERT INTO labels VALUES"
        " ('k1', 'dr-a', 'density', 'B', 0.9, 'confirmed', 'person', '', '2024-01-01T00:00:00.000000Z')"
    )
    conn.execute(
        "INSERT INTO history (key, annotator, task, old_present, new_present, new_value, new_confidence, new_status,"
        " source, model_version, time) VALUES ('k1', 'dr-a', 'density', 0, 1, 'B', 0.9, 'confirmed', 'person', '',"
        " '2024-01-01T00:00:00.000000Z')"
    )
    conn.execute(f"PRAGMA user_version = {1 << 16}")
    conn.commit()
    conn.close()


def test_v1_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _make_v1(path)
    with LabelStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert [(r.key, r.value, r.confidence) for r in store.labels()] == [("k1", "B", 0.9)]
        (entry,) = store.history()
        assert entry.action > 0 and entry.kind == "edit" and entry.new == LabelState("B", 0.9)
        assert not store.can_undo("dr-a")  # pre-migration edits are history, not undo steps
        store.set_label("k1", "density", "C", 0.5, annotator="dr-a")
        store.undo("dr-a")
        assert store.label("k1", "density", "dr-a").value == "B"
        # migrations are re-runnable
        for _version, step in MIGRATIONS:
            step(store._conn)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION[0] << 16 | SCHEMA_VERSION[1]
    conn.close()


_T = "2025-03-01T10:00:00.000000Z"


def _make_v2_1(path: Path) -> None:
    """A 2.1 store as the previous release wrote it: one Accept of dr-a where the person set ACR and
    left malignancy to the model, which was stored as a *confirmed* label with source ``model``."""
    conn = sqlite3.connect(path)
    for version, step in MIGRATIONS:
        if version <= (2, 1):
            step(conn)
    action = conn.execute("INSERT INTO actions (annotator, kind, time) VALUES ('dr-a', 'edit', ?)", (_T,)).lastrowid
    for task, value, conf, source in (("acr", "4", 0.9, "person"), ("malignancy", "benign", 0.98, "model")):
        conn.execute(
            "INSERT INTO labels VALUES ('k1', 'dr-a', ?, ?, ?, 'confirmed', ?, '1.0', ?)",
            (task, value, conf, source, _T),
        )
        conn.execute(
            "INSERT INTO history (action, key, annotator, task, old_present, new_present, new_value, new_confidence,"
            " new_status, source, model_version, time)"
            " VALUES (?, 'k1', 'dr-a', ?, 0, 1, ?, ?, 'confirmed', ?, '1.0', ?)",
            (action, task, value, conf, source, _T),
        )
    # another image the person only pressed Enter on: every label was the model's guess
    conn.execute("INSERT INTO labels VALUES ('k2', 'dr-a', 'density', 'B', 0.6, 'confirmed', 'model', '1.0', ?)", (_T,))
    conn.execute("INSERT INTO undo_stack VALUES ('dr-a', 'undo', 1, ?)", (action,))
    conn.execute(f"PRAGMA user_version = {2 << 16 | 1}")
    conn.commit()
    conn.close()


def test_v2_store_migrates_model_guesses_to_suggestions(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    _make_v2_1(path)
    with LabelStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION >= (3, 0)
        got = {(r.key, r.task): (r.value, r.status, r.source) for r in store.labels()}
        assert got == {
            ("k1", "acr"): ("4", "confirmed", "person"),
            ("k1", "malignancy"): ("benign", "suggested", "model"),
            ("k2", "density"): ("B", "suggested", "model"),
        }
        assert store.reviewed_keys() == {"k1"}  # k2 had no label a person gave
        assert "malignancy" not in store.combined("k1") and store.combined("k2") == {}
        migrated = [h for h in store.history() if h.kind == "migration"]
        assert {(h.key, h.task) for h in migrated} == {("k1", "malignancy"), ("k2", "density")}
        assert all(h.old == LabelState(h.old.value, h.old.confidence, "confirmed") for h in migrated if h.old)
        assert all(h.new is not None and h.new.status == "suggested" for h in migrated)
        # undo and redo of the pre-migration Accept never bring the guess back as a label
        assert store.undo("dr-a") is not None and store.labels("k1") == []
        assert store.redo("dr-a") is not None
        assert store.label("k1", "malignancy", "dr-a").status == "suggested"
        assert store.label("k1", "acr", "dr-a").status == "confirmed"
    with LabelStore(path) as again:  # opening again changes nothing more
        assert len([h for h in again.history() if h.kind == "migration"]) == 2


def test_newer_major_version_is_refused_newer_minor_opens(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    LabelStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {(SCHEMA_VERSION[0] + 1) << 16}")
    conn.commit()
    conn.close()
    with pytest.raises(LabelStoreError, match="newer") as info:
        LabelStore(path)
    assert str(path) in str(info.value)

    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION[0] << 16 | 7}")
    conn.commit()
    conn.close()
    with LabelStore(path) as store:
        assert store.schema_version == (SCHEMA_VERSION[0], 7)
        store.set_label("k", "view", "CC", annotator="a")


def test_images_are_remembered(store: LabelStore, tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Rec:
        key: str
        path: Path
        kind: str = "dicom"
        patient_id: str = "P1"
        study_uid: str = "1.2.3"
        laterality: str = "L"

    store.remember_images([Rec("k1", tmp_path / "a.dcm"), Rec("k2", tmp_path / "b.dcm")])
    store.remember_images([Rec("k1", tmp_path / "moved.dcm")])
    got = store.images(["k1"])
    assert [(i.key, i.path, i.laterality) for i in got] == [("k1", (tmp_path / "moved.dcm").resolve(), "L")]
    assert len(store.images()) == 2


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LabelStoreError, match="not a label store") as info:
        LabelStore(path)
    assert info.value.path == path


_READ_ONLY = r"""
import sys
from inference.errors import LabelStoreError
from inference.labels.store import LabelStore
try:
    LabelStore(sys.argv[1])
except LabelStoreError as exc:
    print("ERROR", exc)
else:
    print("OPENED")
"""


def test_read_only_store_fails_at_once_naming_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    path = folder / "labels.sqlite"
    with LabelStore(path) as store:
        store.set_label("k", "view", "MLO", annotator="a")
    os.chmod(path, 0o444)
    os.chmod(folder, 0o555)
    try:
        cmd = [sys.executable, "-c", _READ_ONLY, str(path)]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # root ignores permission bits: run the check without the capabilities that allow it
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv: cannot make a file read-only for this process")
            cmd = [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    finally:
        os.chmod(folder, 0o755)
        os.chmod(path, 0o644)
    assert out.startswith("ERROR"), out
    assert str(path) in out and "read-only" in out


def test_write_while_locked_by_another_writer_fails_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    store = LabelStore(path, busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LabelStoreError, match="locked") as info:
            store.set_label("k", "malignancy", "benign", annotator="a")
        assert info.value.path == path
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.set_label("k", "malignancy", "benign", annotator="a")  # works again once released
    assert store.label("k", "malignancy", "a") is not None
    store.close()


def test_full_disk_fails_naming_the_file_and_keeps_earlier_labels(store: LabelStore) -> None:
    store.set_label("k0", "view", "CC", annotator="a")
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk is full" (SQLITE_FULL)
    with pytest.raises(LabelStoreError, match="disk is full") as info:
        for i in range(2000):
            edits = [LabelEdit(f"key-{i}-{'x' * 200}", t, None, 0.0) for t in ("malignancy", "acr")]
            store.set_labels(edits, annotator="a")
    assert info.value.path == store.path
    assert store.label("k0", "view", "a") is not None  # the failed transaction changed nothing before it


def test_invalid_labels_are_rejected(store: LabelStore) -> None:
    with pytest.raises(ValueError, match="not one of"):
        store.set_label("k", "density", "E", annotator="a")
    with pytest.raises(ValueError, match="outside"):
        store.set_label("k", "density", "A", 1.5, annotator="a")
    with pytest.raises(ValueError, match="unknown task"):
        store.set_label("k", "age", "A", annotator="a")
    with pytest.raises(ValueError, match="annotator"):
        store.set_label("k", "density", "A", annotator=" ")
    assert store.labels() == [] and store.history() == []


def test_undo_redo_per_annotator_never_deletes_history(store: LabelStore) -> None:
    store.set_labels([LabelEdit("k", "malignancy", "malignant", 0.8), LabelEdit("k", "view", "CC")], annotator="a")
    store.set_label("k", "malignancy", None, 0.3, annotator="a")  # "unknown"
    store.set_label("k", "malignancy", "benign", 0.9, annotator="b")
    assert store.label("k", "malignancy", "a").value is None

    store.undo("a")
    assert store.label("k", "malignancy", "a").state == LabelState("malignant", 0.8)
    assert store.label("k", "malignancy", "b").value == "benign"  # b untouched
    store.undo("a")  # the first action: both tasks disappear
    assert store.labels(annotator="a") == []
    assert store.undo("a") is None and not store.can_undo("a")
    assert store.can_undo("b")

    store.redo("a")
    assert {r.task: r.value for r in store.labels(annotator="a")} == {"malignancy": "malignant", "view": "CC"}
    store.redo("a")
    assert store.label("k", "malignancy", "a").value is None
    assert store.redo("a") is None

    hist = store.history(annotator="a")
    assert [h.kind for h in hist] == ["edit", "edit", "edit", "undo", "undo", "undo", "redo", "redo", "redo"]
    undo_row = hist[3]
    assert undo_row.old == LabelState(None, 0.3) and undo_row.new == LabelState("malignant", 0.8)
    assert undo_row.reverts == hist[2].action

    store.undo("a")
    store.set_label("k", "view", "MLO", annotator="a")  # a new edit clears the redo stack
    assert not store.can_redo("a")


def test_undo_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        store.set_label("k", "acr", "4", 0.6, annotator="a")
        store.set_label("k", "acr", "5", 0.6, annotator="a")
    with LabelStore(path) as store:
        store.undo("a")
        assert store.label("k", "acr", "a").value == "4"


def test_per_edit_source(store: LabelStore) -> None:
    store.set_labels(
        [LabelEdit("k", "view", "CC"), LabelEdit("k", "density", "B", 0.7, source="model-confirmed")],
        annotator="a",
        model_version="1.2",
    )
    got = {(r.task, r.source, r.model_version) for r in store.labels()}
    assert got == {("view", "person", "1.2"), ("density", "model-confirmed", "1.2")}
    with pytest.raises(ValueError, match="source"):
        store.set_labels([LabelEdit("k", "view", "CC", source="oracle")], annotator="a")
    with pytest.raises(ValueError, match="not a label"):  # the model's guess is never a confirmed label
        store.set_labels([LabelEdit("k", "acr", "2", 0.6, source="model")], annotator="a")
    store.set_labels([LabelEdit("k", "acr", "2", 0.6, status="suggested", source="model")], annotator="a")
    assert store.reviewed_keys() == {"k"} and store.combined("k").get("acr") is None


def test_unchanged_edit_adds_nothing(store: LabelStore) -> None:
    assert store.set_label("k", "view", "CC", annotator="a") > 0
    assert store.set_label("k", "view", "CC", annotator="a") == 0
    assert len(store.history()) == 1


def test_secret_and_id_are_stable(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as s1:
        secret, sid = s1.secret, s1.store_id
    with LabelStore(path) as s2:
        assert (s2.secret, s2.store_id) == (secret, sid) and len(secret) == 32


def test_default_path_follows_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "mammo-review" / "labels.sqlite"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "roaming"))
    assert default_store_path() == tmp_path / "roaming" / "mammo-review" / "labels.sqlite"


def _rec(
    annotator: str, task: str, value: str | None, conf: float, status: str = "confirmed", source: str = "person"
) -> LabelRecord:
    return LabelRecord("k", annotator, task, value, conf, status, source, "", "2025-01-01T00:00:00.000000Z")


def test_combination_confidence_weighted_vote() -> None:
    out = combine(
        [
            _rec("a", "malignancy", "malignant", 0.9),
            _rec("b", "malignancy", "benign", 0.6),
            _rec("c", "malignancy", "malignant", 0.5),
            _rec("d", "malignancy", None, 0.2),  # abstains
        ]
    )
    m = out["malignancy"]
    assert m.value == "malignant"
    assert m.uncertainty == pytest.approx(1 - (0.9 + 0.5) / 3)
    assert (m.votes, m.abstentions, m.annotators) == (3, 1, ("a", "b", "c", "d"))

    agree = combine([_rec("a", "view", "CC", 1.0), _rec("b", "view", "CC", 1.0)])["view"]
    assert agree == CombinedLabel("CC", 0.0, ("a", "b"), 2, 0)
    # disagreement raises uncertainty even with full confidence
    split = combine([_rec("a", "view", "CC", 1.0), _rec("b", "view", "MLO", 1.0)])["view"]
    assert split.uncertainty == pytest.approx(0.5) and split.value == "CC"  # tie -> class order


def test_combination_suggestions_only_without_confirmed_and_never_from_model() -> None:
    sug = combine([_rec("manifest", "density", "B", 0.8, "suggested", "manifest"), _rec("a", "density", "C", 0.7)])
    assert sug["density"].value == "C" and sug["density"].annotators == ("a",)
    only_sug = combine([_rec("manifest", "density", "B", 0.8, "suggested", "manifest")])
    assert only_sug["density"] == CombinedLabel("B", pytest.approx(0.2), ("manifest",), 1, 0, "suggested")
    assert combine([_rec("model", "density", "B", 0.8, "suggested", "model")]) == {}
    assert combine([_rec("a", "acr", None, 0.5)])["acr"] == CombinedLabel(None, 1.0, ("a",), 0, 1)


def test_store_keeps_annotators_apart_and_combines(store: LabelStore) -> None:
    store.set_label("k", "density", "C", 0.9, annotator="a")
    store.set_label("k", "density", "D", 0.4, annotator="b")
    assert {r.annotator: r.value for r in store.labels("k")} == {"a": "C", "b": "D"}
    c = store.combined("k")["density"]
    assert c.value == "C" and c.uncertainty == pytest.approx(1 - 0.9 / 2)
    assert store.reviewed_keys() == {"k"} and store.reviewed_keys("c") == set()
    assert store.annotators() == ["a", "b"]
