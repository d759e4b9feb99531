"""The installed Qt binding must keep Python's reference counts: PySide6 6.12.0's ``SignalInstance.emit``
returns ``True`` without a new reference, so every emit whose result is dropped takes one reference
from ``True``; after a few hundred emits the interpreter aborts ("bool_dealloc: deallocating True").
pyproject.toml has to exclude such a release."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    ping = Signal(int)


def test_signal_emit_keeps_the_refcount_of_true(qapp) -> None:
    e = _Emitter()
    seen: list[int] = []
    e.ping.connect(seen.append)
    before = sys.getrefcount(True)
    for i in range(50):
        e.ping.emit(i)
    after = sys.getrefcount(True)
    assert seen == list(range(50))
    assert after >= before - 5, (
        f"emit() took {before - after} references from True over 50 emits: this PySide6 build "
        "crashes the interpreter after a few hundred signals; install a release without the bug (e.g. 6.11.2)"
    )
