"""The label store: every label a person (or an import) gives, durable, with its full history.

One SQLite file in the user's data folder (:func:`default_store_path`), in WAL mode with
``synchronous=FULL`` so a label is on disk when :meth:`LabelStore.set_labels` returns. The schema
version lives in ``PRAGMA user_version`` as ``major << 16 | minor`` (qutebrowser's convention): a
newer *minor* version opens, a newer *major* version is refused, and older versions are migrated by
re-runnable steps.

- ``labels`` holds the current label per (image key, annotator, task).
- ``history`` is append-only: every change, undo and redo adds a row (annotator, UTC time, task,
  old -> new value, confidence, status, model version, source); nothing is ever deleted from it.
- ``actions`` groups the rows of one change; ``undo_stack`` keeps each annotator's undo and redo
  stacks, so undo and redo survive a restart and never touch another annotator's labels.

A label's value is a class name of :data:`formats.TASK_CLASSES` or ``None`` ("unknown", an explicit
abstention); its confidence is in [0, 1] and its uncertainty ``u = 1 - confidence``. Its status is
``"suggested"`` (pre-filled from a manifest or imported, not yet confirmed) or ``"confirmed"`` (a
person set it or explicitly confirmed a suggestion: only these are labels, see
:mod:`inference.labels.records`); the model's guesses are never stored as labels. Every failure to
open or write raises :class:`errors.LabelStoreError` naming the file
and the reason (read-only, disk full, locked by another writer, not a database, newer schema). Before
SQLite opens the file, :mod:`inference.labels.storefile` refuses what SQLite would open silently or
report vaguely (a 0-byte or foreign file, a damaged write-ahead log, read-only media); at open,
``PRAGMA quick_check`` must pass and the tables must be a label store's.
"""

from __future__ import annotations

import math
import os
import secrets
import sqlite3
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inference.errors import LabelStoreError
from inference.formats import TASK_CLASSES
from inference.labels.records import (
    LABEL_STATUSES,
    SOURCES,
    CombinedLabel,
    HistoryEntry,
    LabelEdit,
    LabelRecord,
    LabelState,
    StoredImage,
    combine,
    utc_now,
)
from inference.labels.schema import MIGRATIONS, SCHEMA_VERSION, version_int, version_tuple
from inference.labels.schema import reason as _reason
from inference.labels.storefile import check_before_open, folder_error

__all__ = [
    "SOURCES",
    "LABEL_STATUSES",
    "SCHEMA_VERSION",
    "MIGRATIONS",
    "LabelState",
    "LabelEdit",
    "LabelRecord",
    "HistoryEntry",
    "CombinedLabel",
    "StoredImage",
    "LabelStore",
    "combine",
    "default_store_path",
    "utc_now",
]

_APP_DIR = "mammo-review"


def default_store_path() -> Path:
    """``labels.sqlite`` in the platform's per-user data folder (no Qt needed).

    Windows: ``%APPDATA%\\mammo-review``; macOS: ``~/Library/Application Support/mammo-review``;
    elsewhere ``$XDG_DATA_HOME/mammo-review`` (``~/.local/share`` when unset).
    """
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / _APP_DIR / "labels.sqlite"



# --------------------------------------------------------------------------- the store
_LABEL_COLS = "key, annotator, task, value, confidence, status, source, model_version, time"
_HISTORY_COLS = (
    "h.id, h.action, h.key, h.annotator, h.task, h.old_present, h.old_value, h.old_confidence, h.old_status,"
    " h.new_present, h.new_value, h.new_confidence, h.new_status, h.source, h.model_version, h.time,"
    " a.kind, a.reverts, h.origin"
)


