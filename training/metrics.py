"""Evaluation metrics (numpy + scikit-learn), with percentile-bootstrap 95 % intervals.

AUC for binary tasks, class-balanced accuracy for multi-class ones, MCC, sensitivity and
specificity at a threshold, the threshold reaching a target sensitivity, and calibration (expected
calibration error and the reliability curve). Functions return ``nan`` where a metric is undefined
(e.g. AUC with one class present) rather than raising, so stratified tables can show a gap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import matthews_corrcoef, roc_auc_score

__all__ = [
    "Interval",
    "auc",
    "balanced_accuracy",
    "mcc",
    "sensitivity_specificity",
    "threshold_for_sensitivity",
    "expected_calibration_error",
    "ece_if_calibrated",
    "reliability_curve",
    "top_label_ece",
    "bootstrap",
    "MIN_TUNING_IMAGES",
    "MIN_TUNING_PER_CLASS",
    "too_few_for_operating_points",
]

#: A tuning split smaller than this (images with a malignancy label) gives no AUC and no operating
#: point: with 2 images the "95 %-sensitivity" threshold is one image's score, and the AUC is nan
#: or 0 / 1 by chance.
MIN_TUNING_IMAGES = 20
#: ... and each class (benign, malignant) needs at least this many images among them: the
#: 95 %-sensitivity threshold is set by the malignant ones, the specificity by the benign ones.
MIN_TUNING_PER_CLASS = 5


def too_few_for_operating_points(y: Sequence[int] | np.ndarray) -> str:
    """Why binary labels ``y`` (0 / 1) are too few for an AUC or an operating point; "" when enough."""
    y = np.asarray(y)
    n, pos = int(y.size), int(np.sum(y == 1))
    if n < MIN_TUNING_IMAGES or min(pos, n - pos) < MIN_TUNING_PER_CLASS:
        return (
            f"the tuning split has {n} image(s) with a malignancy label ({pos} malignant, {n - pos} benign); "
            f"at least {MIN_TUNING_IMAGES} with {MIN_TUNING_PER_CLASS} of each class are needed"
        )
    return ""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval and the sample it came from."""

    value: float
    low: float
    high: float
    n: int
    n_positive: int = -1

    def to_json(self) -> dict[str, float | int | list[float | None] | None]:
        def f(v: float) -> float | None:
            return None if not math.isfinite(v) else round(float(v), 4)

        out: dict[str, float | int | list[float | None] | None] = {"value": f(self.value), "ci95": None, "n": self.n}
        if math.isfinite(self.low) and math.isfinite(self.high):
            out["ci95"] = [f(self.low), f(self.high)]
        if self.n_positive >= 0:
            out["n_positive"] = self.n_positive
        return out

    def __str__(self) -> str:
        if not math.isfinite(self.value):
            return "n/a"
        ci = f" [{self.low:.3f}, {self.high:.3f}]" if math.isfinite(self.low) else ""
        return f"{self.value:.3f}{ci}"


def auc(y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """ROC AUC of scores for binary labels (nan with fewer than two classes)."""
    y = np.asarray(y)
    if y.size == 0 or np.unique(y).size < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(score, np.float64)))


def balanced_accuracy(y: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray) -> float:
    """Mean recall over the classes present in ``y``."""
    y = np.asarray(y)
    pred = np.asarray(pred)
    if y.size == 0:
        return float("nan")
    # scikit-learn's balanced_accuracy_score, without its warning when pred has extra classes
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def mcc(y: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray) -> float:
    y = np.asarray(y)
    if y.size == 0:
        return float("nan")
    return float(matthews_corrcoef(y, np.asarray(pred)))


def sensitivity_specificity(
    y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray, threshold: float
) -> tuple[float, float]:
    """(sensitivity, specificity) when ``score >= threshold`` is called positive."""
    y = np.asarray(y).astype(bool)
    pos = np.asarray(score, np.float64) >= threshold
    sens = float(pos[y].mean()) if y.any() else float("nan")
    spec = float((~pos[~y]).mean()) if (~y).any() else float("nan")
    return sens, spec


