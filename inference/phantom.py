"""Synthetic mammograms (phantoms) for tests, benchmarks and the bundled sample studies.

`render` draws a displayed-style mammogram (float32 in [0, 1], 1 = dense/bright, background 0):
breast outline attached to the chest wall, skin line, fibroglandular texture whose amount follows
the BI-RADS density, pectoral muscle on MLO views, masses, calcification clusters and a burned-in
laterality/view marker. `ground_truth` gives where everything landed, in pixel coordinates.
`write_dicom` stores an image the ways real mammography DICOM varies (bit depth, MONOCHROME1/2,
VOI LUT or window, compressed transfer syntaxes, laterality/view in tags, in free text only or
nowhere); `write_study` writes a 4-view screening study.

Conventions: a left breast has its chest wall on the image's left edge, a right breast on the
right edge (nipple toward the image centre); `PhantomSpec.mirrored` flips the pixels whatever the
laterality says. Lesion positions in a spec are fractions in the *chest-wall-left* frame: `y` of
the rows from the top, `x` of the columns measured from the chest wall, `radius` of the rows.

Synthetic images only: they are not anatomy and carry no clinical meaning.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (  # fmt: skip
    PYDICOM_IMPLEMENTATION_UID, UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian,
    JPEG2000Lossless, JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, RLELossless, generate_uid,
)
from scipy import ndimage

__all__ = [  # fmt: skip
    "Mass", "CalcCluster", "PhantomSpec", "LesionTruth", "PhantomTruth", "TRANSFER_SYNTAXES",
    "MG_FOR_PRESENTATION", "render", "ground_truth", "render_with_truth", "write_dicom",
    "write_non_image_dicom", "write_study", "write_png", "write_jpeg", "main",
]

Laterality = Literal["L", "R"]
View = Literal["CC", "MLO", "ML"]
Density = Literal["A", "B", "C", "D"]
TagsMode = Literal["standard", "text_only", "none"]
VoiMode = Literal["window", "sigmoid", "lut"] | None

MG_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.2")
_BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
_GSPS = UID("1.2.840.10008.5.1.4.1.1.11.1")

#: Short names accepted by `write_dicom(transfer_syntax=...)` (a UID is accepted too).
TRANSFER_SYNTAXES: dict[str, UID] = {  # fmt: skip
    "explicit": ExplicitVRLittleEndian, "deflate": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless, "jpeg2000": JPEG2000Lossless, "jpegls": JPEGLSLossless,
    "jpeg-lossless": JPEGLosslessSV1, "jpeg-baseline": JPEGBaseline8Bit,
}

# Breast-fraction that is fibroglandular, per BI-RADS density.
_GLAND_FRACTION = {"A": 0.08, "B": 0.28, "C": 0.55, "D": 0.82}
# View codes: (SNOMED-RT code, meaning) as carried by most archives' MG images.
_VIEW_CODES = {  # fmt: skip
    "CC": ("R-10242", "cranio-caudal"), "MLO": ("R-10226", "medio-lateral oblique"),
    "ML": ("R-10224", "medio-lateral"),
}
_FAT, _GLAND, _MASS, _PECT, _SKIN, _CALC = 0.30, 0.74, 0.90, 0.74, 0.55, 1.0


@dataclass(frozen=True)
class Mass:
    """A mass: centre (`y`, `x`) and `radius` as fractions (see the module docstring)."""

    y: float
    x: float
    radius: float = 0.04
    spiculated: bool = False


@dataclass(frozen=True)
class CalcCluster:
    """A cluster of `count` microcalcifications within `radius` of (`y`, `x`) (fractions)."""

    y: float
    x: float
    radius: float = 0.02
    count: int = 12


def _as_lesions(value: object, kind: type) -> tuple | int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"lesion count must be >= 0, got {value}")
        return value
    if not isinstance(value, Sequence):
        raise ValueError(f"expected a count or a sequence of {kind.__name__}, got {value!r}")
    return tuple(v if isinstance(v, kind) else kind(*v) for v in value)


@dataclass(frozen=True)
class PhantomSpec:
    """What to draw. `masses` / `calcifications`: a count (random placement) or explicit lesions.

    `markers` burns a bright "L CC"-style label (text `marker_text`, default laterality + view)
    into the background; `mirrored` flips the pixels horizontally regardless of `laterality`.
    """

    laterality: Laterality = "L"
    view: View = "CC"
    density: Density = "B"
    masses: tuple[Mass, ...] | int = ()
    calcifications: tuple[CalcCluster, ...] | int = ()
    markers: bool = True
    marker_text: str | None = None
    shape: tuple[int, int] = (256, 192)
    seed: int = 0
    mirrored: bool = False

    def __post_init__(self) -> None:
        if self.laterality not in ("L", "R"):
            raise ValueError(f"laterality must be 'L' or 'R', got {self.laterality!r}")
        if self.view not in _VIEW_CODES:
            raise ValueError(f"view must be CC, MLO or ML, got {self.view!r}")
        if self.density not in _GLAND_FRACTION:
            raise ValueError(f"density must be A, B, C or D, got {self.density!r}")
        rows, cols = (int(v) for v in self.shape)
        if rows < 64 or cols < 48:
            raise ValueError(f"shape must be at least 64 x 48, got {self.shape}")
        object.__setattr__(self, "shape", (rows, cols))
        object.__setattr__(self, "masses", _as_lesions(self.masses, Mass))
        object.__setattr__(self, "calcifications", _as_lesions(self.calcifications, CalcCluster))

    @property
    def label(self) -> str:
        """The laterality and view as a technologist writes them, e.g. "R MLO"."""
        return f"{self.laterality} {self.view}"


@dataclass(frozen=True)
class LesionTruth:
    """Where a lesion landed in the final image: centre (`y`, `x`) and `radius` in pixels."""

    kind: Literal["mass", "spiculated_mass", "calcifications"]
    y: float
    x: float
    radius: float
    count: int = 1


@dataclass(frozen=True)
class PhantomTruth:
    """Ground truth of a rendered phantom, in pixel coordinates of the final image.

    Boxes are (row0, col0, row1, col1), end-exclusive. `pectoral` lists the muscle triangle's
    corners (y, x) on MLO views, else None.
    """

    shape: tuple[int, int]
    laterality: Laterality
    view: View
    density: Density
    chest_wall: Literal["left", "right"]
    nipple: tuple[float, float]
    breast_bbox: tuple[int, int, int, int]
    pectoral: tuple[tuple[float, float], ...] | None
    masses: tuple[LesionTruth, ...]
    calcifications: tuple[LesionTruth, ...]
    markers: tuple[tuple[int, int, int, int], ...]

    @property
    def malignant(self) -> bool:
        """Phantom convention: a spiculated mass or a calcification cluster means malignant."""
        return bool(self.calcifications) or any(m.kind == "spiculated_mass" for m in self.masses)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Layout:
    depth: np.ndarray  # breast depth from the chest wall per row, canonical frame (px)
    nipple: tuple[float, float]
    pectoral: tuple[float, float, float] | None  # width at top, height at chest wall, exponent
    masses: tuple[tuple[float, float, float, bool], ...]  # canonical px
    clusters: tuple[tuple[float, float, float, int], ...]
    flip: bool


def _rng(spec: PhantomSpec, salt: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed & 0xFFFFFFFF, salt]))


def _smooth1d(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    noise = ndimage.gaussian_filter1d(rng.standard_normal(n + 4 * int(sigma)), sigma, mode="wrap")
    noise = noise[2 * int(sigma) : 2 * int(sigma) + n]
    return noise / (noise.std() + 1e-9)


def _layout(spec: PhantomSpec) -> _Layout:
    rows, cols = spec.shape
    rng = _rng(spec, 1)
    y = np.arange(rows, dtype=np.float64)
    if spec.view == "MLO":
        top = rng.uniform(0.38, 0.44) * cols
        deep = rng.uniform(0.64, 0.74) * cols
        ym = rng.uniform(0.56, 0.64) * rows
        fold = rng.uniform(0.86, 0.94) * rows
        up = np.clip((ym - y) / ym, 0.0, 1.0)
        down = np.clip((y - ym) / (fold - ym), 0.0, 1.0)
        depth = np.where(y < ym, top + (deep - top) * (1 - up**1.5) ** (1 / 1.5), 0.0)
        depth = np.where(y >= ym, deep * (1 - down**2.0) ** 0.5, depth)
        pect = (rng.uniform(0.30, 0.36) * cols, rng.uniform(0.45, 0.58) * rows, rng.uniform(0.75, 0.95))
        yn = ym
    else:  # CC and ML are drawn as a half ellipse; ML keeps a view code of its own
        yc = rng.uniform(0.47, 0.53) * rows
        half = rng.uniform(0.36, 0.42) * rows
        deep = rng.uniform(0.56, 0.68) * cols
        t = np.clip(np.abs(y - yc) / half, 0.0, 1.0)
        depth = deep * (1 - t**2.0) ** 0.5
        pect, yn = None, yc
    wobble = 1 + 0.012 * _smooth1d(rng, rows, rows / 12)
    depth = depth * wobble + 0.012 * cols * np.exp(-(((y - yn) / (0.035 * rows)) ** 2)) * (depth > 0)
    depth = np.clip(depth, 0.0, 0.80 * cols)
    nipple = (float(yn), float(depth[int(round(yn))]))

    def inside(yy: float, frac: float, r: float) -> float:
        d = depth[int(np.clip(yy, 0, rows - 1))]
        lo = pect[0] * max(0.0, 1 - yy / pect[1]) ** pect[2] + r if pect else r
        return lo + frac * max(d - lo - 1.5 * r, 0.0)

    rows_lo, rows_hi = float(np.argmax(depth > 0)), float(rows - np.argmax(depth[::-1] > 0))
    span = rows_hi - rows_lo

    def place(n: int, rmin: float, rmax: float) -> list[tuple[float, float, float]]:
        out = []
        for _ in range(n):
            r = rng.uniform(rmin, rmax) * rows
            yy = rows_lo + span * rng.uniform(0.3 if pect else 0.25, 0.75)
            out.append((yy, inside(yy, rng.uniform(0.2, 0.8), r), r))
        return out

    m, c = spec.masses, spec.calcifications
    masses = (
        tuple((*p, bool(rng.random() < 0.5)) for p in place(m, 0.025, 0.05)) if isinstance(m, int)
        else tuple((v.y * rows, v.x * cols, v.radius * rows, v.spiculated) for v in m)
    )  # fmt: skip
    clusters = (
        tuple((*p, int(rng.integers(6, 20))) for p in place(c, 0.012, 0.025)) if isinstance(c, int)
        else tuple((v.y * rows, v.x * cols, v.radius * rows, v.count) for v in c)
    )  # fmt: skip
    flip = (spec.laterality == "R") != spec.mirrored
    return _Layout(depth, nipple, pect, masses, clusters, flip)


# --------------------------------------------------------------------------- markers

_GLYPHS = {  # 5 x 7 bitmap font, one int per row, bit 4 = leftmost column
    "A": (14, 17, 17, 31, 17, 17, 17), "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14), "D": (30, 17, 17, 17, 17, 17, 30),
    "E": (31, 16, 16, 30, 16, 16, 31), "I": (14, 4, 4, 4, 4, 4, 14),
    "L": (16, 16, 16, 16, 16, 16, 31), "M": (17, 27, 21, 21, 17, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14), "P": (30, 17, 17, 30, 16, 16, 16),
    "R": (30, 17, 17, 30, 20, 18, 17), "S": (15, 16, 16, 14, 1, 1, 30),
    "T": (31, 4, 4, 4, 4, 4, 4), "X": (17, 17, 10, 4, 10, 17, 17), " ": (0,) * 7,
}


def _text_bitmap(text: str) -> np.ndarray:
    """The text in the 5 x 7 font, framed by a one-cell border box, as a bool array."""
    cells = [_GLYPHS.get(ch.upper(), (31,) * 7) for ch in text]
    glyphs = [np.array([[(r >> (4 - c)) & 1 for c in range(5)] for r in g], bool) for g in cells]
    gap = np.zeros((7, 1), bool)
    body = np.hstack([np.hstack([g, gap]) for g in glyphs])[:, :-1]
    framed = np.zeros((body.shape[0] + 6, body.shape[1] + 6), bool)
    framed[3:-3, 3:-3] = body
    framed[0, :] = framed[-1, :] = framed[:, 0] = framed[:, -1] = True
    return framed


def _marker_box(spec: PhantomSpec, lay: _Layout) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The marker bitmap (scaled) and its top-left corner, in the final image frame."""
    if not spec.markers:
        return None
    rows, cols = spec.shape
    bitmap = _text_bitmap(spec.marker_text or spec.label)
    scale = max(1, int(0.035 * rows / 13))
    bitmap = np.kron(bitmap, np.ones((scale, scale), bool))
    h, w = bitmap.shape
    margin = max(2, int(0.02 * rows))
    if w + 2 * margin > cols // 2:
        return None
    x0 = margin if lay.flip else cols - margin - w  # on the side away from the chest wall
    depth_limit = cols - margin - w - margin  # the breast must stay left of the box (canonical)
    for y0 in (margin, rows - margin - h):
        if lay.depth[y0 : y0 + h].max() < depth_limit:
            return bitmap, (y0, x0)
    return None


