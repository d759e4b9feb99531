"""The intensity augmentation: seeded, range-preserving, each op effective, background left black."""

from __future__ import annotations

import numpy as np
import pytest

from training.augment import INTENSITY_OPS, Augment, Compose, IntensityAugment
from training.train import TrainConfig, training_transform


def breast(h: int = 128, w: int = 96, seed: int = 0) -> np.ndarray:
    """A half-disc 'breast' on the left edge with textured grey levels in about [0.2, 0.9]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    inside = ((y - h / 2) / (h / 2)) ** 2 + (x / (0.9 * w)) ** 2 < 1.0
    tissue = 0.55 + 0.25 * np.sin(y / 5.0) * np.cos(x / 7.0) + 0.1 * rng.standard_normal((h, w))
    return np.where(inside, np.clip(tissue, 0.2, 0.9), 0.0).astype(np.float32)


def test_same_seed_same_result_and_the_input_is_not_changed() -> None:
    image = breast()
    before = image.copy()
    aug = IntensityAugment()
    a = [aug(image, np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    np.testing.assert_array_equal(image, before)
    outs = {aug(image, np.random.default_rng(s)).tobytes() for s in range(8)}
    assert len(outs) > 1  # and other seeds give other images


def test_the_generator_advances_the_same_whatever_is_applied() -> None:
    image = breast()
    states = []
    for p in (0.0, 0.5, 1.0):
        rng = np.random.default_rng(3)
        IntensityAugment(p=p)(image, rng)
        states.append(rng.bit_generator.state["state"]["state"])
    assert states[0] == states[1] == states[2]


@pytest.mark.parametrize("seed", range(5))
def test_range_dtype_shape_and_background_are_kept(seed: int) -> None:
    image = breast(seed=seed)
    out = IntensityAugment(p=1.0)(image, np.random.default_rng(seed))
    assert out.dtype == np.float32 and out.shape == image.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.all(out[image == 0] == 0.0)  # no op puts grey where preprocessing put black


@pytest.mark.parametrize("op", INTENSITY_OPS)
def test_each_op_changes_the_image_when_forced_on(op: str) -> None:
    image = breast()
    aug = IntensityAugment(p=1.0, only=(op,))
    for seed in range(3):
        out = aug(image, np.random.default_rng(seed))
        assert float(np.abs(out - image).mean()) > 1e-4, (op, seed)


def test_probability_zero_is_the_identity() -> None:
    image = breast()
    np.testing.assert_array_equal(IntensityAugment(p=0.0)(image, np.random.default_rng(0)), image)


def test_an_empty_image_stays_empty() -> None:
    empty = np.zeros((64, 64), np.float32)
    np.testing.assert_array_equal(IntensityAugment(p=1.0)(empty, np.random.default_rng(0)), empty)


@pytest.mark.parametrize(
    "kwargs",
    [{"p": 1.5}, {"only": ("sharpen",)}, {"gamma": (0.0, 1.0)}, {"resolution": (0.5, 1.5)}, {"window": 0.6}],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        IntensityAugment(**kwargs)  # type: ignore[arg-type]  # deliberately wrong values


def test_compose_runs_in_order_with_one_generator() -> None:
    image = breast()
    chained = Compose((IntensityAugment(p=1.0), Augment(p=1.0)))(image, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    by_hand = Augment(p=1.0)(IntensityAugment(p=1.0)(image, rng), rng)
    np.testing.assert_array_equal(chained, by_hand)


def test_the_training_transform_follows_the_config() -> None:
    assert training_transform(TrainConfig(augment=False)) is None
    assert isinstance(training_transform(TrainConfig()), Augment)
    assert isinstance(training_transform(TrainConfig(augment=False, intensity=True)), IntensityAugment)
    both = training_transform(TrainConfig(intensity=True))
    assert isinstance(both, Compose)
    assert [type(t) for t in both.transforms] == [IntensityAugment, Augment]
