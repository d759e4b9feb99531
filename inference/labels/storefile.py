"""Checks of a label store's files made before SQLite opens them, which SQLite itself would let pass.

SQLite opens a 0-byte file as a new empty database, ignores a write-ahead log (``-wal``) whose
header or frames fail their checksums (the transactions in it are dropped without a word), and says
"unable to open database file" when the folder or the medium is read-only. Each of these loses or
hides labels, so :func:`check_before_open` refuses them with a reason naming the file:

- a 0-byte file, or one that is not an SQLite database (the first 16 bytes are SQLite's own magic);
- a damaged WAL: a frame of the current log that fails its checksum while committed transactions
  follow it (SQLite would stop reading at the damaged frame and drop them all), or a log whose
  header is damaged while frames follow it. A torn last transaction (a crash while it was written,
  before it was committed) is not damage: SQLite rolls it back and nothing accepted is lost;
- a file or folder that cannot be written: on read-only media (the file system is mounted
  read-only) or by permissions.

The WAL format is SQLite's (https://www.sqlite.org/fileformat2.html#walformat): a 32-byte header
(magic, version, page size, checkpoint sequence, two salts, a checksum of the first 24 bytes), then
frames of a 24-byte header (page number, database size after a commit or 0, the two salts, a
cumulative checksum) and one page.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from inference.errors import LabelStoreError

__all__ = ["SQLITE_MAGIC", "WalCheck", "check_wal", "check_before_open", "check_writable", "folder_error"]

SQLITE_MAGIC = b"SQLite format 3\x00"
_WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums in little- / big-endian words
_WAL_HEADER, _FRAME_HEADER = 32, 24
_MASK = 0xFFFFFFFF
_KEEP_SAFE = "copy {name} and {name}-wal somewhere safe (they hold the labels) before anything else opens them"


@dataclass(frozen=True)
class WalCheck:
    """What :func:`check_wal` found in a write-ahead log."""

    frames: int  # frames of the current log that SQLite reads (up to the last valid commit)
    damaged_frame: int | None  # index of the first frame that fails its checksum, when it hides commits
    lost_commits: int  # committed transactions after the damaged frame that SQLite would drop
    header_damaged: bool = False

    @property
    def damaged(self) -> bool:
        return self.header_damaged or self.lost_commits > 0


def _checksum(data: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
    words = struct.unpack((">" if big else "<") + f"{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & _MASK
        s1 = (s1 + words[i + 1] + s0) & _MASK
    return s0, s1


def check_wal(data: bytes) -> WalCheck:
    """Read a WAL's bytes as SQLite's recovery does and say whether it would drop committed data."""
    if len(data) < _WAL_HEADER:
        return WalCheck(0, None, 0, header_damaged=any(data))
    magic, version, page_size, _seq, salt1, salt2, c0, c1 = struct.unpack(">8I", data[:_WAL_HEADER])
    if magic not in _WAL_MAGIC or version != 3007000 or page_size < 512 or page_size & (page_size - 1):
        # not a log SQLite would read: damage when something follows the header
        return WalCheck(0, None, 0, header_damaged=len(data) > _WAL_HEADER and any(data))
    big = magic & 1 == 1
    s = _checksum(data[:24], 0, 0, big)
    frame = _FRAME_HEADER + page_size
    count = (len(data) - _WAL_HEADER) // frame
    if s != (c0, c1):
        return WalCheck(0, None, 0, header_damaged=count > 0)
    valid = lost = 0
    first_bad: int | None = None
    for i in range(count):
        at = _WAL_HEADER + i * frame
        head = data[at : at + _FRAME_HEADER]
        _page, commit, f1, f2, k0, k1 = struct.unpack(">6I", head)
        if (f1, f2) != (salt1, salt2):
            break  # a frame of an earlier log (the log restarted): the current log ends here
        got = _checksum(data[at + _FRAME_HEADER : at + frame], *_checksum(head[:8], *s, big), big)
        if first_bad is None and got != (k0, k1):
            first_bad = i
        elif first_bad is not None and got == (k0, k1) and commit:
            lost += 1  # a whole committed transaction past the damage: SQLite would drop it
        if first_bad is None and commit:
            valid = i + 1
        s = (k0, k1)  # chain on the stored checksum, so frames after a damaged one can still be verified
    return WalCheck(valid, first_bad if lost else None, lost)


def _read_only_media(path: Path) -> bool:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): the writability checks below still run
        return False


def check_writable(path: Path) -> None:
    """Refuse a store on read-only media, or whose file or folder this user cannot write."""
    if _read_only_media(path):
        raise LabelStoreError("the label store is on read-only media (the file system is mounted read-only)", path)
    if path.exists() and not os.access(path, os.W_OK):
        raise LabelStoreError("the label store file is read-only for this user (permissions): not writable", path)
    if path.parent.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise LabelStoreError(
            f"the label store's folder {path.parent} is not writable (permissions): SQLite keeps its "
            f"journal ({path.name}-wal) beside the store",
            path,
        )


def folder_error(exc: OSError, path: Path) -> LabelStoreError:
    """The error for a folder of the store that cannot be made."""
    if exc.errno == errno.EROFS:
        return LabelStoreError("the label store is on read-only media (the file system is mounted read-only)", path)
    return LabelStoreError(f"cannot create the folder of the label store ({exc.strerror or exc})", path)


def check_before_open(path: Path) -> None:
    """Everything SQLite would open silently or report vaguely; raises :class:`LabelStoreError`."""
    if path.exists() and not path.is_dir():
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise LabelStoreError(f"cannot read the label store ({exc.strerror or exc})", path) from exc
        if not head:
            raise LabelStoreError(
                "the file is empty (0 bytes): not a label store. Move it away (or choose another file) to "
                "start a new store",
                path,
            )
        if head != SQLITE_MAGIC:
            raise LabelStoreError("the file is not a label store (not an SQLite database)", path)
        wal = path.with_name(path.name + "-wal")
        try:
            data = wal.read_bytes() if wal.exists() else b""
        except OSError as exc:
            raise LabelStoreError(f"cannot read the label store's journal {wal.name} ({exc.strerror or exc})",
                                  path) from exc
        found = check_wal(data)
        if found.header_damaged:
            raise LabelStoreError(
                f"the label store's journal {wal.name} is damaged (its header fails its checksum): SQLite would "
                f"drop every label in it. Not opened; {_KEEP_SAFE.format(name=path.name)}",
                path,
            )
        if found.damaged:
            raise LabelStoreError(
                f"the label store's journal {wal.name} is damaged (frame {found.damaged_frame} fails its checksum): "
                f"SQLite would drop the {found.lost_commits} saved change(s) after it. Not opened; "
                f"{_KEEP_SAFE.format(name=path.name)}",
                path,
            )
    check_writable(path)
