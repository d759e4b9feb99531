"""The prediction cache on its own: round trip, version separation, damaged files, size limit."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from app.models.cache import PredictionCache
from inference.model.predict import Prediction
from inference.model.preprocess import Geometry


def _prediction(key: str = "1.2.3", version: str = "v1", seed: int = 0) -> Prediction:
    rng = np.random.default_rng(seed)
    return Prediction(
        key=key,
        model_version=version,
        probabilities={"malignancy": (0.3, 0.7), "acr": (0.1, 0.1, 0.2, 0.3, 0.2, 0.1)},
        p_malignant=0.7,
        p_malignant_mc_mean=0.68,
        p_malignant_std=float("nan"),
        z=rng.random(496, dtype=np.float32),
        geometry=Geometry((300, 200), True, (10, 290, 0, 150), (128, 69), (128, 128)),
        model_input=rng.random((128, 128), dtype=np.float32),
        reconstruction=None if seed else rng.random((128, 128), dtype=np.float32),
        evidence=rng.standard_normal((8, 8)).astype(np.float32),
    )


def test_round_trip_through_disk(tmp_path: Path) -> None:
    p = _prediction()
    PredictionCache(tmp_path).put(p)
    q = PredictionCache(tmp_path).get(p.key, p.model_version)  # a fresh cache: read from disk
    assert q is not None
    assert q.probabilities == p.probabilities and q.geometry == p.geometry
    assert q.p_malignant == p.p_malignant and np.isnan(q.p_malignant_std)
    assert np.array_equal(q.z, p.z) and np.array_equal(q.evidence, p.evidence)
    assert q.model_input.dtype == np.float32
    assert np.allclose(q.model_input, p.model_input, atol=5e-4) and np.allclose(
        q.reconstruction, p.reconstruction, atol=5e-4
    )
    assert PredictionCache(tmp_path).get(p.key, "v2") is None  # another model version never reads it
    none_recon = _prediction(key="k2", seed=1)
    PredictionCache(tmp_path).put(none_recon)
    assert PredictionCache(tmp_path).get("k2", "v1").reconstruction is None


def test_damaged_entry_is_dropped(tmp_path: Path) -> None:
    p = _prediction()
    cache = PredictionCache(tmp_path)
    cache.put(p)
    (f,) = tmp_path.glob("*.npz")
    f.write_bytes(b"garbage")
    fresh = PredictionCache(tmp_path)
    assert fresh.get(p.key, p.model_version) is None
    assert fresh.disk_errors == 1 and not f.exists()


def test_size_limit_removes_the_oldest(tmp_path: Path) -> None:
    cache = PredictionCache(tmp_path, max_bytes=10**9)
    for i in range(3):
        cache.put(dataclasses.replace(_prediction(), key=f"k{i}"))
    files = sorted(tmp_path.glob("*.npz"), key=lambda p: p.stat().st_mtime)
    size = files[0].stat().st_size
    for i, f in enumerate(files):
        os.utime(f, (1000 + i, 1000 + i))
    cache.max_bytes = 2 * size + size // 2
    assert cache.prune() == 1
    assert not files[0].exists() and files[1].exists() and files[2].exists()
    assert PredictionCache(tmp_path).get("k0", "v1") is None


def test_memory_only() -> None:
    cache = PredictionCache(None, memory_entries=2)
    for i in range(3):
        cache.put(dataclasses.replace(_prediction(), key=f"k{i}"))
    assert cache.get("k0", "v1") is None and cache.get("k2", "v1") is not None


def test_a_background_write_is_on_disk_after_flush(tmp_path: Path) -> None:
    cache = PredictionCache(tmp_path)
    preds = [_prediction(key=f"k{i}") for i in range(8)]
    for p in preds:
        cache.put(p, background=True)
        assert cache.get(p.key, p.model_version) is p  # in memory at once
    cache.flush()
    fresh = PredictionCache(tmp_path)  # read from disk
    assert all(fresh.get(p.key, p.model_version) is not None for p in preds)
    assert cache.disk_errors == 0 and not list(tmp_path.glob("*.part"))
