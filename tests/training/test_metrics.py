"""Metrics agree with scikit-learn and with hand-computed values on fixed arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef, roc_auc_score

from training.metrics import (
    auc,
    balanced_accuracy,
    bootstrap,
    ece_if_calibrated,
    expected_calibration_error,
    mcc,
    reliability_curve,
    sensitivity_specificity,
    threshold_for_sensitivity,
)

Y = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1])
S = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.6, 0.55, 0.7, 0.3, 0.05, 0.45])


def test_auc_matches_sklearn() -> None:
    assert auc(Y, S) == pytest.approx(roc_auc_score(Y, S))
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_balanced_accuracy_and_mcc_match_sklearn() -> None:
    y = np.array([0, 1, 2, 3, 3, 2, 1, 0, 2, 2])
    p = np.array([0, 1, 2, 2, 3, 1, 1, 0, 2, 3])
    assert balanced_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p))
    assert mcc(y, p) == pytest.approx(matthews_corrcoef(y, p))
    # a predicted class absent from y: mean recall over the classes present, as scikit-learn
    assert balanced_accuracy([0, 0, 1], [0, 3, 1]) == pytest.approx((0.5 + 1.0) / 2)


def test_sensitivity_specificity_by_hand() -> None:
    sens, spec = sensitivity_specificity(Y, S, 0.5)
    # positives 0.35 0.8 0.9 0.55 0.7 0.45 -> 4 of 6 >= 0.5; negatives: only 0.6 >= 0.5 -> 5 of 6
    assert sens == pytest.approx(4 / 6)
    assert spec == pytest.approx(5 / 6)


def test_threshold_for_sensitivity_reaches_target() -> None:
    t = threshold_for_sensitivity(Y, S, 0.95)
    assert t == pytest.approx(0.35)  # the lowest positive: 6 positives, none may be missed
    assert sensitivity_specificity(Y, S, t)[0] >= 0.95
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    s = rng.random(400)
    t = threshold_for_sensitivity(y, s, 0.9)
    assert sensitivity_specificity(y, s, t)[0] >= 0.9
    assert sensitivity_specificity(y, s, t + 1e-9)[0] < 0.9


def test_calibration_by_hand() -> None:
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.95, 0.95, 0.55])
    mean_p, freq, count = reliability_curve(y, p, bins=10)
    assert count[0] == 1 and count[9] == 2 and count[5] == 1
    assert freq[9] == 1.0 and mean_p[9] == pytest.approx(0.95)
    # bins: |0 - 0.05| * 1/4 + |1 - 0.95| * 2/4 + |1 - 0.55| * 1/4
    assert expected_calibration_error(y, p) == pytest.approx(0.05 / 4 + 0.05 / 2 + 0.45 / 4)


def test_the_ece_of_perfect_calibration_shrinks_with_the_number_of_images() -> None:
    rng = np.random.default_rng(3)
    small = rng.beta(1, 4, 74)  # a validation split's size, mostly benign
    large = rng.beta(1, 4, 5000)
    mid_small, lo_small, hi_small = ece_if_calibrated(small, n_sim=400)
    mid_large, _, hi_large = ece_if_calibrated(large, n_sim=100)
    assert 0.03 < lo_small < mid_small < hi_small < 0.2  # 74 images: far from 0 even when calibrated
    assert mid_large < 0.02 and hi_large < mid_small
    assert ece_if_calibrated(small, n_sim=400) == (mid_small, lo_small, hi_small)  # seeded
    # labels that really are Bernoulli(p) give an ECE inside the 90 % range about 90 % of the time
    inside = [lo_small <= expected_calibration_error(rng.random(74) < small, small) <= hi_small for _ in range(200)]
    assert 0.8 < np.mean(inside) <= 1.0
    assert all(math.isnan(v) for v in ece_if_calibrated(np.array([])))


def test_bootstrap_interval_contains_estimate_and_is_seeded() -> None:
    a = bootstrap(auc, Y, S, n=300, seed=3)
    b = bootstrap(auc, Y, S, n=300, seed=3)
    assert a == b
    assert a.low <= a.value <= a.high
    assert a.n == 12 and a.n_positive == 6
    grouped = bootstrap(auc, Y, S, n=300, seed=3, groups=[str(i // 2) for i in range(12)])
    assert grouped.low <= grouped.value <= grouped.high
    assert grouped.to_json()["ci95"] is not None


def test_breastwise_takes_the_max_over_a_breasts_views() -> None:
    import numpy as np

    from inference.formats import LabelRow, TaskLabel
    from training.evaluate import Predictions, evaluate_predictions

    def row(key: str, side: str, woman: str, label: str | None) -> LabelRow:
        return LabelRow(key, key, {"malignancy": TaskLabel(label)}, side, woman)

    rows = (row("a", "L", "w1", "malignant"), row("b", "L", "w1", None), row("c", "R", "w1", "benign"),
            row("d", "L", "w2", "benign"), row("e", "L", "w2", "benign"))
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4], [0.5, 0.5]], np.float32)
    res = evaluate_predictions(Predictions(rows, {"malignancy": p}), n_boot=20)
    # image-wise: positives 0.1 vs negatives 0.3, 0.4, 0.5 -> AUC 0; breast-wise: w1L 0.8 > 0.3, 0.5 -> 1
    assert res["malignancy"]["auc"]["value"] == 0.0
    assert res["malignancy"]["auc_breast"]["value"] == 1.0
    assert res["malignancy"]["auc_breast"]["n"] == 3
