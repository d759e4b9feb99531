"""The review queue: which image a person should look at next, and how far the review has got.

Three orders (:data:`ORDERS`):

- ``"uncertainty"``: the model's least certain images first: the Monte-Carlo dropout standard
  deviation of p(malignant) (``measure="std"``) or the entropy of the malignancy probabilities
  (``measure="entropy"``); images without a prediction last.
- ``"disagreement"``: images whose current (combined) label the model contradicts most first:
  for each labelled task ``(1 - p_model(label class)) * (1 - u)``, the largest over the tasks; then
  by uncertainty.
- ``"unlabelled"``: images nobody (or the given annotator) has confirmed first, each group by
  uncertainty.

Ties keep the order the keys were given in (hanging order). Pure functions: no Qt, no store I/O
beyond reading.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from inference.formats import TASK_CLASSES
from inference.labels.store import CombinedLabel, LabelRecord, LabelStore, combine

__all__ = [
    "ORDERS",
    "QueueItem",
    "ReviewProgress",
    "PredictionLike",
    "prediction_uncertainty",
    "disagreement",
    "review_queue",
    "progress",
]

ORDERS: tuple[str, ...] = ("uncertainty", "disagreement", "unlabelled")


class PredictionLike(Protocol):
    """What the queue needs of :class:`inference.model.predict.Prediction` (read-only)."""

    @property
    def probabilities(self) -> Mapping[str, Sequence[float]]: ...

    @property
    def p_malignant_std(self) -> float: ...


@dataclass(frozen=True)
class QueueItem:
    """One image in the queue: its place comes from ``score`` (higher first) within its group."""

    key: str
    score: float
    uncertainty: float  # NaN when there is no prediction
    disagreement: float  # 0 when unlabelled or no prediction
    reviewed: bool


@dataclass(frozen=True)
class ReviewProgress:
    reviewed: int
    total: int

    @property
    def fraction(self) -> float:
        return self.reviewed / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.reviewed} / {self.total} reviewed"


def prediction_uncertainty(pred: PredictionLike | None, measure: str = "std") -> float:
    """The model's uncertainty about malignancy: MC-dropout std or entropy (bits); NaN without one."""
    if pred is None:
        return math.nan
    if measure == "std":
        return float(pred.p_malignant_std)
    if measure == "entropy":
        p = pred.probabilities.get("malignancy")
        if not p:
            return math.nan
        return float(-sum(q * math.log2(q) for q in p if q > 0.0))
    raise ValueError(f"unknown uncertainty measure {measure!r} (expected 'std' or 'entropy')")


def disagreement(pred: PredictionLike | None, labels: Mapping[str, CombinedLabel]) -> float:
    """How much the model contradicts the labels: max over labelled tasks of (1 - p(label)) * (1 - u)."""
    if pred is None:
        return 0.0
    worst = 0.0
    for task, lab in labels.items():
        probs = pred.probabilities.get(task)
        classes = TASK_CLASSES.get(task, ())
        if lab.value is None or not probs or lab.value not in classes or len(probs) != len(classes):
            continue
        p = float(probs[classes.index(lab.value)])
        worst = max(worst, (1.0 - p) * (1.0 - lab.uncertainty))
    return worst


def review_queue(
    keys: Iterable[str],
    predictions: Mapping[str, PredictionLike],
    store: LabelStore | None = None,
    *,
    order: str = "uncertainty",
    annotator: str | None = None,
    measure: str = "std",
) -> list[QueueItem]:
    """The keys in review order (see the module docstring); ``annotator`` narrows "reviewed"."""
    if order not in ORDERS:
        raise ValueError(f"unknown queue order {order!r} (expected one of {', '.join(ORDERS)})")
    keys = list(dict.fromkeys(keys))
    reviewed = store.reviewed_keys(annotator) if store is not None else set()
    combined: dict[str, dict[str, CombinedLabel]] = {}
    if store is not None and order == "disagreement":  # one read for all images
        by_key: dict[str, list[LabelRecord]] = {}
        for rec in store.labels():
            by_key.setdefault(rec.key, []).append(rec)
        combined = {k: combine(v) for k, v in by_key.items()}
    items: list[tuple[tuple[float, ...], int, QueueItem]] = []
    for i, key in enumerate(keys):
        pred = predictions.get(key)
        u = prediction_uncertainty(pred, measure)
        d = disagreement(pred, combined.get(key, {}))
        u_rank = -1.0 if math.isnan(u) else u
        done = key in reviewed
        rank: tuple[float, ...]
        if order == "uncertainty":
            score, rank = u_rank, (-u_rank,)
        elif order == "disagreement":
            score, rank = d, (-d, -u_rank)
        else:
            score, rank = u_rank, (float(done), -u_rank)
        items.append((rank, i, QueueItem(key, score, u, d, done)))
    items.sort(key=lambda t: (t[0], t[1]))
    return [t[2] for t in items]


def progress(keys: Iterable[str], store: LabelStore, annotator: str | None = None) -> ReviewProgress:
    """How many of ``keys`` have a confirmed label (by ``annotator``, or by anyone)."""
    keys = set(keys)
    return ReviewProgress(len(keys & store.reviewed_keys(annotator)), len(keys))
