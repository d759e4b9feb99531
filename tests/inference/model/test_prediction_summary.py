"""A prediction without its maps is its own type (:class:`PredictionSummary`), not a prediction with empty arrays."""

from __future__ import annotations

import dataclasses

import numpy as np

from inference.model.predict import Prediction, PredictionSummary
from inference.model.preprocess import Geometry


def test_without_maps_keeps_every_number_and_drops_the_maps() -> None:
    geo = Geometry((64, 48), False, (0, 64, 0, 48), (64, 48), (64, 64))
    mi = np.ones((64, 64), np.float32)
    full = Prediction("k", "v1", {"malignancy": (0.2, 0.8)}, 0.8, 0.75, 0.05, np.arange(4, dtype=np.float32), geo,
                      mi, mi * 0.5, np.ones((4, 4), np.float32))  # fmt: skip
    summary = full.without_maps()
    assert type(summary) is PredictionSummary and not isinstance(summary, Prediction)
    names = [f.name for f in dataclasses.fields(PredictionSummary)]
    assert names and all(getattr(summary, n) is getattr(full, n) for n in names)
    assert not any(hasattr(summary, n) for n in ("model_input", "reconstruction", "evidence", "lesion"))
    maps = {f.name for f in dataclasses.fields(Prediction)} - set(names)
    assert maps == {"model_input", "reconstruction", "evidence", "lesion"}