# --------------------------------------------------------------------------- rendering


_Shader = Callable[[np.ndarray, np.ndarray], tuple[float | np.ndarray, np.ndarray]]


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    return n / (n.std() + 1e-6)


def _smoothstep(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return v * v * (3 - 2 * v)


def _tissue_lowres(spec: PhantomSpec, lay: _Layout, factor: int) -> np.ndarray:
    """Fat, fibroglandular tissue and thickness fall-off at 1/`factor` resolution."""
    rows, cols = spec.shape
    h, w = -(-rows // factor), -(-cols // factor)
    rng = _rng(spec, 2)
    y = ((np.arange(h) + 0.5) * factor - 0.5)[:, None].astype(np.float32)
    x = ((np.arange(w) + 0.5) * factor - 0.5)[None, :].astype(np.float32)
    depth = np.interp(y[:, 0], np.arange(rows), lay.depth).astype(np.float32)[:, None]
    mask = x < depth
    dist = ndimage.distance_transform_edt(mask).astype(np.float32) * factor
    thick = _smoothstep(dist / (0.07 * cols))
    yn, xn = lay.nipple
    # Radial streaks converging on the nipple: smoothed noise on a polar grid.
    r = np.hypot(y - yn, x - xn)
    theta = np.arctan2(y - yn, xn - x)
    n_r, n_t = 128, 720
    polar = ndimage.gaussian_filter(rng.standard_normal((n_r, n_t)), (5.0, 1.2), mode="wrap")
    polar /= polar.std()
    r_max = float(np.hypot(rows, cols))
    coords = np.stack(np.broadcast_arrays(r / r_max * (n_r - 1), (theta + np.pi) / (2 * np.pi) * n_t))
    radial = ndimage.map_coordinates(polar, coords, order=1, mode="grid-wrap").astype(np.float32)
    u = np.clip((xn - x) / max(xn, 1.0), 0.0, 1.0)  # 0 at the nipple, 1 at the chest wall
    tilt = -0.45 * rows if lay.pectoral else 0.0  # MLO tissue runs up toward the axilla
    axis = yn + tilt * u
    spread = (0.10 + 0.18 * u) * rows
    envelope = np.exp(-(((y - axis) / spread) ** 2)) * _smoothstep(u / 0.12) * (1 - 0.45 * u)
    blobs = _noise(rng, (h, w), 0.018 * rows / factor)
    fine = _noise(rng, (h, w), 0.006 * rows / factor)
    radial *= (0.03 + 0.12 * envelope) * _smoothstep(r / (0.12 * rows))
    field_ = 1.3 * envelope + 0.30 * blobs + radial + 0.12 * fine
    inner = mask & (thick > 0.4)
    frac = _GLAND_FRACTION[spec.density]
    thr = np.quantile(field_[inner], 1 - frac) if inner.any() else 1.0
    gland = 1 / (1 + np.exp(-(field_ - thr) / 0.12))
    ridges = np.clip(1 - np.abs(_noise(rng, (h, w), 0.01 * rows / factor)), 0, 1) ** 10
    tissue = _FAT + (_GLAND - _FAT) * gland + 0.10 * ridges * (1 - gland) + 0.04 * fine
    return (tissue * (0.55 + 0.45 * thick) * mask).astype(np.float32)


def _blend(img: np.ndarray, y: float, x: float, half: float, fn: _Shader) -> None:
    """Blend `fn(dy, dx) -> (level, alpha)` into the square of half-size `half` around (y, x)."""
    rows, cols = img.shape
    y0, y1 = max(0, int(y - half)), min(rows, int(y + half) + 2)
    x0, x1 = max(0, int(x - half)), min(cols, int(x + half) + 2)
    if y0 >= y1 or x0 >= x1:
        return
    dy = (np.arange(y0, y1, dtype=np.float32) - y)[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) - x)[None, :]
    patch = img[y0:y1, x0:x1]
    level, alpha = fn(dy, dx)
    patch += alpha * (level - patch)


def _draw_mass(img: np.ndarray, m: tuple[float, float, float, bool], rng: np.random.Generator) -> None:
    y, x, radius, spiculated = m
    n_sp = int(rng.integers(20, 32)) if spiculated else 0
    sp_angle = rng.uniform(0, 2 * np.pi, n_sp)
    sp_len = radius * rng.uniform(0.9, 2.4, n_sp)
    sp_w = np.maximum(0.8, radius * rng.uniform(0.03, 0.07, n_sp))
    k = np.arange(2, 8)
    amp = rng.uniform(0.0, 0.09 if spiculated else 0.03, k.size)
    phase = rng.uniform(0, 2 * np.pi, k.size)

    def fn(dy: np.ndarray, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rr = np.hypot(dy, dx)
        th = np.arctan2(dy, dx)
        edge = radius * (1 + (amp[:, None, None] * np.sin(k[:, None, None] * th + phase[:, None, None])).sum(0))
        soft = max(0.6, radius * (0.06 if spiculated else 0.15))
        alpha = 1 / (1 + np.exp(-(edge - rr) / soft))
        return _MASS + 0.04 * np.cos(rr / max(radius, 1) * 3.0), alpha.astype(np.float32)

    _blend(img, y, x, radius * 1.5 + 2, fn)
    for a, ln, wd in zip(sp_angle, sp_len, sp_w):  # each spicule in its own small patch
        mid = 0.5 * (0.5 * radius + radius + ln)  # centre of the segment from 0.5 r to r + ln
        half = 0.5 * (radius * 0.5 + ln) * max(abs(np.cos(a)), abs(np.sin(a))) + 3 * wd + 2

        def spicule(
            dy: np.ndarray, dx: np.ndarray, a: float = a, ln: float = ln, wd: float = wd
        ) -> tuple[float, np.ndarray]:
            along = mid + dx * np.cos(a) + dy * np.sin(a)
            perp = -dx * np.sin(a) + dy * np.cos(a)
            taper = np.clip(1 - (along - radius) / ln, 0, 1) * (along > 0.5 * radius)
            return _MASS, (0.7 * taper * np.exp(-((perp / (wd * taper + 0.35)) ** 2))).astype(np.float32)

        _blend(img, y + mid * np.sin(a), x + mid * np.cos(a), half, spicule)


def _draw_cluster(img: np.ndarray, c: tuple[float, float, float, int], rng: np.random.Generator) -> None:
    y, x, radius, count = c
    rows = img.shape[0]
    for _ in range(count):
        cy, cx = np.round(np.array([y, x]) + rng.normal(0, radius / 2.2, 2).clip(-radius, radius))
        sd = max(0.6, rows / 1400 * rng.uniform(0.6, 1.8))
        stretch = rng.uniform(1.0, 2.5)
        ang = rng.uniform(0, np.pi)

        def fn(dy: np.ndarray, dx: np.ndarray) -> tuple[float, np.ndarray]:
            a = (dx * np.cos(ang) + dy * np.sin(ang)) / stretch
            b = -dx * np.sin(ang) + dy * np.cos(ang)
            return _CALC, (np.exp(-(a * a + b * b) / (2 * sd * sd))).astype(np.float32)

        _blend(img, cy, cx, 4 * sd * stretch + 1, fn)


def _render(spec: PhantomSpec, lay: _Layout) -> np.ndarray:
    rows, cols = spec.shape
    factor = max(1, rows // 512)
    low = _tissue_lowres(spec, lay, factor)
    if factor > 1:
        img = np.array(Image.fromarray(low).resize((cols, rows), Image.Resampling.BILINEAR))
    else:
        img = low[:rows, :cols].copy()
    rng = _rng(spec, 3)
    xs = np.arange(cols, dtype=np.float32)[None, :]
    depth = lay.depth.astype(np.float32)[:, None]
    slope = np.gradient(lay.depth).astype(np.float32)[:, None]
    normal = (depth - xs) / np.sqrt(1 + np.minimum(slope * slope, 400.0))  # distance to skin
    sw = max(0.8, 0.0025 * rows)
    skin = np.clip(1 - np.abs(normal - sw) / sw, 0, 1)
    img += skin * (_SKIN - img)
    if lay.pectoral:
        pw, ph, gamma = lay.pectoral
        n = int(min(rows, ph + 2))
        yy = np.arange(n, dtype=np.float32)[:, None]
        xp = pw * np.clip(1 - yy / ph, 0, 1) ** gamma
        m = int(min(cols, pw + 2))
        alpha = np.clip(xp - xs[:, :m] + 0.5, 0, 1) * (xp > 0)
        streak = 0.012 * _smooth1d(rng, m, max(1.0, cols / 150))[None, :]
        streak = streak + 0.025 * _smooth1d(rng, n, max(1.0, rows / 40))[:, None]
        level = _PECT + 0.06 * (1 - xs[:, :m] / max(pw, 1)) - 0.06 * yy / ph + streak
        img[:n, :m] += (0.92 * alpha * (level - img[:n, :m])).astype(np.float32)
    for m_ in lay.masses:
        _draw_mass(img, m_, rng)
    for c in lay.clusters:
        _draw_cluster(img, c, rng)
    detail = _noise(rng, (-(-rows // 2), -(-cols // 2)), 1.0)  # texture finer than the tissue map
    img *= 1 + 0.05 * np.array(Image.fromarray(detail).resize((cols, rows), Image.Resampling.BILINEAR))
    inside = np.clip(depth - xs, 0, 1)  # background stays exactly 0
    grain = rng.standard_normal((rows, cols), dtype=np.float32)
    img = (img + grain * (0.012 * inside)) * inside
    np.clip(img, 0.0, 1.0, out=img)
    if lay.flip:
        img = img[:, ::-1].copy()
    if (box := _marker_box(spec, lay)) is not None:
        (h, w), (y0, x0) = box[0].shape, box[1]
        img[y0 : y0 + h, x0 : x0 + w][box[0]] = 1.0
    return img.astype(np.float32, copy=False)


def _truth(spec: PhantomSpec, lay: _Layout) -> PhantomTruth:
    rows, cols = spec.shape

    def fx(x: float) -> float:
        return cols - 1 - x if lay.flip else x

    masses = tuple(
        LesionTruth("spiculated_mass" if s else "mass", y, fx(x), r) for y, x, r, s in lay.masses
    )
    clusters = tuple(LesionTruth("calcifications", y, fx(x), r, n) for y, x, r, n in lay.clusters)
    present = np.flatnonzero(lay.depth > 0.5)
    d_max = int(np.ceil(lay.depth.max()))
    cols_box = (cols - d_max, cols) if lay.flip else (0, d_max)
    bbox = (int(present[0]), cols_box[0], int(present[-1]) + 1, cols_box[1])
    pect = None
    if lay.pectoral:
        pw, ph, _ = lay.pectoral
        pect = ((0.0, fx(0.0)), (0.0, fx(pw)), (ph, fx(0.0)))
    markers: tuple[tuple[int, int, int, int], ...] = ()
    if (box := _marker_box(spec, lay)) is not None:
        (h, w), (y0, x0) = box[0].shape, box[1]
        markers = ((y0, x0, y0 + h, x0 + w),)
    return PhantomTruth(
        spec.shape, spec.laterality, spec.view, spec.density,
        "right" if lay.flip else "left", (lay.nipple[0], fx(lay.nipple[1])),
        bbox, pect, masses, clusters, markers,
    )  # fmt: skip


def render(spec: PhantomSpec) -> np.ndarray:
    """The phantom as float32 [rows, cols] in [0, 1] (1 = dense, like a displayed MONOCHROME2)."""
    return _render(spec, _layout(spec))


def ground_truth(spec: PhantomSpec) -> PhantomTruth:
    """Where `render(spec)` puts the breast, lesions and markers (cheap: draws nothing)."""
    return _truth(spec, _layout(spec))


def render_with_truth(spec: PhantomSpec) -> tuple[np.ndarray, PhantomTruth]:
    """`render` and `ground_truth` in one call."""
    lay = _layout(spec)
    return _render(spec, lay), _truth(spec, lay)


# --------------------------------------------------------------------------- DICOM


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _patient_orientation(spec: PhantomSpec) -> list[str]:
    """(row direction, column direction) of the stored pixels, as the MG IOD wants them."""
    row = "A" if (spec.laterality == "L") != spec.mirrored else "P"
    return [row, "F" if spec.view != "CC" else "R" if spec.laterality == "L" else "L"]


def _header(
    sop_class: UID, sop_uid: str | None, patient_id: str, patient_name: str, birth_date: str,
    study_uid: str | None, series_uid: str | None, date: str, series: int, instance: int,
) -> Dataset:  # fmt: skip
    """File meta, patient, study, series and instance attributes every written file carries."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = f"ACC{patient_id}"[:16], "1", ""
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = birth_date, "F"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = series, instance
    ds.Manufacturer, ds.ManufacturerModelName = "mammo-review phantom", "inference.phantom"
    ds.InstitutionName = "Synthetic"
    return ds


def _resolve_ts(transfer_syntax: str) -> UID:
    ts = TRANSFER_SYNTAXES.get(transfer_syntax) or transfer_syntax
    if ts not in TRANSFER_SYNTAXES.values():
        names = ", ".join(TRANSFER_SYNTAXES)
        raise ValueError(f"unsupported transfer syntax {transfer_syntax!r} (use one of {names})")
    return UID(ts)


def _voi(ds: Dataset, mode: VoiMode, max_value: int, inverted: bool) -> None:
    lo_f, hi_f = 0.05, 1.0  # the tissue range of a phantom, in displayed [0, 1] units
    if inverted:
        lo_f, hi_f = 1 - hi_f, 1 - lo_f
    lo, hi = int(lo_f * max_value), int(hi_f * max_value)
    if mode in ("window", "sigmoid"):
        ds.WindowCenter, ds.WindowWidth = f"{(lo + hi) / 2:.1f}", f"{hi - lo:.1f}"
        ds.WindowCenterWidthExplanation = "PHANTOM"
        if mode == "sigmoid":
            ds.VOILUTFunction = "SIGMOID"
    elif mode == "lut":
        n = hi - lo + 1
        t = np.linspace(-4.0, 4.0, n)
        lut = np.round(4095 * (1 / (1 + np.exp(-t)) - 1 / (1 + np.exp(4))) / (1 - 2 / (1 + np.exp(4))))
        item = Dataset()
        item.LUTDescriptor = [n if n < 65536 else 0, lo, 12]
        item.LUTExplanation = "PHANTOM SIGMOID"
        item.add_new(0x00283006, "OW", np.clip(lut, 0, 4095).astype("<u2").tobytes())
        ds.VOILUTSequence = DicomSequence([item])
    elif mode is not None:
        raise ValueError(f"voi_lut must be None, 'window', 'sigmoid' or 'lut', got {mode!r}")


def _gdcm_jpeg_lossless(ds: Dataset, folder: Path) -> bytes:
    """Encapsulated JPEG lossless (process 14, SV1) pixel data, encoded by python-gdcm."""
    import gdcm  # python-gdcm: the only installed encoder of this syntax

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, dst = Path(tmp) / "native.dcm", Path(tmp) / "jpeg.dcm"
        dcmwrite(src, ds, enforce_file_format=True)
        reader, change, writer = gdcm.ImageReader(), gdcm.ImageChangeTransferSyntax(), gdcm.ImageWriter()
        reader.SetFileName(str(src))
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        writer.SetFileName(str(dst))
        if reader.Read():
            change.SetInput(reader.GetImage())
            writer.SetFile(reader.GetFile())
            if change.Change():
                writer.SetImage(change.GetOutput())
                if writer.Write():
                    return dcmread(dst).PixelData
        raise ValueError(f"{dst}: python-gdcm could not encode JPEG lossless")


def write_dicom(
    path: str | Path,
    image: np.ndarray,
    *,
    spec: PhantomSpec | None = None,
    patient_id: str = "PHANTOM001",
    patient_name: str = "Phantom^Patient",
    birth_date: str = "19650101",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    study_date: str = "20240115",
    bits_stored: int = 12,
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2",
    voi_lut: VoiMode = "window",
    transfer_syntax: str = "explicit",
    tags_mode: TagsMode = "standard",
    series_number: int = 1,
    instance_number: int = 1,
    pixel_spacing_mm: float | None = None,
) -> Path:
    """Write `image` (float [0, 1], 1 = bright) as an MG For Presentation DICOM file.

    `transfer_syntax` is a key of `TRANSFER_SYNTAXES` or its UID; "jpeg-baseline" stores 8 bits
    whatever `bits_stored` says. MONOCHROME1 stores inverted values. `tags_mode`: "standard"
    (ImageLaterality, ViewPosition, ViewCodeSequence, Laterality, PatientOrientation),
    "text_only" (only SeriesDescription / ProtocolName such as "L MLO"), "none" (nowhere).
    """
    path = Path(path)
    ts = _resolve_ts(transfer_syntax)
    for name, value, allowed in (
        ("tags_mode", tags_mode, ("standard", "text_only", "none")),
        ("photometric", photometric, ("MONOCHROME1", "MONOCHROME2")),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    if tags_mode != "none" and spec is None:
        raise ValueError("a spec is needed to write laterality and view")
    bits = 8 if ts == JPEGBaseline8Bit else int(bits_stored)
    if ts != JPEGBaseline8Bit and not 12 <= bits <= 16:
        raise ValueError(f"bits_stored must be 12..16, got {bits_stored}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    max_value = (1 << bits) - 1
    stored = np.round(np.clip(image, 0.0, 1.0) * max_value)
    if photometric == "MONOCHROME1":
        stored = max_value - stored
    stored = stored.astype(np.uint8 if bits == 8 else np.uint16)
    rows, cols = image.shape
    spacing = pixel_spacing_mm or round(300.0 / rows, 4)

    ds = _header(MG_FOR_PRESENTATION, sop_uid, patient_id, patient_name, birth_date, study_uid,
                 series_uid, study_date, series_number, instance_number)  # fmt: skip
    for keyword, value in {
        "ImageType": ["ORIGINAL", "PRIMARY", ""], "AcquisitionDate": study_date,
        "Modality": "MG", "PresentationIntentType": "FOR PRESENTATION",
        "BodyPartExamined": "BREAST", "KVP": "29", "BodyPartThickness": "45",
        "AnatomicRegionSequence": DicomSequence([_code("T-04000", "SRT", "Breast")]),
        "PositionerType": "MAMMOGRAPHIC", "DetectorType": "DIRECT", "BreastImplantPresent": "NO",
        "PartialView": "NO", "BurnedInAnnotation": "YES" if spec and spec.markers else "NO",
        "PixelSpacing": [spacing, spacing], "ImagerPixelSpacing": [spacing, spacing],
        "PixelIntensityRelationship": "LOG",
        "PixelIntensityRelationshipSign": -1 if photometric == "MONOCHROME2" else 1,
    }.items():  # fmt: skip
        setattr(ds, keyword, value)
    if tags_mode == "standard" and spec is not None:
        ds.Laterality = ds.ImageLaterality = spec.laterality
        ds.ViewPosition = spec.view
        ds.PatientOrientation = _patient_orientation(spec)
        code = _code(*_VIEW_CODES[spec.view][:1], "SRT", _VIEW_CODES[spec.view][1])
        code.ViewModifierCodeSequence = DicomSequence([])
        ds.ViewCodeSequence = DicomSequence([code])
        ds.SeriesDescription = ds.ProtocolName = "SCREENING MAMMOGRAPHY"
    elif tags_mode == "text_only" and spec is not None:
        ds.SeriesDescription = ds.ProtocolName = spec.label
    else:
        ds.SeriesDescription = "MAMMOGRAPHY"
    ds.set_pixel_data(stored, photometric, bits, generate_instance_uid=False)
    _voi(ds, voi_lut, max_value, photometric == "MONOCHROME1")

    if ts in (RLELossless, JPEG2000Lossless, JPEGLSLossless):
        plugin = "pyjpegls" if ts == JPEGLSLossless else ""
        ds.compress(ts, stored, encoding_plugin=plugin, generate_instance_uid=False)
    elif ts in (JPEGBaseline8Bit, JPEGLosslessSV1):
        path.parent.mkdir(parents=True, exist_ok=True)
        if ts == JPEGBaseline8Bit:
            buffer = io.BytesIO()
            Image.fromarray(stored).save(buffer, "JPEG", quality=95)
            ds.PixelData = encapsulate([buffer.getvalue()])
            ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
        else:
            ds.PixelData = _gdcm_jpeg_lossless(ds, path.parent)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = ts
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_non_image_dicom(
    path: str | Path,
    kind: Literal["sr", "gsps"] = "sr",
    *,
    patient_id: str = "PHANTOM001",
    study_uid: str | None = None,
) -> Path:
    """A DICOM file with no pixel data: a Basic Text SR or a Grayscale Softcopy Presentation State."""
    if kind not in ("sr", "gsps"):
        raise ValueError(f"kind must be 'sr' or 'gsps', got {kind!r}")
    path = Path(path)
    sop_class = _BASIC_TEXT_SR if kind == "sr" else _GSPS
    ds = _header(sop_class, None, patient_id, "Phantom^Patient", "", study_uid, None, "20240115", 99, 1)
    if kind == "sr":
        ds.Modality, ds.ValueType, ds.ContinuityOfContent = "SR", "CONTAINER", "SEPARATE"
        ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
        ds.ConceptNameCodeSequence = DicomSequence([_code("11528-7", "LN", "Radiology Report")])
        text = Dataset()
        text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
        text.ConceptNameCodeSequence = DicomSequence([_code("121071", "DCM", "Finding")])
        text.TextValue = "Synthetic phantom report. Not a diagnosis."
        ds.ContentSequence = DicomSequence([text])
    else:
        ds.Modality, ds.ContentLabel, ds.PresentationLUTShape = "PR", "PHANTOM", "IDENTITY"
        ds.PresentationCreationDate, ds.PresentationCreationTime = "20240115", "093000"
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    return path


_STUDY_VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


def write_study(
    folder: str | Path,
    *,
    patient_id: str = "PHANTOM001",
    patient_name: str = "Phantom^Patient",
    birth_date: str = "19650101",
    study_date: str = "20240115",
    shape: tuple[int, int] = (256, 192),
    density: Density = "B",
    malignant_side: Laterality | None = None,
    seed: int = 0,
    markers: bool = True,
    **encoding: Any,
) -> list[Path]:
    """A 4-view screening study (R CC, L CC, R MLO, L MLO) in `folder`, sharing one study UID.

    Files are named IM1.dcm .. IM4.dcm in that order. The `malignant_side` breast gets a
    spiculated mass and a calcification cluster at the same depth in both views. UIDs derive
    from `seed` and `patient_id`, so a study is reproducible byte for byte. `encoding` goes to
    `write_dicom`: transfer_syntax, bits_stored, photometric, voi_lut, tags_mode.
    """
    folder = Path(folder)
    rng = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, 77]))
    depth, mass_r = rng.uniform(0.25, 0.45), rng.uniform(0.03, 0.045)
    key = [str(seed), patient_id, study_date]
    study_uid = generate_uid(entropy_srcs=[*key, "study"])
    paths = []
    for i, (lat, view) in enumerate(_STUDY_VIEWS, start=1):
        y = rng.uniform(0.35, 0.6) if view == "CC" else rng.uniform(0.4, 0.6)
        sick = lat == malignant_side
        spec = PhantomSpec(
            lat, view, density, shape=shape, seed=seed * 16 + i, markers=markers,  # type: ignore[arg-type]
            masses=(Mass(y, depth, mass_r, True),) if sick else (),
            calcifications=(CalcCluster(y + 0.09, depth * 1.1, 0.02, 14),) if sick else (),
        )  # fmt: skip
        path = write_dicom(
            folder / f"IM{i}.dcm", render(spec), spec=spec,
            patient_id=patient_id, patient_name=patient_name, birth_date=birth_date,
            study_date=study_date, study_uid=study_uid,
            series_uid=generate_uid(entropy_srcs=[*key, "series", str(i)]),
            sop_uid=generate_uid(entropy_srcs=[*key, "image", str(i)]),
            series_number=i, **encoding,
        )  # fmt: skip
        paths.append(path)
    return paths


def _to_uint(image: np.ndarray, bits: int) -> np.ndarray:
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    top = 255 if bits == 8 else 65535
    values = np.round(np.clip(np.asarray(image, np.float32), 0, 1) * top)
    return values.astype(np.uint8 if bits == 8 else np.uint16)


def write_png(path: str | Path, image: np.ndarray, bits: int = 8) -> Path:
    """Save a [0, 1] image as a grayscale PNG of 8 or 16 bits (a .pgm/.tif suffix works too)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_to_uint(image, bits)).save(path)
    return path


def write_jpeg(path: str | Path, image: np.ndarray, quality: int = 92) -> Path:
    """Save a [0, 1] image as an 8-bit grayscale JPEG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_to_uint(image, 8)).save(path, "JPEG", quality=quality)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m inference.phantom OUTDIR --studies N --rows R --cols C [--seed S]`."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.phantom",
        description="Write synthetic 4-view mammography studies (phantoms) as DICOM.",
    )
    parser.add_argument("outdir", type=Path)
    for name, default in (("--studies", 1), ("--rows", 1024), ("--cols", 768), ("--seed", 0)):
        parser.add_argument(name, type=int, default=default)
    parser.add_argument("--density", choices=list(_GLAND_FRACTION), default=None,
                        help="BI-RADS density of every study (default: varies)")  # fmt: skip
    parser.add_argument("--transfer-syntax", choices=list(TRANSFER_SYNTAXES), default="explicit")
    parser.add_argument("--bits", type=int, default=12)
    parser.add_argument("--monochrome1", action="store_true")
    parser.add_argument("--tags", choices=["standard", "text_only", "none"], default="standard")
    parser.add_argument("--malignant", choices=["cycle", "R", "L", "none"], default="cycle",
                        help="breast with a cancer (default: R, none, L in turn)")  # fmt: skip
    parser.add_argument("--patient-id", default=None, help="PatientID (and folder) of study 1")
    args = parser.parse_args(argv)
    densities = "BCAD"
    for n in range(args.studies):
        patient = f"PHANTOM{args.seed:03d}{n:03d}"
        if args.patient_id:
            patient = args.patient_id if n == 0 else f"{args.patient_id}-{n}"
        side = ("R", None, "L")[n % 3] if args.malignant == "cycle" else args.malignant
        paths = write_study(
            args.outdir / patient, patient_id=patient, patient_name=f"Phantom^{n:03d}",
            shape=(args.rows, args.cols), density=args.density or densities[n % 4],
            malignant_side=None if side == "none" else side, seed=args.seed * 1000 + n,
            transfer_syntax=args.transfer_syntax, bits_stored=args.bits,
            photometric="MONOCHROME1" if args.monochrome1 else "MONOCHROME2",
            tags_mode=args.tags,
        )  # fmt: skip
        print(f"{patient}: {len(paths)} images in {paths[0].parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
