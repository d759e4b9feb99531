"""Training augmentation: the paper's geometric one and an intensity one for other acquisitions.

:class:`Augment` is the paper's: translation, zoom and vertical flip, each with probability 0.5; no
horizontal flip (the chest wall stays on the left, as preprocessing put it) and no shear.
:class:`IntensityAugment` changes how the breast looks, not where it is: resolution jitter, blur,
gamma, contrast and window jitter, Gaussian noise, so that film, CESM low-energy and full-field
digital images look less like three fixed styles. :class:`Compose` chains them.

Maps that belong to the image (the lesion target and weight, on a coarser grid of the same
extent) go through ``with_maps(image, maps, rng)``: the geometric transform moves them exactly as
the image (the same draw, the affine rewritten for the coarser grid), the intensity one leaves
them alone. ``__call__`` is ``with_maps`` without maps and draws the same numbers.

Randomness comes only from the ``numpy.random.Generator`` passed to each call, and every call
draws the same count of numbers whatever it applies, so a run that saves and restores that
generator's state repeats its augmentations exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Augment", "IntensityAugment", "Compose", "INTENSITY_OPS", "Map"]

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Map:
    """A map that travels with an image: ``[h, w]`` on a grid ``stride`` times coarser than the
    image's, filled with ``fill`` where a move brings in space from outside."""

    data: np.ndarray
    stride: int = 1
    fill: float = 0.0


@dataclass(frozen=True)
class Augment:
    """``Augment()(image, rng)`` -> a randomly moved copy of a preprocessed ``[H, W]`` image.

    - translation (p): up to ``translate_y`` of the height up/down and ``translate_x`` of the
      width right (never left, which would cut off the chest wall);
    - zoom (p): a factor in ``zoom`` about the middle of the chest-wall edge;
    - vertical flip (p): upside down (a left MLO flipped vertically still looks like a breast).
    Empty space is filled with 0 (background).
    """

    p: float = 0.5
    translate_y: float = 0.1
    translate_x: float = 0.05
    zoom: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"probability {self.p} is outside [0, 1]")
        if not 0.0 < self.zoom[0] <= self.zoom[1]:
            raise ValueError(f"zoom range {self.zoom} is not a positive interval")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.with_maps(image, (), rng)[0]

    def with_maps(
        self, image: np.ndarray, maps: Sequence[Map], rng: np.random.Generator
    ) -> tuple[np.ndarray, tuple[Map, ...]]:
        """The moved image and its maps, moved the same way."""
        a = np.asarray(image, np.float32)
        h, w = a.shape
        # draw every number every time so the generator advances the same way whatever is applied
        do_shift, do_zoom, do_flip = rng.random(3) < self.p
        dy = rng.uniform(-self.translate_y, self.translate_y) * h
        dx = rng.uniform(0.0, self.translate_x) * w
        s = rng.uniform(*self.zoom)
        moved = list(maps)
        if do_shift or do_zoom:
            s = s if do_zoom else 1.0
            dy, dx = (dy, dx) if do_shift else (0.0, 0.0)
            # output (y, x) samples input ((y - cy - dy) / s + cy, (x - dx) / s), centre cy = h/2 on the left edge
            cy = (h - 1) / 2.0
            scale, oy, ox = 1.0 / s, cy - (cy + dy) / s, -dx / s
            a = _affine(a, scale, oy, ox, 1, 0.0)
            np.clip(a, 0.0, 1.0, out=a)
            moved = [Map(_affine(m.data, scale, oy, ox, m.stride, m.fill), m.stride, m.fill) for m in moved]
        if do_flip:
            a = a[::-1]
            moved = [Map(m.data[::-1], m.stride, m.fill) for m in moved]
        out = tuple(Map(np.ascontiguousarray(m.data, dtype=np.float32), m.stride, m.fill) for m in moved)
        return np.ascontiguousarray(a, dtype=np.float32), out


def _affine(a: np.ndarray, scale: float, oy: float, ox: float, stride: int, fill: float) -> np.ndarray:
    """``out[y, x] = in[scale * y + oy, scale * x + ox]`` (image pixels) on a grid ``stride`` times
    coarser, whose cell ``j`` is centred on image pixel ``stride * j + (stride - 1) / 2``."""
    c = (stride - 1) / 2.0
    offset = np.array([(scale * c + oy - c) / stride, (scale * c + ox - c) / stride])
    out: np.ndarray = ndimage.affine_transform(
        np.asarray(a, np.float32), np.array([scale, scale]), offset=offset, order=1, mode="constant",
        cval=fill, prefilter=False,
    )
    return out


INTENSITY_OPS: tuple[str, ...] = ("resolution", "blur", "gamma", "contrast", "window", "noise")


