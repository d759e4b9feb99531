"""``python -m training calibrate``: the temperature fit, the calibrated manifest, and evaluate's ECE before/after."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from inference.formats import file_sha256, read_model_manifest, write_label_manifest
from inference.model.calibration import apply_temperature
from inference.model.session import ModelSession
from tests.training.conftest import phantom_rows
from training.calibrate import fit_temperature, nll
from training.cli import main
from training.evaluate import evaluate_model
from training.metrics import MIN_TUNING_IMAGES, MIN_TUNING_PER_CLASS, too_few_for_operating_points

HEIGHT = 128  # the smallest the network takes: its deepest level is 1 x 1 at 64


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def test_fit_recovers_the_temperature_of_overconfident_outputs() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 3))
    y = np.array([rng.choice(3, p=p) for p in _softmax(logits)])  # labels drawn from the true probabilities
    over = _softmax(logits * 2.5)  # a model 2.5 x too confident
    t = fit_temperature(over, y)
    assert t == pytest.approx(2.5, rel=0.08)
    assert nll(over, y, t) < nll(over, y, 1.0)
    np.testing.assert_allclose(apply_temperature(over.astype(np.float32), t), _softmax(logits * 2.5 / t), atol=1e-4)


def test_guard_needs_enough_images_of_both_classes() -> None:
    assert too_few_for_operating_points([0, 1])  # the 2-image tuning split of issue 14
    enough = [1] * MIN_TUNING_PER_CLASS + [0] * (MIN_TUNING_IMAGES - MIN_TUNING_PER_CLASS)
    assert too_few_for_operating_points(enough) == ""
    assert too_few_for_operating_points(enough[1:] + [0])  # one malignant short
    assert "20" in too_few_for_operating_points([0] * 19 + [1])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A seeded untrained model at height 128 and 24 labelled phantoms: 20 tuning, 4 validation."""
    from training.model import build_model
    from training.onnx.export import export_onnx

    folder = tmp_path_factory.mktemp("cal")
    model = export_onnx(build_model(seed=1), folder / "m" / "tiny.onnx", height=HEIGHT, version="2.3.4",
                        card="A tiny test model.").onnx_path
    data = folder / "data"
    data.mkdir()
    rows = [dataclasses.replace(r, split="tuning" if i < 20 else "validation")
            for i, r in enumerate(phantom_rows(data, 24))]
    return model, write_label_manifest(data / "manifest.csv", rows)


def test_calibrate_command_writes_a_manifest_the_runtime_applies(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, manifest = tiny
    out = tmp_path / "out"
    assert main(["calibrate", "--model", str(model), "--manifest", str(manifest), "--out", str(out),
                 "--cache", str(tmp_path / "cache")]) == 0
    text = capsys.readouterr().out
    assert "malignancy" in text and "T=" in text and "version 2.4.0" in text
    new = read_model_manifest(out / "tiny.onnx")
    assert new.version == "2.4.0"
    assert new.onnx_sha256 == file_sha256(out / "tiny.onnx") == read_model_manifest(model).onnx_sha256
    cal = new.calibration["malignancy"]
    assert cal["method"] == "temperature" and cal["fitted_on"] == "tuning" and cal["n"] == 20
    assert cal["ece_after"] <= cal["ece_before"] + 1e-9
    card_text = (out / "tiny.md").read_text(encoding="utf-8")
    for task in {"malignancy", "acr", "density", "view"} - set(new.calibration):  # kept only where it helps
        assert f"- {task}: not calibrated (T = " in card_text and "would not lower the tuning ECE" in card_text
    points = new.operating_points["malignancy"]
    assert points["default"] == 0.5 and "sensitivity_95" in points and points["split"] == "tuning"
    card = (out / "tiny.md").read_text(encoding="utf-8")
    assert "## Calibration (2.4.0)" in card and "# Model card: tiny 2.4.0" in card
    # the original is untouched; the session of the new one scales its outputs
    assert read_model_manifest(model).calibration == {}
    raw, scaled = ModelSession.load(model, device="cpu"), ModelSession.load(out / "tiny.onnx", device="cpu")
    x = np.random.default_rng(2).random((1, 1, HEIGHT, 64), dtype=np.float32)
    np.testing.assert_allclose(
        scaled.run(x)["malignancy"], apply_temperature(raw.run(x)["malignancy"], cal["temperature"]), atol=1e-6
    )

    result = evaluate_model(out / "tiny.onnx", manifest, "validation", cache_dir=tmp_path / "cache", n_boot=20)
    assert result["calibration"]["malignancy"]["temperature"] == cal["temperature"]
    assert {"ece_uncalibrated", "ece_calibrated", "n"} <= set(result["calibration"]["malignancy"])
    json.dumps(result)


def test_small_tuning_split_gets_no_operating_point(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, manifest = tiny
    data = manifest.parent
    rows = [dataclasses.replace(r, split="tuning" if i < 2 else "validation")
            for i, r in enumerate(phantom_rows(data, 6))]
    small = write_label_manifest(data / "small.csv", rows)
    with pytest.raises(ValueError, match="nothing to calibrate"):
        main_or_raise(["calibrate", "--model", str(model), "--manifest", str(small), "--out", str(tmp_path)])
    result = evaluate_model(model, small, "validation", n_boot=10)
    points = result["operating_points"]["malignancy"]
    assert points["sensitivity_95"] is None and "at least 20" in points["not_set"]
    assert "at_sensitivity_95" not in result["malignancy"]


def main_or_raise(argv: list[str]) -> None:
    import argparse

    from training.calibrate import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    run(parser.parse_args(argv[1:]))


def test_a_temperature_that_would_not_lower_the_ece_is_not_kept(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The NLL optimum need not lower the expected calibration error; such a task keeps the model's
    own probabilities and the card says why (shown here with a forced, far too sharp temperature)."""
    import training.calibrate as calibrate_module

    model, manifest = tiny
    monkeypatch.setattr(calibrate_module, "fit_temperature", lambda p, y: 0.05)
    result = calibrate_module.calibrate(model, manifest, out=tmp_path / "out", cache_dir=tmp_path / "cache")
    assert "would not lower the tuning ECE" in result["skipped"]["malignancy"]
    assert "malignancy" not in read_model_manifest(result["onnx"]).calibration
    assert all(c["ece_after"] < c["ece_before"] for c in result["calibration"].values())
    assert "sensitivity_95" in result["operating_points"]  # set on the model's own probabilities
    assert "would not lower" in result["card"].read_text(encoding="utf-8")
