"""Decoded images from a worker process to the app or CLI through shared memory, not through the pipe.

A shown image comes back from a decode worker as a :class:`~inference.imaging.decode.LoadedImage`:
its display pixels and modality values are two float32 arrays, 30 MB for a 2400 x 1500 picture and
58 MB for a 3000 x 2400 DICOM. Pickled through the worker's pipe, that is about 100 ms per 30 MB on
a 2-core machine, twice the decode itself. Instead the worker pickles the result with protocol 5,
its arrays out of band, writes the arrays' bytes into one file in ``/dev/shm`` (memory, not disk)
and sends only the small pickle and the file's name. The parent maps the file, unlinks it at once
and unpickles the arrays from the mapping: one copy in all (the worker's write), none for the
parent. Small results (a CLI image's model input) are copied out of the mapping and the mapping is
dropped, so a long run does not pile up mappings.

Where there is no ``/dev/shm`` (macOS, Windows), or the file cannot be written (it is full), the
result goes through the pipe as before. A worker killed between writing and sending leaves its
file; :func:`sweep` removes a pool's files when it closes, and those of processes no longer
running when a pool starts.
"""

from __future__ import annotations

import itertools
import mmap
import os
import pickle
import re
from pathlib import Path
from typing import Any

__all__ = ["MAPPED", "SHM_DIR", "new_owner", "pack", "unpack", "sweep"]

MAPPED = "mapped"  # the message kind: (MAPPED, pickle bytes, file name, buffer sizes)
SHM_DIR: Path | None = Path("/dev/shm") if os.name == "posix" and os.path.isdir("/dev/shm") else None

MIN_BYTES = 256 << 10  # smaller results go through the pipe (the file costs more than it saves)
KEEP_MAPPED_BYTES = 8 << 20  # larger results stay in the mapping; smaller ones are copied out
_PREFIX = "mammo-decode-"
_NAME = re.compile(r"mammo-decode-(\d+)-(\d+)-(\d+)-(\d+)")  # process, pool, worker process, result
_counter = itertools.count()
_pools = itertools.count()


def new_owner() -> str:
    """A name for one pool's files: this process and a number of its own (several pools may run)."""
    return f"{os.getpid()}-{next(_pools)}"


def pack(
    message: tuple[Any, ...], owner: str, directory: Path | None = SHM_DIR, min_bytes: int = MIN_BYTES
) -> tuple[Any, ...]:
    """In a worker of the pool ``owner`` (:func:`new_owner`): ``("ok", value)`` as ``(MAPPED, pickle,
    name, sizes)`` with the value's arrays in a shared-memory file; the message itself when it is
    small, has no arrays, or the file cannot be written."""
    if directory is None:
        return message
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = pickle.dumps(message[1], protocol=5, buffer_callback=buffers.append)
    except Exception:  # the pipe's pickler says what is wrong
        return message
    views = [b.raw() for b in buffers]
    total = sum(v.nbytes for v in views)
    if total < min_bytes:
        return message
    name = f"{_PREFIX}{owner}-{os.getpid()}-{next(_counter)}"
    path = directory / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return message
    try:
        offset = 0
        for view in views:
            done = 0
            while done < view.nbytes:  # pwrite may write less than asked
                done += os.pwrite(fd, view[done:], offset + done)
            offset += view.nbytes
    except OSError:  # full: the pipe
        os.close(fd)
        path.unlink(missing_ok=True)
        return message
    os.close(fd)
    return (MAPPED, data, name, [v.nbytes for v in views])


def unpack(message: tuple[Any, ...], owner: str, worker_pid: int, directory: Path | None = SHM_DIR) -> Any:
    """In the pool ``owner``: the value of a :func:`pack` ed message from its worker ``worker_pid``; the
    file is unlinked. Raises OSError when the file cannot be read, ValueError for a name that is not
    this worker's (nothing is opened or removed then)."""
    _, data, name, sizes = message
    match = _NAME.fullmatch(str(name))
    if directory is None or match is None or f"{match[1]}-{match[2]}-{match[3]}" != f"{owner}-{worker_pid}":
        raise ValueError(f"not a shared-memory file of this decode worker: {name!r}")
    path = directory / str(name)
    total = sum(int(n) for n in sizes)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.unlink(path)
        if os.fstat(fd).st_size != total:
            raise OSError(f"the shared-memory file holds {os.fstat(fd).st_size} bytes, not {total}")
        mapped = mmap.mmap(fd, total, access=mmap.ACCESS_COPY)  # private: writable, the file untouched
    finally:
        os.close(fd)
    if total >= KEEP_MAPPED_BYTES:
        memory: Any = memoryview(mapped)  # the arrays keep the mapping alive, and it goes with them
    else:
        memory = memoryview(bytearray(mapped))
        mapped.close()
    buffers, offset = [], 0
    for n in sizes:
        buffers.append(memory[offset : offset + int(n)])
        offset += int(n)
    return pickle.loads(data, buffers=buffers)


def sweep(owner: str | None = None, directory: Path | None = SHM_DIR) -> int:
    """Remove the files left by the workers of the pool ``owner`` (one that closes), or, with None,
    by pools whose process is gone; returns how many were removed."""
    if directory is None:
        return 0
    removed = 0
    try:
        names = [p for p in directory.iterdir() if p.name.startswith(_PREFIX)]
    except OSError:
        return 0
    for path in names:
        match = _NAME.fullmatch(path.name)
        if match is None:
            continue
        if owner is not None and f"{match[1]}-{match[2]}" != owner:
            continue
        if owner is None and _running(int(match[1])):
            continue
        try:
            path.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
