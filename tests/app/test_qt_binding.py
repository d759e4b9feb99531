"""The installed Qt binding must keep Python's reference counts: PySide6 6.12.0's ``SignalInstance.emit``
returns ``True`` without a new reference, so every emit whose result is dropped takes one reference
from ``True``; after a few hundred emits the interpreter aborts ("bool_dealloc: deallocating True").
pyproject.toml has to exclude such a release.

From Python 3.12 on ``True`` is immortal (its count never changes), so the leak cannot be seen there:
the requirement test guards every Python, the reference count test the ones where the leak crashes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import PySide6
import pytest
from packaging.requirements import Requirement
from PySide6.QtCore import QObject, Signal

LEAKING_RELEASES = ("6.12.0",)
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


class _Emitter(QObject):
    ping = Signal(int)


def _pyside_requirement() -> Requirement:
    found = re.findall(r'^\s*"(PySide6[-\w]*[^"]*)"', PYPROJECT.read_text(encoding="utf-8"), flags=re.M)
    assert len(found) == 1, f"expected one PySide6 requirement in pyproject.toml, found {found}"
    return Requirement(found[0])


def test_the_requirement_excludes_the_leaking_release_and_the_binding_meets_it() -> None:
    spec = _pyside_requirement().specifier
    for bad in LEAKING_RELEASES:
        assert not spec.contains(bad), f"pyproject.toml allows PySide6 {bad}, which aborts the interpreter"
    assert spec.contains(PySide6.__version__), f"the installed PySide6 {PySide6.__version__} is outside {spec}"


@pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="True is immortal from Python 3.12: emit cannot take its references"
)
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
