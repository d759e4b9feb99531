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

A name that follows none of them gives ``None``. :func:`laterality_in_text` and :func:`view_in_text`
read a side and a view from any free text (DICOM descriptions, file names that follow no convention).
:func:`manifest_groups` reads the woman and study a label manifest names for its images. This module
reads names, texts and manifests, never images.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePath

from inference.formats import read_label_manifest

__all__ = ["NamedImage", "parse_name", "laterality_in_text", "view_in_text", "manifest_groups"]

_VIEW_NAMES = ("XCCL", "XCCM", "CC", "MLO", "ML", "LMO", "LM", "FB", "SIO")
_SIDES = {"L": "L", "R": "R", "LEFT": "L", "RIGHT": "R"}
_WORD = re.compile(r"[^_\-. ]+")
_BOTH = re.compile(rf"^(L|R)({'|'.join(_VIEW_NAMES)})$")  # "RCC", "LMLO"
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
            view = next((w.group() for w in words[i + 1 :] if w.group() in _VIEW_NAMES), "")
        if not view:
            return None
        patient = stem[: word.start()].rstrip("_-. ")
        return NamedImage("patient_side_view", patient, side, view) if patient else None
    return None


def parse_name(path: str | PurePath) -> NamedImage | None:
    """The convention a file's name follows, with what it says; ``None`` when it follows none."""
    stem = PurePath(path).stem
    return _mias(stem) or _patient_side_view(stem)


def manifest_groups(path: str | Path) -> dict[str, tuple[str, str]]:
    """(patient, study) of each image a label manifest names, by image key and by the image's real
    path (``image`` relative to the manifest's folder); rows that name neither are left out.
    Raises :class:`inference.errors.FormatError` for a file that is not a label manifest."""
    path = Path(path)
    out: dict[str, tuple[str, str]] = {}
    for row in read_label_manifest(path):
        if not (row.patient or row.study):
            continue
        group = (row.patient, row.study)
        out[row.key] = group
        if row.image:
            image = Path(row.image)
            out[os.path.realpath(image if image.is_absolute() else path.parent / image)] = group
    return out


# --------------------------------------------------------------------------- free text
_SEP = r"(?<![A-Z0-9])"  # "_" and "-" separate words in file names such as P102_R_DM_CC
_END = r"(?![A-Z0-9])"
_VIEWS = r"XCCL|XCCM|CC|MLO|ML|LMO|LM|FB|SIO"
_VIEW_RE = re.compile(rf"{_SEP}(?:[LR][-_ ]?)?({_VIEWS}){_END}")
_VIEW_WORDS = (  # longest first: "medio-lateral oblique" before "medio-lateral"
    (re.compile(r"CRANIO-?CAUDAL EXAGGERATED LATERALLY"), "XCCL"),
    (re.compile(r"CRANIO-?CAUDAL EXAGGERATED MEDIALLY"), "XCCM"),
    (re.compile(r"CAUDO-?CRANIAL"), "FB"),
    (re.compile(r"SUPERO-?LATERAL TO INFERO-?MEDIAL OBLIQUE"), "SIO"),
    (re.compile(r"LATERO-?MEDIAL OBLIQUE"), "LMO"),
    (re.compile(r"MEDIO-?LATERAL OBLIQUE|\bOBLIQUE\b"), "MLO"),
    (re.compile(r"MEDIO-?LATERAL"), "ML"),
    (re.compile(r"LATERO-?MEDIAL"), "LM"),
    (re.compile(r"CRANIO-?CAUDAL"), "CC"),
)
_LEFT_RE = re.compile(rf"{_SEP}(?:LEFT|LT|LINKS|GAUCHE|L(?:[-_ ]?(?:{_VIEWS}))?){_END}")
_RIGHT_RE = re.compile(rf"{_SEP}(?:RIGHT|RT|RECHTS|DROITE?|R(?:[-_ ]?(?:{_VIEWS}))?){_END}")

def laterality_in_text(text: str) -> str:
    """"L" or "R" when the text names exactly one side (LEFT, R, LCC, P1_R_DM_CC ...), else ""."""
    up = text.upper()
    left, right = bool(_LEFT_RE.search(up)), bool(_RIGHT_RE.search(up))
    return "L" if left and not right else "R" if right and not left else ""


def view_in_text(text: str) -> str:
    """The view a text names (CC, MLO, ML, LM, XCCL, XCCM, FB, SIO, LMO), "" when none or several."""
    up = text.upper()
    found = {m.group(1) for m in _VIEW_RE.finditer(up)}
    if not found:
        for pattern, view in _VIEW_WORDS:
            if pattern.search(up):
                return view
    return found.pop() if len(found) == 1 else ""
