"""The review queue's orders and progress."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from inference.labels.review import ReviewProgress, disagreement, prediction_uncertainty, progress, review_queue
from inference.labels.store import CombinedLabel, LabelStore


@dataclass(frozen=True)
class Pred:
    """The two fields of inference.model.predict.Prediction the queue reads."""

    p_malignant_std: float
    probabilities: dict[str, tuple[float, ...]] = field(default_factory=dict)


PREDS = {
    "a": Pred(0.05, {"malignancy": (0.9, 0.1), "density": (0.1, 0.7, 0.1, 0.1)}),
    "b": Pred(0.20, {"malignancy": (0.5, 0.5), "density": (0.25, 0.25, 0.25, 0.25)}),
    "c": Pred(0.10, {"malignancy": (0.2, 0.8), "density": (0.0, 0.0, 0.1, 0.9)}),
    # "d" has no prediction
}
KEYS = ["a", "b", "c", "d"]


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    s = LabelStore(tmp_path / "labels.sqlite")
    yield s
    s.close()


def test_uncertainty_measures() -> None:
    assert prediction_uncertainty(PREDS["b"]) == 0.20
    assert prediction_uncertainty(PREDS["b"], "entropy") == pytest.approx(1.0)
    assert prediction_uncertainty(PREDS["a"], "entropy") == pytest.approx(0.469, abs=1e-3)
    assert math.isnan(prediction_uncertainty(None))
    with pytest.raises(ValueError, match="measure"):
        prediction_uncertainty(PREDS["a"], "variance")


def test_uncertainty_order_missing_predictions_last(store: LabelStore) -> None:
    assert [i.key for i in review_queue(KEYS, PREDS, store)] == ["b", "c", "a", "d"]
    assert [i.key for i in review_queue(KEYS, PREDS, store, measure="entropy")] == ["b", "c", "a", "d"]


def test_disagreement_order(store: LabelStore) -> None:
    store.set_label("a", "malignancy", "malignant", 1.0, annotator="r")  # model says 0.1: strong disagreement
    store.set_label("c", "malignancy", "malignant", 0.9, annotator="r")  # model agrees (0.8)
    store.set_label("b", "density", "D", 0.5, annotator="r")  # model 0.25, but the label is unsure
    queue = review_queue(KEYS, PREDS, store, order="disagreement")
    assert [i.key for i in queue] == ["a", "b", "c", "d"]
    assert queue[0].disagreement == pytest.approx(0.9)
    assert queue[1].disagreement == pytest.approx(0.75 * 0.5)
    assert disagreement(PREDS["c"], {"density": CombinedLabel(None, 1.0)}) == 0.0


def test_unlabelled_first_and_progress(store: LabelStore) -> None:
    store.set_label("b", "view", "CC", annotator="r")
    store.set_label("c", "view", "MLO", annotator="s")
    store.set_label("a", "view", "MLO", 0.8, annotator="model", status="suggested", source="model")
    queue = review_queue(KEYS, PREDS, store, order="unlabelled")
    assert [i.key for i in queue] == ["a", "d", "b", "c"]  # a only has a suggestion: not reviewed
    assert [i.reviewed for i in queue] == [False, False, True, True]
    mine = review_queue(KEYS, PREDS, store, order="unlabelled", annotator="r")
    assert [i.key for i in mine] == ["c", "a", "d", "b"]
    assert progress(KEYS, store) == ReviewProgress(2, 4)
    assert progress(KEYS, store, "s").fraction == 0.25
    assert str(progress(KEYS, store)) == "2 / 4 reviewed"


def test_unknown_order_is_refused(store: LabelStore) -> None:
    with pytest.raises(ValueError, match="order"):
        review_queue(KEYS, PREDS, store, order="random")