@dataclass(frozen=True)
class IntensityAugment:
    """``IntensityAugment()(image, rng)`` -> a copy of a preprocessed ``[H, W]`` image in [0, 1]
    with its grey levels and sharpness changed; each op applies with probability ``p``, in this order:

    - resolution: down-sampled by a factor in ``resolution`` and back (linear), as a coarser detector;
    - blur: Gaussian, sigma in ``blur_sigma`` pixels;
    - gamma: ``x ** g``, log ``g`` uniform in log ``gamma``;
    - contrast: scaled by a factor in ``contrast`` about the breast's mean;
    - window: the breast's grey range re-windowed, each end moved by up to ``window`` of the range;
    - noise: Gaussian, sigma in ``noise_sigma``, inside the breast only.

    The breast is where the input is above ``background`` (preprocessing set the background to 0):
    background pixels stay 0 for gamma, contrast, window and noise, so no op puts grey where the
    runtime always shows black. The result is clipped to [0, 1].
    """

    p: float = 0.5
    resolution: tuple[float, float] = (0.5, 0.9)
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.8, 1.25)
    window: float = 0.1
    noise_sigma: tuple[float, float] = (0.005, 0.03)
    background: float = 0.0
    only: tuple[str, ...] = INTENSITY_OPS  # the ops that may apply (tests force one at a time)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"probability {self.p} is outside [0, 1]")
        unknown = [o for o in self.only if o not in INTENSITY_OPS]
        if unknown:
            raise ValueError(f"unknown intensity op(s) {unknown}; choose from {', '.join(INTENSITY_OPS)}")
        for name in ("resolution", "blur_sigma", "gamma", "contrast", "noise_sigma"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise ValueError(f"{name} range {(lo, hi)} is not a positive interval")
        if not 0.0 < self.resolution[1] <= 1.0:
            raise ValueError(f"resolution range {self.resolution} must lie in (0, 1]")
        if not 0.0 <= self.window < 0.5:
            raise ValueError(f"window jitter {self.window} is outside [0, 0.5)")

    def with_maps(
        self, image: np.ndarray, maps: Sequence[Map], rng: np.random.Generator
    ) -> tuple[np.ndarray, tuple[Map, ...]]:
        """The changed image; its maps as they were (grey levels move no lesion)."""
        return self(image, rng), tuple(maps)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = np.array(image, dtype=np.float32)  # a copy: the cached array is never changed
        # draw every number every time so the generator advances the same way whatever is applied
        apply = dict(zip(INTENSITY_OPS, (rng.random(len(INTENSITY_OPS)) < self.p).tolist(), strict=True))
        factor = rng.uniform(*self.resolution)
        sigma = rng.uniform(*self.blur_sigma)
        g = float(np.exp(rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1]))))
        c = rng.uniform(*self.contrast)
        lo_shift, hi_shift = rng.uniform(-self.window, self.window, 2)
        noise_sigma = rng.uniform(*self.noise_sigma)
        noise_seed = int(rng.integers(0, 2**63 - 1))
        on = {op: apply[op] and op in self.only for op in INTENSITY_OPS}

        breast = a > self.background
        if not breast.any():
            return a
        h, w = a.shape
        if on["resolution"] and factor < 1.0:
            small = ndimage.zoom(a, factor, order=1, mode="nearest", grid_mode=True)
            a = ndimage.zoom(small, (h / small.shape[0], w / small.shape[1]), order=1, mode="nearest", grid_mode=True)
        if on["blur"]:
            a = ndimage.gaussian_filter(a, sigma, mode="nearest")
        np.clip(a, 0.0, 1.0, out=a)
        if on["gamma"]:
            a = np.power(a, g, dtype=np.float32)
        if on["contrast"]:
            mean = float(a[breast].mean())
            a = (a - mean) * c + mean
        if on["window"]:
            # the window [lo + s1 * span, hi + s2 * span] is stretched onto the breast's range [lo, hi]
            lo, hi = float(a[breast].min()), float(a[breast].max())
            span = max(hi - lo, 1e-6)
            w_lo, w_hi = lo + lo_shift * span, hi + hi_shift * span
            a = lo + (a - w_lo) * (span / max(w_hi - w_lo, 1e-6))
        if on["noise"]:
            a = a + np.random.default_rng(noise_seed).normal(0.0, noise_sigma, a.shape).astype(np.float32)
        np.clip(a, 0.0, 1.0, out=a)
        a[~breast] = np.float32(0.0)
        return np.ascontiguousarray(a, dtype=np.float32)


@dataclass(frozen=True)
class Compose:
    """Apply transforms in order, each with the same generator."""

    transforms: Sequence[Transform]

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            image = t(image, rng)
        return image

    def with_maps(
        self, image: np.ndarray, maps: Sequence[Map], rng: np.random.Generator
    ) -> tuple[np.ndarray, tuple[Map, ...]]:
        """Each transform in order on the image and its maps (one without ``with_maps`` moves no map,
        which is an error when there are maps)."""
        out = tuple(maps)
        for t in self.transforms:
            step = getattr(t, "with_maps", None)
            if step is None:
                if out:
                    raise TypeError(f"{t!r} cannot carry maps with the image")
                image = t(image, rng)
            else:
                image, out = step(image, out, rng)
        return image, out
