"""Training data: label-manifest rows -> preprocessed arrays (cached on disk) -> padded batches.

An image goes through exactly the runtime's path: ``inference.imaging.decode.load_image(path)`` then
``inference.model.predict.prepare(image, height)`` (the runtime's preprocessing, with the breast and
chest-wall side the decoder found). The result is cached as ``<cache>/<height>/<digest>.npy`` so later epochs only read
arrays. Batches hold images of one width (``collate`` can still pad mixed widths with background 0).

With lesion records (:mod:`training.lesions`) each image also gets its lesion target and weight on
the model's ``H/4`` grid, made through the geometry of that same preprocessing call (so they lie
exactly under the image) and cached beside the image as ``<digest>.lesion4.npy``; the geometric
augmentation moves them with the image. An image without a record has weight 0 everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inference.errors import FormatError, ImageReadError, PreprocessError
from inference.formats import TASK_CLASSES, TASKS, LabelRow, read_label_manifest
from inference.imaging.decode import load_image
from inference.model.predict import ModelInput, prepare
from training.augment import Map
from training.lesions import LesionRecord, lesion_maps
from training.loss import LesionTargets, TaskTargets
from training.model import LESION_STRIDE

__all__ = ["model_input", "model_array", "Sample", "Batch", "ImageDataset", "plan_batches", "collate", "load_manifest"]

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def model_input(path: str | Path, height: int) -> ModelInput:
    """The model input of one image file and its geometry, exactly as the runtime makes them."""
    return prepare(load_image(path), height)


def model_array(path: str | Path, height: int) -> np.ndarray:
    """The model input of one image file, exactly as the runtime makes it."""
    return model_input(path, height).array


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # [H, W] float32
    targets: dict[str, tuple[int, float]]  # task -> (class index or -1, weight)
    lesion: np.ndarray | None = None  # [2, H/4, W/4]: lesion target and weight; None: nothing known


@dataclass(frozen=True)
class Batch:
    image: torch.Tensor  # [N, 1, H, W]
    targets: dict[str, TaskTargets]
    indices: tuple[int, ...]
    lesion: LesionTargets | None = None  # None when no image of the batch says anything


def load_manifest(path: str | Path, split: str | None = None) -> tuple[list[LabelRow], Path]:
    """Rows of a label manifest (optionally one split) and the folder its relative paths start from."""
    path = Path(path)
    rows = read_label_manifest(path)
    if split:
        rows = [r for r in rows if r.split == split]
    return rows, path.resolve().parent


class ImageDataset:
    """A list of rows plus an optional random transform (MONAI style)."""

    def __init__(
        self,
        rows: Sequence[LabelRow],
        height: int,
        root: str | Path = ".",
        cache_dir: str | Path | None = None,
        transform: Transform | None = None,
        lesions: dict[str, LesionRecord] | None = None,
    ) -> None:
        self.rows = list(rows)
        self.lesions = lesions or {}
        self.height = height
        self.root = Path(root)
        self.cache_dir = None if cache_dir is None else Path(cache_dir) / str(height)
        self.transform = transform
        self._arrays: dict[int, np.ndarray] = {}
        self._lesion: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def path(self, i: int) -> Path:
        p = Path(self.rows[i].image)
        return p if p.is_absolute() else self.root / p

    def _cache_file(self, i: int) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(f"{self.rows[i].key}|{self.path(i).resolve()}".encode()).hexdigest()[:32]
        return self.cache_dir / f"{digest}.npy"

    def array(self, i: int) -> np.ndarray:
        """The preprocessed image ``[H, W]`` (from memory, the disk cache, or made now)."""
        if i in self._arrays:
            return self._arrays[i]
        a = _cached(self._cache_file(i), lambda: model_array(self.path(i), self.height))
        self._arrays[i] = a
        return a

    def lesion(self, i: int) -> np.ndarray | None:
        """``[2, H/4, W/4]`` lesion target and weight of image ``i`` (None without a record)."""
        record = self.lesions.get(self.rows[i].key)
        if record is None:
            return None
        if i in self._lesion:
            return self._lesion[i]
        maps: np.ndarray | None = None
        if record.kind == "none":
            h, w = self.array(i).shape
            maps = np.stack([np.zeros((h // LESION_STRIDE, w // LESION_STRIDE), np.float32),
                             np.ones((h // LESION_STRIDE, w // LESION_STRIDE), np.float32)])
        else:
            image_cache = self._cache_file(i)
            cache = None if image_cache is None else image_cache.with_suffix(f".lesion{LESION_STRIDE}.npy")

            def make() -> np.ndarray:
                item = model_input(self.path(i), self.height)
                a, geometry = item.array, item.geometry
                if a.shape != self.array(i).shape:
                    raise PreprocessError(f"{self.path(i)}: lesion maps and the cached image disagree in size")
                return lesion_maps(record, geometry, LESION_STRIDE)

            maps = _cached(cache, make)
        self._lesion[i] = maps
        return maps

    def prepare(self, progress: Callable[[int, int], None] | None = None) -> list[tuple[int, str]]:
        """Preprocess (or read from cache) every image; returns (index, reason) of those that failed."""
        failed = []
        for i in range(len(self)):
            try:
                self.array(i)
                self.lesion(i)
            except (ImageReadError, PreprocessError, FormatError) as exc:
                failed.append((i, str(exc)))
            if progress is not None:
                progress(i + 1, len(self))
        return failed

    def subset(self, keep: Iterable[int]) -> ImageDataset:
        keep = list(keep)
        out = ImageDataset([self.rows[i] for i in keep], self.height, self.root, None, self.transform, self.lesions)
        out.cache_dir = self.cache_dir
        out._arrays = {j: self._arrays[i] for j, i in enumerate(keep) if i in self._arrays}
        out._lesion = {j: self._lesion[i] for j, i in enumerate(keep) if i in self._lesion}
        return out

    def width(self, i: int) -> int:
        return int(self.array(i).shape[1])

    def targets(self, i: int) -> dict[str, tuple[int, float]]:
        row = self.rows[i]
        out = {}
        for t in TASKS:
            lab = row.label(t)
            out[t] = (-1, 0.0) if lab.value is None else (TASK_CLASSES[t].index(lab.value), lab.weight)
        return out

    def sample(self, i: int, rng: np.random.Generator | None = None) -> Sample:
        a = self.array(i)
        lesion = self.lesion(i)
        if self.transform is not None:
            if rng is None:
                raise ValueError("a random transform needs a numpy Generator")
            with_maps = getattr(self.transform, "with_maps", None)
            if lesion is not None and with_maps is not None:
                maps = (Map(lesion[0], LESION_STRIDE, 0.0), Map(lesion[1], LESION_STRIDE, 1.0))
                a, moved = with_maps(a, maps, rng)
                lesion = np.stack([m.data for m in moved])
            elif lesion is not None:
                raise TypeError(f"the transform {self.transform!r} cannot move lesion maps with the image")
            else:
                a = self.transform(a, rng)
        return Sample(a, self.targets(i), lesion)


def plan_batches(widths: Sequence[int], batch_size: int, rng: np.random.Generator | None = None) -> list[list[int]]:
    """Batches of indices of images of the SAME width (no padding, so instance normalisation sees
    exactly what it sees at run time): shuffle, group by width, cut, shuffle the batches.
    Without ``rng``: in order of width, then index."""
    idx = np.arange(len(widths)) if rng is None else rng.permutation(len(widths))
    by_width: dict[int, list[int]] = {}
    for i in idx.tolist():
        by_width.setdefault(int(widths[i]), []).append(i)
    batches = [
        group[k : k + batch_size]
        for w in sorted(by_width)
        for group in [by_width[w]]
        for k in range(0, len(group), batch_size)
    ]
    if rng is None:
        return batches
    order = rng.permutation(len(batches))
    return [batches[j] for j in order]


def collate(samples: Sequence[Sample], indices: Sequence[int] = ()) -> Batch:
    """Stack samples into ``[N, 1, H, Wmax]`` (zero padding on the right) and per-task targets."""
    h = samples[0].image.shape[0]
    wmax = max(s.image.shape[1] for s in samples)
    x = np.zeros((len(samples), 1, h, wmax), np.float32)
    for k, s in enumerate(samples):
        x[k, 0, :, : s.image.shape[1]] = s.image
    targets = {}
    for t in TASKS:
        idx = torch.tensor([s.targets[t][0] for s in samples], dtype=torch.int64)
        w = torch.tensor([s.targets[t][1] for s in samples], dtype=torch.float32)
        targets[t] = TaskTargets(idx.clamp_min(0), w)
    lesion = None
    if any(s.lesion is not None for s in samples):
        # padding and images without a record: weight 0 (nothing known there)
        maps = np.zeros((len(samples), 2, h // LESION_STRIDE, wmax // LESION_STRIDE), np.float32)
        for k, s in enumerate(samples):
            if s.lesion is not None:
                maps[k, :, :, : s.lesion.shape[2]] = s.lesion
        both = torch.from_numpy(maps)
        lesion = LesionTargets(both[:, :1].contiguous(), both[:, 1:].contiguous())
    return Batch(torch.from_numpy(x), targets, tuple(indices), lesion)


def _cached(cache: Path | None, make: Callable[[], np.ndarray]) -> np.ndarray:
    """The array in ``cache`` (a .npy file), else ``make()``, saved there atomically (None: no cache)."""
    if cache is not None and cache.exists():
        try:
            loaded: np.ndarray = np.load(cache, allow_pickle=False)
            return loaded
        except (OSError, ValueError):
            pass  # a damaged cache file is made again
    a = make()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, a)
        tmp.replace(cache)
    return a
