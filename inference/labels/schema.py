"""The label store's schema: versions, the migration steps, and user-facing SQLite error reasons.

The version lives in ``PRAGMA user_version`` as ``major << 16 | minor`` (qutebrowser's convention).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from inference.labels.records import utc_now

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "version_int", "version_tuple", "reason"]

#: (major, minor) of the schema this code writes.
SCHEMA_VERSION: tuple[int, int] = (3, 0)


def version_int(major: int, minor: int) -> int:
    return major << 16 | minor


def version_tuple(num: int) -> tuple[int, int]:
    return (num & 0x7FFF_0000) >> 16, num & 0xFFFF


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    """1.0: current labels and their history."""
    conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS labels (
            key TEXT NOT NULL, annotator TEXT NOT NULL, task TEXT NOT NULL,
            value TEXT, confidence REAL NOT NULL, status TEXT NOT NULL, source TEXT NOT NULL,
            model_version TEXT NOT NULL DEFAULT '', time TEXT NOT NULL,
            PRIMARY KEY (key, annotator, task))"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL, annotator TEXT NOT NULL, task TEXT NOT NULL,
            old_present INTEGER NOT NULL, old_value TEXT, old_confidence REAL, old_status TEXT,
            new_present INTEGER NOT NULL, new_value TEXT, new_confidence REAL, new_status TEXT,
            source TEXT NOT NULL, model_version TEXT NOT NULL DEFAULT '', time TEXT NOT NULL)"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS history_key ON history (key)")


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """2.0: actions (undo/redo per annotator), import origins, export pseudonyms."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS actions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, annotator TEXT NOT NULL, kind TEXT NOT NULL,
            reverts INTEGER, time TEXT NOT NULL)"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS undo_stack (
            annotator TEXT NOT NULL, stack TEXT NOT NULL, seq INTEGER NOT NULL, action INTEGER NOT NULL,
            PRIMARY KEY (annotator, stack, seq))"""
    )
    conn.execute("CREATE TABLE IF NOT EXISTS pseudonyms (pseudonym TEXT PRIMARY KEY, key TEXT NOT NULL)")
    cols = _columns(conn, "history")
    if "action" not in cols:
        conn.execute("ALTER TABLE history ADD COLUMN action INTEGER NOT NULL DEFAULT 0")
    if "origin" not in cols:
        conn.execute("ALTER TABLE history ADD COLUMN origin TEXT NOT NULL DEFAULT ''")
    # Version 1 had no actions: each old history row becomes an action of its own (not undoable).
    for hid, annotator, time in conn.execute("SELECT id, annotator, time FROM history WHERE action = 0").fetchall():
        cur = conn.execute("INSERT INTO actions (annotator, kind, time) VALUES (?, 'edit', ?)", (annotator, time))
        conn.execute("UPDATE history SET action = ? WHERE id = ?", (cur.lastrowid, hid))
    conn.execute("CREATE INDEX IF NOT EXISTS history_origin ON history (origin)")
    conn.execute("CREATE INDEX IF NOT EXISTS history_action ON history (action)")


def _migrate_to_2_1(conn: sqlite3.Connection) -> None:
    """2.1: where each labelled image was last seen (so exports find images not opened now)."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS images (
            key TEXT PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, patient_id TEXT NOT NULL,
            study_uid TEXT NOT NULL, laterality TEXT NOT NULL, time TEXT NOT NULL)"""
    )


def _migrate_to_3(conn: sqlite3.Connection) -> None:
    """3.0: a label is what a person confirmed. Versions 2.x stored the model's guesses for every task
    a person did not touch as *confirmed* labels (source ``model``): they become suggestions again.

    The change is appended to the history as one action of kind ``migration`` (old -> new status,
    per label), so nothing is lost and the history says what happened. A major version: a 2.x
    program would write such "confirmations" again, so it must not open a 3.0 store.
    """
    rows = conn.execute(
        "SELECT key, annotator, task, value, confidence, model_version FROM labels"
        " WHERE status = 'confirmed' AND source = 'model'"
    ).fetchall()
    if not rows:
        return
    time = utc_now()
    cur = conn.execute("INSERT INTO actions (annotator, kind, time) VALUES ('migration', 'migration', ?)", (time,))
    action = cur.lastrowid
    for key, annotator, task, value, confidence, model_version in rows:
        conn.execute(
            "UPDATE labels SET status = 'suggested', time = ? WHERE key = ? AND annotator = ? AND task = ?",
            (time, key, annotator, task),
        )
        conn.execute(
            """INSERT INTO history (action, key, annotator, task,
                   old_present, old_value, old_confidence, old_status,
                   new_present, new_value, new_confidence, new_status, source, model_version, time, origin)
               VALUES (?, ?, ?, ?, 1, ?, ?, 'confirmed', 1, ?, ?, 'suggested', 'model', ?, ?, '')""",
            (action, key, annotator, task, value, confidence, value, confidence, model_version, time),
        )


#: (version reached, step), in order. A database runs every step newer than its version; each
#: step can run twice safely. A new minor version only adds (older programs of the major ignore it).
MIGRATIONS: tuple[tuple[tuple[int, int], Callable[[sqlite3.Connection], None]], ...] = (
    ((1, 0), _migrate_to_1),
    ((2, 0), _migrate_to_2),
    ((2, 1), _migrate_to_2_1),
    ((3, 0), _migrate_to_3),
)


def reason(exc: BaseException) -> str:
    """A user-facing reason for an sqlite3 error."""
    text = str(exc)
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return f"the label store is read-only ({text})"
    if name.startswith("SQLITE_BUSY") or "locked" in text:
        return f"the label store is locked by another program ({text})"
    if name.startswith("SQLITE_FULL") or "full" in text:
        return f"the disk is full ({text})"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return f"cannot open the label store ({text})"
    if name.startswith("SQLITE_NOTADB") or "not a database" in text:
        return f"the file is not a label store ({text})"
    if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return f"the label store is damaged ({text})"
    return text

