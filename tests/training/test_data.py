"""The training data path: identical arrays to the runtime, caching, batching, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.imaging.decode import load_image
from inference.imaging.studies import read_record
from inference.model.pipeline import Request, work
from inference.model.predict import prepare
from training.augment import Augment
from training.data import ImageDataset, collate, load_manifest, plan_batches

from .conftest import HEIGHT


def test_training_arrays_equal_runtime_arrays(phantom_manifest: Path, tmp_path: Path) -> None:
    rows, root = load_manifest(phantom_manifest)
    cache = tmp_path / "cache"
    fresh = ImageDataset(rows, HEIGHT, root, cache)
    assert fresh.prepare() == []
    cached = ImageDataset(rows, HEIGHT, root, cache)  # now read back from the .npy cache
    assert len(list((cache / str(HEIGHT)).glob("*.npy"))) == len(rows)
    for i, row in enumerate(rows):
        record = read_record(root / row.image)
        runtime = work(Request(record, HEIGHT)).item.array  # type: ignore[union-attr]  # the decode worker's
        assert np.array_equal(runtime, prepare(load_image(record), HEIGHT).array)
        assert np.array_equal(fresh.array(i), runtime)
        assert np.array_equal(cached.array(i), runtime)
        assert runtime.dtype == np.float32 and runtime.shape[0] == HEIGHT


def test_plan_batches_groups_one_width_and_covers_everything() -> None:
    widths = [64, 128, 64, 64, 192, 128, 64, 128, 64]
    a = plan_batches(widths, 2, np.random.default_rng(5))
    b = plan_batches(widths, 2, np.random.default_rng(5))
    assert a == b
    assert sorted(i for batch in a for i in batch) == list(range(len(widths)))
    assert all(len({widths[i] for i in batch}) == 1 and len(batch) <= 2 for batch in a)
    assert plan_batches(widths, 2, np.random.default_rng(6)) != a
    ordered = plan_batches(widths, 3)
    assert [widths[batch[0]] for batch in ordered] == sorted(widths[batch[0]] for batch in ordered)


def test_collate_pads_right_and_carries_weights(phantom_manifest: Path) -> None:
    rows, root = load_manifest(phantom_manifest)
    ds = ImageDataset(rows[:3], HEIGHT, root)
    batch = collate([ds.sample(i) for i in range(3)], [0, 1, 2])
    wmax = max(ds.width(i) for i in range(3))
    assert tuple(batch.image.shape) == (3, 1, HEIGHT, wmax)
    for i in range(3):
        w = ds.width(i)
        assert np.array_equal(batch.image[i, 0, :, :w].numpy(), ds.array(i))
        assert float(batch.image[i, 0, :, w:].abs().sum()) == 0.0
    assert batch.targets["acr"].weight.tolist() == pytest.approx([0.8, 0.8, 0.8])
    assert batch.targets["malignancy"].index.tolist() == [0, 1, 0]


def test_random_transform_needs_a_generator(phantom_manifest: Path) -> None:
    rows, root = load_manifest(phantom_manifest)
    ds = ImageDataset(rows[:1], HEIGHT, root, transform=Augment())
    with pytest.raises(ValueError, match="Generator"):
        ds.sample(0)


def test_augment_is_seeded_and_keeps_shape_and_range() -> None:
    img = np.random.default_rng(0).random((128, 64)).astype(np.float32)
    aug = Augment()
    outs = [aug(img, np.random.default_rng(9)) for _ in range(2)]
    assert np.array_equal(outs[0], outs[1])
    assert outs[0].shape == img.shape and outs[0].dtype == np.float32
    assert 0.0 <= outs[0].min() and outs[0].max() <= 1.0
    changed = [not np.array_equal(aug(img, np.random.default_rng(s)), img) for s in range(10)]
    assert any(changed)


def test_augment_flips_only_vertically() -> None:
    img = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    flip_only = Augment(p=1.0, translate_y=0.0, translate_x=0.0, zoom=(1.0, 1.0))
    out = flip_only(img, np.random.default_rng(0))
    assert np.allclose(out, img[::-1], atol=1e-6)
    assert np.array_equal(Augment(p=0.0)(img, np.random.default_rng(0)), img)


def test_augment_translation_never_moves_the_chest_wall_off_the_left_edge() -> None:
    img = np.zeros((64, 64), np.float32)
    img[:, :8] = 1.0  # a bright chest-wall band at the left edge
    shift = Augment(p=1.0, translate_y=0.0, translate_x=0.0, zoom=(0.9, 1.1))
    for seed in range(5):
        out = shift(img, np.random.default_rng(seed))
        assert out[16:48, 0].min() > 0.5
