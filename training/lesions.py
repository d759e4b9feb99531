"""Lesion annotations for the segmentation task: what each image says about where its lesions are.

A label manifest (``M.csv``) may have a companion ``M.lesions.csv``, one row per image that says
something, keyed like the manifest:

- ``outline``: a binary mask file (``mask``, 255 inside a lesion, the image's size): certain pixel
  labels, weight 1 everywhere (CDD-CESM ``masks/``, mini-DDSM ``masks/``);
- ``circles``: centres and radii (``circles``, ``row:col:radius;...``, image pixels, origin top
  left): a circle encloses a lesion but is not its outline, so inside a circle the target is 1 with
  weight ``1 - u`` (``u`` = :data:`CIRCLE_UNCERTAINTY` = 0.5 by default), outside every circle the
  target is 0 with weight 1 (mini-MIAS lists every abnormality it has);
- ``none``: a known lesion-free image (mini-MIAS ``NORM``, a CDD-CESM ``cc/`` image with finding
  normal, a mini-DDSM breast without a finding): all background, weight 1.

An image without a row has weight 0 everywhere (a lesion without an outline, or nothing known):
the paper's missing-label weighting, per pixel. :func:`lesion_maps` turns a record into the
target and weight on the model's lesion grid through the image's own preprocessing
:class:`~inference.model.preprocess.Geometry`, so the maps stay aligned with the model input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inference.csvsafe import SafeDictReader, SafeDictWriter
from inference.errors import FormatError
from inference.formats import LabelRow
from inference.imaging.pilview import float_image
from inference.model.preprocess import Geometry
from training.readers import _csv_rows  # the one reader of the data sets' CSV files

__all__ = [
    "KINDS",
    "CIRCLE_UNCERTAINTY",
    "LesionRecord",
    "lesions_path_for",
    "write_lesions",
    "read_lesions",
    "original_maps",
    "to_model_space",
    "to_grid",
    "lesion_maps",
    "mias_lesions",
    "cdd_cesm_lesions",
    "ddsm_mini_lesions",
    "LESION_READERS",
]

KINDS: tuple[str, ...] = ("outline", "circles", "none")
#: Uncertainty of a pixel inside a MIAS circle (weight 1 - u = 0.5).
CIRCLE_UNCERTAINTY = 0.5
_COLUMNS = ("key", "lesion", "mask", "circles", "u")
_TEXT_COLUMNS = frozenset(("key", "lesion", "mask", "circles"))


@dataclass(frozen=True)
class LesionRecord:
    """What one image says about its lesions (module docstring)."""

    key: str
    kind: str
    mask: str = ""  # outline: the mask file (absolute, or relative to the lesions CSV's folder)
    circles: tuple[tuple[float, float, float], ...] = ()  # (row, col, radius), image pixels
    u: float = 0.0  # uncertainty of the pixels inside circles

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"lesion kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "outline" and not self.mask:
            raise ValueError(f"{self.key}: an outline needs a mask file")
        if self.kind == "circles" and not self.circles:
            raise ValueError(f"{self.key}: 'circles' needs at least one circle")
        if not 0.0 <= self.u <= 1.0:
            raise ValueError(f"{self.key}: uncertainty {self.u} is outside [0, 1]")


def lesions_path_for(manifest: str | Path) -> Path:
    """``M.csv`` -> ``M.lesions.csv`` beside it."""
    manifest = Path(manifest)
    return manifest.with_name(manifest.stem + ".lesions.csv")


def write_lesions(path: str | Path, records: Iterable[LesionRecord]) -> Path:
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = SafeDictWriter(f, _COLUMNS, _TEXT_COLUMNS)  # no cell read as a formula (inference.csvsafe)
        w.writeheader()
        for r in records:
            circles = ";".join(":".join(f"{v:g}" for v in c) for c in r.circles)
            w.writerow({"key": r.key, "lesion": r.kind, "mask": r.mask, "circles": circles, "u": f"{r.u:g}"})
    return path


def read_lesions(path: str | Path) -> dict[str, LesionRecord]:
    """The records of a lesions CSV by key; relative mask paths are made absolute (CSV's folder)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FormatError(f"cannot read lesions file ({exc.strerror or exc})", path) from exc
    out: dict[str, LesionRecord] = {}
    for n, rec in enumerate(SafeDictReader(text.splitlines(), _TEXT_COLUMNS), start=2):
        try:
            circles = tuple(
                (float(a), float(b), float(c))
                for part in (rec.get("circles") or "").split(";")
                if part.strip()
                for a, b, c in [part.split(":")]
            )
            mask = (rec.get("mask") or "").strip()
            if mask and not Path(mask).is_absolute():
                mask = str((path.parent / mask).resolve())
            record = LesionRecord(
                key=(rec.get("key") or "").strip(),
                kind=(rec.get("lesion") or "").strip(),
                mask=mask,
                circles=circles,
                u=float(rec.get("u") or 0.0),
            )
        except ValueError as exc:
            raise FormatError(f"line {n}: {exc}", path) from exc
        out[record.key] = record
    return out


def original_maps(record: LesionRecord, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Target (1 inside a lesion) and weight, float32, on the original image's pixel grid."""
    target = np.zeros(shape, np.float32)
    weight = np.ones(shape, np.float32)
    if record.kind == "outline":
        try:
            with Image.open(record.mask) as im:
                mask = np.asarray(im.convert("L"))
        except OSError as exc:
            raise FormatError(f"cannot read lesion mask ({exc})", record.mask) from exc
        if mask.shape != shape:
            raise FormatError(f"lesion mask of {mask.shape} does not match its image of {shape}", record.mask)
        target[mask > 127] = 1.0
    elif record.kind == "circles":
        rows, cols = np.ogrid[: shape[0], : shape[1]]
        for r, c, radius in record.circles:
            inside = (rows - r) ** 2 + (cols - c) ** 2 <= radius**2
            target[inside] = 1.0
            weight[inside] = 1.0 - record.u
    return target, weight


def to_model_space(original: np.ndarray, geometry: Geometry, fill: float) -> np.ndarray:
    """A map on the original pixel grid -> the model input's grid, by the image's own geometry:
    flip, crop, resize (bilinear, as the image), pad on the right with ``fill``."""
    a = np.asarray(original, np.float32)
    if a.shape != geometry.original_shape:
        raise ValueError(f"map of {a.shape} is not on the image's grid {geometry.original_shape}")
    if geometry.flipped:
        a = a[:, ::-1]
    y0, y1, x0, x1 = geometry.crop
    crop = np.ascontiguousarray(a[y0:y1, x0:x1])
    h, cw = geometry.content_shape
    resized = np.asarray(
        float_image(crop).resize((cw, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    )
    out = np.full(geometry.shape, fill, np.float32)
    out[:, :cw] = resized
    return out


def to_grid(model_map: np.ndarray, stride: int) -> np.ndarray:
    """Mean over ``stride x stride`` cells (the model input's size is a multiple of ``stride``)."""
    h, w = model_map.shape
    if h % stride or w % stride:
        raise ValueError(f"map of {model_map.shape} is not a multiple of {stride}")
    out: np.ndarray = model_map.reshape(h // stride, stride, w // stride, stride).mean(axis=(1, 3), dtype=np.float32)
    return out


def lesion_maps(record: LesionRecord, geometry: Geometry, stride: int) -> np.ndarray:
    """``[2, H/stride, W/stride]`` float32: the target (lesion share of each cell) and the weight."""
    if record.kind == "none":
        h, w = geometry.shape
        grid = (h // stride, w // stride)
        return np.stack([np.zeros(grid, np.float32), np.ones(grid, np.float32)])
    target, weight = original_maps(record, geometry.original_shape)
    return np.stack(
        [to_grid(to_model_space(target, geometry, 0.0), stride), to_grid(to_model_space(weight, geometry, 1.0), stride)]
    )


# --------------------------------------------------------------------------- readers
def _by_path(rows: Sequence[LabelRow]) -> dict[str, str]:
    return {str(Path(r.image).resolve()): r.key for r in rows}


def mias_lesions(root: str | Path, rows: Sequence[LabelRow], u: float = CIRCLE_UNCERTAINTY) -> list[LesionRecord]:
    """mini-MIAS: ``NORM`` -> none; an abnormality with centres and radii -> circles (MIAS puts the
    origin at the bottom left: row = height - y); an abnormality without them -> nothing."""
    root = Path(root)
    keys = _by_path(rows)
    out = []
    for rec in _csv_rows(root / "labels.csv"):
        path = (root / "images" / rec["image"]).resolve()
        key = keys.get(str(path))
        if key is None:
            continue
        if rec.get("abnormality", "").upper() == "NORM":
            out.append(LesionRecord(key, "none"))
            continue
        triples = [p.split(":") for p in rec.get("lesions_x_y_radius", "").split(";") if p.strip()]
        if not triples or any(len(t) != 3 or not all(re.fullmatch(r"\d+(\.\d+)?", v) for v in t) for t in triples):
            continue
        with Image.open(path) as im:
            height = im.height
        circles = tuple((height - float(y), float(x), float(r)) for x, y, r in triples)
        out.append(LesionRecord(key, "circles", circles=circles, u=u))
    return out


def cdd_cesm_lesions(root: str | Path, rows: Sequence[LabelRow]) -> list[LesionRecord]:
    """CDD-CESM: every ``le/`` image -> its ``masks/`` outline; a ``cc/`` image with finding normal
    -> none; other ``cc/`` images (a lesion, no outline) -> nothing."""
    root = Path(root)
    keys = _by_path(rows)
    out = []
    for rec in _csv_rows(root / "labels.csv"):
        path = (root / rec["image"]).resolve()
        key = keys.get(str(path))
        if key is None:
            continue
        mask = root / "masks" / (Path(rec["image"]).stem + ".png")
        if rec["image"].startswith("le/") and mask.exists():
            out.append(LesionRecord(key, "outline", mask=str(mask.resolve())))
        elif rec["image"].startswith("cc/") and rec.get("finding", "").lower() == "normal":
            out.append(LesionRecord(key, "none"))
    return out


def ddsm_mini_lesions(root: str | Path, rows: Sequence[LabelRow]) -> list[LesionRecord]:
    """mini-DDSM: a breast with an outline (``mask``) -> outline; a breast without a finding
    (finding normal) -> none."""
    root = Path(root)
    keys = _by_path(rows)
    out = []
    for rec in _csv_rows(root / "labels.csv"):
        key = keys.get(str((root / rec["image"]).resolve()))
        if key is None:
            continue
        if rec.get("mask"):
            out.append(LesionRecord(key, "outline", mask=str((root / rec["mask"]).resolve())))
        elif rec.get("finding", "").lower() == "normal":
            out.append(LesionRecord(key, "none"))
    return out


#: data set name (as in :data:`training.readers.READERS`) -> lesion reader (folder, its rows).
LESION_READERS = {"mias": mias_lesions, "cdd-cesm": cdd_cesm_lesions, "ddsm-mini": ddsm_mini_lesions}
