"""Research data sets' file-name conventions: whose image it is, which breast, which view.

Public data sets ship JPEG, PNG or PGM files without DICOM tags; their file names carry what the
tags would. :func:`parse_name` knows these conventions (the file's stem, case-insensitive):

- ``<patient>_<L|R>_<...>_<view>``: CDD-CESM (``P66_L_DM_CC``), mini-DDSM (``0029_R_MLO``), and the
  DDSM / CBIS-DDSM spelling with words (``A_0029_1.LEFT_CC``, ``Mass-Training_P_00001_RIGHT_MLO``).
  The patient is everything before the side; the side and the view may also be one word
  (``P7_RCC``). Separators are ``_``, ``-``, ``.`` and spaces; words may follow the view.
- mini-MIAS ``mdbNNN``: images come in pairs from one woman, an odd number her right breast and
  the next even number her left one (``mdb001`` R and ``mdb002`` L: woman ``mdb001-002``). The name
  says no view.

A name that follows none of them gives ``None``. This module reads names only, never files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

__all__ = ["NamedImage", "parse_name"]

_VIEWS = ("XCCL", "XCCM", "CC", "MLO", "ML", "LMO", "LM", "FB", "SIO")
_SIDES = {"L": "L", "R": "R", "LEFT": "L", "RIGHT": "R"}
_WORD = re.compile(r"[^_\-. ]+")
_BOTH = re.compile(rf"^(L|R)({'|'.join(_VIEWS)})$")  # "RCC", "LMLO"
_MIAS = re.compile(r"^mdb(\d{3})$", re.IGNORECASE)


@dataclass(frozen=True)
class NamedImage:
    """What a file name says: the convention, the woman, the breast and the view ("" = not said)."""

    convention: str  # "patient_side_view" | "mini-mias"
    patient: str
    laterality: str  # "L" | "R"
    view: str  # "CC" | "MLO" | "ML" | ... | ""


def _mias(stem: str) -> NamedImage | None:
    m = _MIAS.match(stem)
    if m is None:
        return None
    n = int(m.group(1))
    if n == 0:
        return None
    first = n if n % 2 else n - 1  # the woman's right breast has the odd number
    return NamedImage("mini-mias", f"mdb{first:03d}-{first + 1:03d}", "R" if n % 2 else "L", "")


def _patient_side_view(stem: str) -> NamedImage | None:
    words = list(_WORD.finditer(stem.upper()))
    for i, word in enumerate(words):
        if i == 0:
            continue  # the patient comes first
        side, view = _SIDES.get(word.group()), ""
        if side is None:
            both = _BOTH.match(word.group())
            if both is None:
                continue
            side, view = _SIDES[both.group(1)], both.group(2)
        else:
            view = next((w.group() for w in words[i + 1 :] if w.group() in _VIEWS), "")
        if not view:
            return None
        patient = stem[: word.start()].rstrip("_-. ")
        return NamedImage("patient_side_view", patient, side, view) if patient else None
    return None


def parse_name(path: str | PurePath) -> NamedImage | None:
    """The convention a file's name follows, with what it says; ``None`` when it follows none."""
    stem = PurePath(path).stem
    return _mias(stem) or _patient_side_view(stem)
