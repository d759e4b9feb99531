"""Synthetic mammograms (phantoms): what to draw, the drawing, its ground truth, PNG and JPEG files.

`render` draws a displayed-style mammogram (float32 in [0, 1], 1 = dense/bright, background 0):
breast outline attached to the chest wall, skin line, fibroglandular texture whose amount follows
the BI-RADS density, pectoral muscle on MLO views, masses, calcification clusters and a burned-in
laterality/view marker. `ground_truth` gives where everything landed, in pixel coordinates. The DICOM
writers (`inference.phantoms.dicom`) build on this module; `inference.phantoms.generator` offers both.

Conventions: a left breast has its chest wall on the image's left edge, a right breast on the
right edge (nipple toward the image centre); `PhantomSpec.mirrored` flips the pixels whatever the
laterality says. Lesion positions in a spec are fractions in the *chest-wall-left* frame: `y` of
the rows from the top, `x` of the columns measured from the chest wall, `radius` of the rows.

Synthetic images only: they are not anatomy and carry no clinical meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [  # fmt: skip
    "Laterality", "View", "Density", "DENSITIES", "Mass", "CalcCluster", "PhantomSpec", "LesionTruth",
    "PhantomTruth", "render", "ground_truth", "render_with_truth", "write_png", "write_jpeg",
]

Laterality = Literal["L", "R"]
View = Literal["CC", "MLO", "ML"]
Density = Literal["A", "B", "C", "D"]
DENSITIES: tuple[Density, ...] = get_args(Density)

# Breast-fraction that is fibroglandular, per BI-RADS density.
_GLAND_FRACTION = {"A": 0.08, "B": 0.28, "C": 0.55, "D": 0.82}
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


def _as_lesions(value: object, kind: type) -> tuple[object, ...] | int:
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
        if self.view not in get_args(View):
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
    out: np.ndarray = noise / (noise.std() + 1e-9)
    return out


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
        return float(lo + frac * max(d - lo - 1.5 * r, 0.0))

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
    n: np.ndarray = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    out: np.ndarray = n / (n.std() + 1e-6)
    return out


def _smoothstep(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    out: np.ndarray = v * v * (3 - 2 * v)
    return out


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
    out: np.ndarray = (tissue * (0.55 + 0.45 * thick) * mask).astype(np.float32)
    return out


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
    for a, ln, wd in zip(sp_angle, sp_len, sp_w, strict=True):  # each spicule in its own small patch
        mid = 0.5 * (0.5 * radius + radius + ln)  # centre of the segment from 0.5 r to r + ln
        half = 0.5 * (radius * 0.5 + ln) * max(abs(np.cos(a)), abs(np.sin(a))) + 3 * wd + 2

        def spicule(
            dy: np.ndarray, dx: np.ndarray, a: float = a, ln: float = ln, wd: float = wd, mid: float = mid
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

        def fn(
            dy: np.ndarray, dx: np.ndarray, ang: float = ang, stretch: float = stretch, sd: float = sd
        ) -> tuple[float, np.ndarray]:
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
    out: np.ndarray = img.astype(np.float32, copy=False)
    return out


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