class LabelStore:
    """A label store file. Open with ``LabelStore(path)``; close with :meth:`close` (or ``with``).

    The constructor opens (creating folder and file when needed), migrates, and proves the file is
    writable by a durable write, so a store that cannot take labels fails at once.
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise folder_error(exc, self.path) from exc
        if self.path.is_dir():
            raise LabelStoreError("the label store path is a folder", self.path)
        check_before_open(self.path)  # empty or foreign file, damaged journal, read-only media
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise LabelStoreError(_reason(exc), self.path) from exc
        try:
            self._open()
        except LabelStoreError:
            self._conn.close()
            raise
        except sqlite3.Error as exc:
            self._conn.close()
            raise LabelStoreError(_reason(exc), self.path) from exc

    def _open(self) -> None:
        conn = self._conn
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        if problems != ["ok"]:
            raise LabelStoreError(f"the label store is damaged (SQLite quick_check: {'; '.join(problems)})", self.path)
        tables = {
            str(r[0])
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        }
        if tables and not {"meta", "labels", "history"} <= tables:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise LabelStoreError(
                f"the file is an SQLite database of another program (tables {shown}): not a label store", self.path
            )
        have = version_tuple(int(conn.execute("PRAGMA user_version").fetchone()[0]))
        if have[0] > SCHEMA_VERSION[0]:
            raise LabelStoreError(
                f"the label store has schema version {have[0]}.{have[1]}, newer than this program "
                f"understands ({SCHEMA_VERSION[0]}.x); update mammo-review",
                self.path,
            )
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        if mode != "wal":
            raise LabelStoreError(f"cannot switch the label store to WAL mode (journal mode is {mode})", self.path)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        with self._transaction():
            # Re-read inside the write lock: another process may have migrated meanwhile.
            have = version_tuple(int(conn.execute("PRAGMA user_version").fetchone()[0]))
            for version, step in MIGRATIONS:
                if version > have:
                    step(conn)
            if have < SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {version_int(*SCHEMA_VERSION)}")
            defaults = (("secret", secrets.token_hex(32)), ("store_id", str(uuid.uuid4())), ("created", utc_now()))
            for name, value in defaults:
                conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", (name, value))
            # A durable write proves the store can take labels (read-only / full disk fail here).
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('opened', ?)", (utc_now(),))
        self.schema_version: tuple[int, int] = max(have, SCHEMA_VERSION)
        self.secret: bytes = bytes.fromhex(self._meta("secret"))
        self.store_id: str = self._meta("store_id")

    # -- plumbing
    def _meta(self, name: str) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise LabelStoreError(f"the label store lacks its {name!r}", self.path)
        return str(row[0])

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE takes the write lock up front); errors -> LabelStoreError."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise LabelStoreError(_reason(exc), self.path) from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error):
                    raise LabelStoreError(_reason(exc), self.path) from exc
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise LabelStoreError(_reason(exc), self.path) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- validation
    @staticmethod
    def _check(edit: LabelEdit, annotator: str, source: str) -> None:
        if edit.task not in TASK_CLASSES:
            raise ValueError(f"unknown task {edit.task!r} (expected one of {', '.join(TASK_CLASSES)})")
        if edit.value is not None and edit.value not in TASK_CLASSES[edit.task]:
            raise ValueError(f"{edit.task} label {edit.value!r} is not one of {', '.join(TASK_CLASSES[edit.task])}")
        if not (0.0 <= edit.confidence <= 1.0) or math.isnan(edit.confidence):
            raise ValueError(f"confidence {edit.confidence} is outside [0, 1]")
        if edit.status not in LABEL_STATUSES:
            raise ValueError(f"status {edit.status!r} is not one of {', '.join(LABEL_STATUSES)}")
        if source not in SOURCES:
            raise ValueError(f"source {source!r} is not one of {', '.join(SOURCES)}")
        if edit.status == "confirmed" and source == "model":
            raise ValueError("the model's suggestion is not a label: a person confirms it (source 'model-confirmed')")
        if not annotator.strip():
            raise ValueError("a label needs an annotator name")
        if not edit.key:
            raise ValueError("a label needs an image key")

    # -- low-level apply (inside a transaction)
    def _current(self, key: str, annotator: str, task: str) -> LabelState | None:
        row = self._conn.execute(
            "SELECT value, confidence, status FROM labels WHERE key = ? AND annotator = ? AND task = ?",
            (key, annotator, task),
        ).fetchone()
        return None if row is None else LabelState(row[0], float(row[1]), row[2])

    def _new_action(self, annotator: str, kind: str, time: str, reverts: int | None = None) -> int:
        cur = self._conn.execute(
            "INSERT INTO actions (annotator, kind, reverts, time) VALUES (?, ?, ?, ?)", (annotator, kind, reverts, time)
        )
        return int(cur.lastrowid or 0)

    def _apply(
        self,
        action: int,
        key: str,
        annotator: str,
        task: str,
        new: LabelState | None,
        *,
        source: str,
        model_version: str,
        time: str,
        origin: str = "",
    ) -> None:
        old = self._current(key, annotator, task)
        if new is None:
            self._conn.execute(
                "DELETE FROM labels WHERE key = ? AND annotator = ? AND task = ?", (key, annotator, task)
            )
        else:
            self._conn.execute(
                f"INSERT OR REPLACE INTO labels ({_LABEL_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, annotator, task, new.value, new.confidence, new.status, source, model_version, time),
            )
        self._conn.execute(
            """INSERT INTO history (action, key, annotator, task,
                   old_present, old_value, old_confidence, old_status,
                   new_present, new_value, new_confidence, new_status, source, model_version, time, origin)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                action, key, annotator, task,
                old is not None, None if old is None else old.value, None if old is None else old.confidence,
                None if old is None else old.status,
                new is not None, None if new is None else new.value, None if new is None else new.confidence,
                None if new is None else new.status,
                source, model_version, time, origin,
            ),
        )

    def _push(self, annotator: str, stack: str, action: int) -> None:
        row = self._conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM undo_stack WHERE annotator = ? AND stack = ?", (annotator, stack)
        ).fetchone()
        self._conn.execute(
            "INSERT INTO undo_stack (annotator, stack, seq, action) VALUES (?, ?, ?, ?)",
            (annotator, stack, int(row[0]) + 1, action),
        )

    def _pop(self, annotator: str, stack: str) -> int | None:
        row = self._conn.execute(
            "SELECT seq, action FROM undo_stack WHERE annotator = ? AND stack = ? ORDER BY seq DESC LIMIT 1",
            (annotator, stack),
        ).fetchone()
        if row is None:
            return None
        self._conn.execute(
            "DELETE FROM undo_stack WHERE annotator = ? AND stack = ? AND seq = ?", (annotator, stack, row[0])
        )
        return int(row[1])

    # -- writing
    def set_labels(
        self,
        edits: Iterable[LabelEdit],
        *,
        annotator: str,
        source: str = "person",
        model_version: str = "",
        undoable: bool = True,
    ) -> int:
        """Apply several edits as one action (one transaction, one undo step); returns the action id.

        Edits that change nothing are skipped; an action with no change returns 0 and adds nothing.
        The labels are on disk when this returns; any failure raises :class:`LabelStoreError`.
        """
        edits = list(edits)
        for e in edits:
            self._check(e, annotator, e.source or source)
        time = utc_now()
        with self._transaction():
            changes = []
            for e in edits:
                new = LabelState(e.value, float(e.confidence), e.status)
                if self._current(e.key, annotator, e.task) != new:
                    changes.append((e, new))
            if not changes:
                return 0
            action = self._new_action(annotator, "edit", time)
            for e, new in changes:
                self._apply(
                    action, e.key, annotator, e.task, new,
                    source=e.source or source, model_version=model_version, time=time,
                )
            if undoable:
                self._push(annotator, "undo", action)
                self._conn.execute("DELETE FROM undo_stack WHERE annotator = ? AND stack = 'redo'", (annotator,))
        return action

    def set_label(
        self,
        key: str,
        task: str,
        value: str | None,
        confidence: float = 1.0,
        *,
        annotator: str,
        status: str = "confirmed",
        source: str = "person",
        model_version: str = "",
    ) -> int:
        """One task of one image (see :meth:`set_labels`)."""
        return self.set_labels(
            [LabelEdit(key, task, value, confidence, status)],
            annotator=annotator, source=source, model_version=model_version,
        )

    def _revert(self, annotator: str, from_stack: str, to_stack: str, kind: str) -> int | None:
        time = utc_now()
        with self._transaction():
            target = self._pop(annotator, from_stack)
            if target is None:
                return None
            rows = self._conn.execute(
                """SELECT key, task, old_present, old_value, old_confidence, old_status,
                          new_present, new_value, new_confidence, new_status, source, model_version
                   FROM history WHERE action = ? AND annotator = ? ORDER BY id""",
                (target, annotator),
            ).fetchall()
            if kind == "undo":
                rows.reverse()
            action = self._new_action(annotator, kind, time, reverts=target)
            for key, task, op, ov, oc, os_, np_, nv, nc, ns, source, mv in rows:
                state = (LabelState(ov, float(oc), os_) if op else None) if kind == "undo" else (
                    LabelState(nv, float(nc), ns) if np_ else None
                )
                if state is not None and source == "model" and state.status == "confirmed":
                    # an action from before schema 3.0: the model's guess comes back as a suggestion
                    state = LabelState(state.value, state.confidence, "suggested")
                self._apply(action, key, annotator, task, state, source=source, model_version=mv, time=time)
            self._push(annotator, to_stack, target)
        return action

    def undo(self, annotator: str) -> int | None:
        """Undo the annotator's last action by appending compensating history; None when nothing to undo."""
        return self._revert(annotator, "undo", "redo", "undo")

    def redo(self, annotator: str) -> int | None:
        """Redo the annotator's last undone action (appended to history); None when nothing to redo."""
        return self._revert(annotator, "redo", "undo", "redo")

    def can_undo(self, annotator: str) -> bool:
        return bool(self._read("SELECT 1 FROM undo_stack WHERE annotator = ? AND stack = 'undo' LIMIT 1", (annotator,)))

    def can_redo(self, annotator: str) -> bool:
        return bool(self._read("SELECT 1 FROM undo_stack WHERE annotator = ? AND stack = 'redo' LIMIT 1", (annotator,)))

    def add_imported(
        self, records: Iterable[tuple[LabelRecord, str]], *, source: str | None = "import", importer: str = "import"
    ) -> int:
        """Add labels of other stores, keeping their annotator names; returns how many were added.

        ``source=None`` keeps each record's own source. Each record comes with its ``origin`` (a
        content hash): a record whose origin is already in the
        history, or whose content equals the current label, adds nothing, so importing is idempotent.
        The current label changes only when the imported one is at least as new (last writer wins).
        """
        records = list(records)
        for rec, _ in records:
            edit = LabelEdit(rec.key, rec.task, rec.value, rec.confidence, rec.status)
            self._check(edit, rec.annotator, source or rec.source)
        added = 0
        with self._transaction():
            action = 0
            for rec, origin in records:
                if self._conn.execute("SELECT 1 FROM history WHERE origin = ? LIMIT 1", (origin,)).fetchone():
                    continue
                cur = self._conn.execute(
                    "SELECT value, confidence, status, time FROM labels WHERE key = ? AND annotator = ? AND task = ?",
                    (rec.key, rec.annotator, rec.task),
                ).fetchone()
                if cur is not None and LabelState(cur[0], float(cur[1]), cur[2]) == rec.state and cur[3] == rec.time:
                    continue
                if action == 0:
                    action = self._new_action(importer, "import", utc_now())
                if cur is None or cur[3] <= rec.time:
                    self._apply(
                        action, rec.key, rec.annotator, rec.task, rec.state,
                        source=source or rec.source, model_version=rec.model_version, time=rec.time, origin=origin,
                    )
                else:  # an older label than ours: keep it in the history only
                    old = LabelState(cur[0], float(cur[1]), cur[2])
                    self._conn.execute(
                        """INSERT INTO history (action, key, annotator, task,
                               old_present, old_value, old_confidence, old_status,
                               new_present, new_value, new_confidence, new_status, source, model_version, time, origin)
                           VALUES (?, ?, ?, ?, 1, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)""",
                        (
                            action, rec.key, rec.annotator, rec.task, old.value, old.confidence, old.status,
                            old.value, old.confidence, old.status, source or rec.source, rec.model_version, rec.time,
                            origin,
                        ),
                    )
                added += 1
        return added

    def remember_images(self, records: Iterable[Any]) -> None:
        """Record where images are (objects with key, path, kind, patient_id, study_uid, laterality)."""
        now = utc_now()
        rows = [
            (r.key, str(Path(r.path).resolve()), r.kind, r.patient_id, r.study_uid, r.laterality, now) for r in records
        ]
        with self._transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO images (key, path, kind, patient_id, study_uid, laterality, time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def images(self, keys: Iterable[str] | None = None) -> list[StoredImage]:
        """The remembered images (of ``keys``, or all), by key."""
        rows = self._read("SELECT key, path, kind, patient_id, study_uid, laterality, time FROM images ORDER BY key")
        wanted = None if keys is None else set(keys)
        return [
            StoredImage(r[0], Path(r[1]), r[2], r[3], r[4], r[5], r[6])
            for r in rows
            if wanted is None or r[0] in wanted
        ]

    def remember_pseudonyms(self, mapping: Iterable[tuple[str, str]]) -> None:
        """Record (pseudonym, key) pairs of an export, so importing it back finds the original keys."""
        with self._transaction():
            self._conn.executemany("INSERT OR REPLACE INTO pseudonyms (pseudonym, key) VALUES (?, ?)", list(mapping))

    def resolve_pseudonym(self, pseudonym: str) -> str:
        """The original key of a pseudonym this store exported, else the pseudonym itself."""
        rows = self._read("SELECT key FROM pseudonyms WHERE pseudonym = ?", (pseudonym,))
        return str(rows[0][0]) if rows else pseudonym

    # -- reading
    def labels(
        self, key: str | None = None, *, annotator: str | None = None, task: str | None = None
    ) -> list[LabelRecord]:
        """Current labels, filtered by any of key, annotator and task."""
        where, params = [], []
        for col, val in (("key", key), ("annotator", annotator), ("task", task)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        sql = f"SELECT {_LABEL_COLS} FROM labels" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY key, annotator, task"
        rows = self._read(sql, params)
        return [LabelRecord(r[0], r[1], r[2], r[3], float(r[4]), r[5], r[6], r[7], r[8]) for r in rows]

    def label(self, key: str, task: str, annotator: str) -> LabelRecord | None:
        recs = self.labels(key, annotator=annotator, task=task)
        return recs[0] if recs else None

    def keys(self) -> list[str]:
        """Every image key that has a current label."""
        return [str(r[0]) for r in self._read("SELECT DISTINCT key FROM labels ORDER BY key")]

    def annotators(self) -> list[str]:
        return [str(r[0]) for r in self._read("SELECT DISTINCT annotator FROM labels ORDER BY annotator")]

    def combined(self, key: str) -> dict[str, CombinedLabel]:
        """The labels of all annotators of one image combined per task (see :func:`combine`)."""
        return combine(self.labels(key))

    def reviewed_keys(self, annotator: str | None = None) -> set[str]:
        """Keys with at least one label (confirmed by ``annotator``, or by anyone when None)."""
        sql = "SELECT DISTINCT key FROM labels WHERE status = 'confirmed' AND source != 'model'"
        params: tuple[str, ...] = ()
        if annotator is not None:
            sql += " AND annotator = ?"
            params = (annotator,)
        return {str(r[0]) for r in self._read(sql, params)}

    def history(self, key: str | None = None, *, annotator: str | None = None) -> list[HistoryEntry]:
        """The history in the order it was written, filtered by key and annotator."""
        where, params = [], []
        if key is not None:
            where.append("h.key = ?")
            params.append(key)
        if annotator is not None:
            where.append("h.annotator = ?")
            params.append(annotator)
        sql = f"SELECT {_HISTORY_COLS} FROM history h LEFT JOIN actions a ON a.id = h.action"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY h.id"
        out = []
        for r in self._read(sql, params):
            old = LabelState(r[6], float(r[7]), r[8]) if r[5] else None
            new = LabelState(r[10], float(r[11]), r[12]) if r[9] else None
            kind = r[16] or "edit"
            out.append(HistoryEntry(r[0], r[1], r[2], r[3], r[4], old, new, r[13], r[14], r[15], kind, r[17], r[18]))
        return out

    def origins(self) -> set[str]:
        return {str(r[0]) for r in self._read("SELECT DISTINCT origin FROM history WHERE origin != ''")}