def threshold_for_sensitivity(
    y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray, target: float = 0.95
) -> float:
    """The highest threshold whose sensitivity (``score >= t``) is at least ``target``."""
    y = np.asarray(y).astype(bool)
    s = np.sort(np.asarray(score, np.float64)[y])
    if s.size == 0:
        return float("nan")
    # at most floor((1 - target) * P) positives may fall below the threshold
    k = int(math.floor((1.0 - target) * s.size + 1e-9))
    return float(s[k])


def reliability_curve(
    y: Sequence[int] | np.ndarray, prob: Sequence[float] | np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of predicted probability: (mean predicted, observed frequency, count)."""
    y = np.asarray(y, np.float64)
    p = np.asarray(prob, np.float64)
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(which, weights=p, minlength=bins) / count
        freq = np.bincount(which, weights=y, minlength=bins) / count
    return mean_p, freq, count


def expected_calibration_error(
    y: Sequence[int] | np.ndarray, prob: Sequence[float] | np.ndarray, bins: int = 10
) -> float:
    """Sum over bins of (bin share) * |observed frequency - mean predicted probability|."""
    mean_p, freq, count = reliability_curve(y, prob, bins)
    if count.sum() == 0:
        return float("nan")
    ok = count > 0
    return float(np.sum(count[ok] / count.sum() * np.abs(freq[ok] - mean_p[ok])))


def ece_if_calibrated(
    prob: Sequence[float] | np.ndarray, bins: int = 10, n_sim: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """The ECE a perfectly calibrated model with these probabilities would show on this many images:
    (median, 5th, 95th percentile) over ``n_sim`` label sets drawn as Bernoulli(p).

    ECE is biased upwards on small sets (each bin's observed frequency is noisy), so a measured ECE
    means little without this reference: on 74 images with a few malignant, even perfect calibration
    gives about 0.05-0.13. A measured ECE inside the range cannot be told from perfect calibration."""
    p = np.asarray(prob, np.float64)
    if p.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    sims = np.array([expected_calibration_error(rng.random(p.size) < p, p, bins) for _ in range(n_sim)])
    lo, mid, hi = np.percentile(sims, [5.0, 50.0, 95.0])
    return float(mid), float(lo), float(hi)


def top_label_ece(y: Sequence[int] | np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """ECE of the top class of multi-class ``probs`` ``[n, k]`` against class indices ``y``:
    confidence = the largest probability, correct = argmax equals the label."""
    p = np.asarray(probs, np.float64)
    if p.size == 0:
        return float("nan")
    hit = (p.argmax(axis=1) == np.asarray(y)).astype(np.int64)
    return expected_calibration_error(hit, p.max(axis=1), bins)


def bootstrap(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y: Sequence[int] | np.ndarray,
    score: Sequence[float] | np.ndarray,
    n: int = 1000,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> Interval:
    """``metric(y, score)`` with a 95 % percentile-bootstrap interval (resampling images, or whole
    groups, e.g. women, when ``groups`` is given). Resamples where the metric is undefined are
    dropped."""
    y = np.asarray(y)
    score = np.asarray(score)
    value = metric(y, score) if y.size else float("nan")
    npos = int(np.sum(y == 1)) if y.size and set(np.unique(y).tolist()) <= {0, 1} else -1
    if y.size < 2 or not math.isfinite(value):
        return Interval(value, float("nan"), float("nan"), int(y.size), npos)
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([i]) for i in range(y.size)]
    else:
        g = np.asarray(groups)
        members = [np.nonzero(g == k)[0] for k in dict.fromkeys(g.tolist())]
    stats = []
    for _ in range(n):
        pick = rng.integers(0, len(members), len(members))
        idx = np.concatenate([members[j] for j in pick])
        v = metric(y[idx], score[idx])
        if math.isfinite(v):
            stats.append(v)
    if len(stats) < n // 2:
        return Interval(value, float("nan"), float("nan"), int(y.size), npos)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return Interval(value, float(lo), float(hi), int(y.size), npos)
