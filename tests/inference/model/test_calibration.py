"""Temperature scaling from the manifest: the maths, the checks at load, and the runtime applying it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.errors import ManifestError
from inference.imaging.decode import load_image
from inference.model.calibration import apply_temperature
from inference.model.predict import predict
from inference.model.session import ModelSession
from inference.phantoms.generator import PhantomSpec, render, write_png

TEST_HEIGHT = 128


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def _calibrated_copy(model: Path, folder: Path, calibration: dict[str, Any]) -> Path:
    dst = folder / "cal.onnx"
    shutil.copyfile(model, dst)
    data = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    data["calibration"] = calibration
    dst.with_suffix(".json").write_text(json.dumps(data), encoding="utf-8")
    return dst


def test_temperature_on_probabilities_equals_softmax_of_scaled_logits() -> None:
    logits = np.random.default_rng(0).normal(0, 3, (50, 4))
    p = _softmax(logits).astype(np.float32)
    for t in (0.5, 1.7, 4.0):
        np.testing.assert_allclose(apply_temperature(p, t), _softmax(logits / t), atol=1e-5)
    assert apply_temperature(p, 1.0) is p
    # ranking kept, confidence lowered by T > 1
    soft = apply_temperature(p, 2.0)
    assert (soft.argmax(1) == p.argmax(1)).all()
    assert (soft.max(1) <= p.max(1) + 1e-6).all()


def test_zero_probabilities_stay_finite() -> None:
    p = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    out = apply_temperature(p, 3.0)
    assert np.isfinite(out).all() and np.allclose(out.sum(1), 1.0)


@pytest.mark.parametrize(
    "calibration, message",
    [
        ({"malignancy": {"method": "temperature", "temperature": 0.0}}, "temperature"),
        ({"malignancy": {"method": "temperature", "temperature": "2"}}, "temperature"),
        ({"malignancy": {"method": "temperature", "temperature": float("nan")}}, "temperature"),
        ({"malignancy": {"method": "isotonic", "temperature": 2.0}}, "not a temperature scaling"),
        ({"segmentation-x": {"method": "temperature", "temperature": 2.0}}, "does not predict"),
    ],
)
def test_load_refuses_a_calibration_it_cannot_apply(
    tiny_model: Path, tmp_path: Path, calibration: dict[str, Any], message: str
) -> None:
    path = _calibrated_copy(tiny_model, tmp_path, calibration)
    with pytest.raises(ManifestError, match=message) as info:
        ModelSession.load(path, device="cpu")
    assert "cal.json" in str(info.value)


def test_session_and_predict_apply_the_temperature(tiny_model: Path, tmp_path: Path) -> None:
    t = 3.0
    path = _calibrated_copy(
        tiny_model, tmp_path,
        {"malignancy": {"method": "temperature", "temperature": t, "fitted_on": "tuning", "n": 30},
         "density": {"method": "temperature", "temperature": 0.5}},
    )
    plain = ModelSession.load(tiny_model, device="cpu")
    cal = ModelSession.load(path, device="cpu")
    batch = np.random.default_rng(1).random((2, 1, TEST_HEIGHT, 128), dtype=np.float32)
    raw, out = plain.run(batch), cal.run(batch)
    np.testing.assert_allclose(out["malignancy"], apply_temperature(raw["malignancy"], t), atol=1e-6)
    np.testing.assert_allclose(out["density"], apply_temperature(raw["density"], 0.5), atol=1e-6)
    np.testing.assert_array_equal(out["view"], raw["view"])
    np.testing.assert_array_equal(cal.run(batch, calibrated=False)["malignancy"], raw["malignancy"])

    image_path = write_png(tmp_path / "p.png", render(PhantomSpec("L", "CC", "B", shape=(256, 192), seed=3)))
    image = load_image(image_path)
    (p_plain,) = predict(plain, [image])
    (p_cal,) = predict(cal, [image])
    assert p_cal.p_malignant == pytest.approx(float(apply_temperature(raw_p(p_plain), t)[1]), abs=1e-5)
    # the Monte-Carlo mean uses the calibrated head too: closer to 0.5 than uncalibrated at T > 1
    assert abs(p_cal.p_malignant_mc_mean - 0.5) <= abs(p_plain.p_malignant_mc_mean - 0.5) + 1e-9


def raw_p(pred: Any) -> np.ndarray:
    return np.array(pred.probabilities["malignancy"], np.float32)
