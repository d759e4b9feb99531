"""DisplayState: view and overlay requests, and the overlay's colour range derived from the current study."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal

from app.models.display import DisplayState, overlay_range
from app.models.files import FilesState
from inference.imaging.studies import ImageRecord, Study, StudySet
from inference.model.predict import Prediction
from inference.model.preprocess import Geometry

GEOMETRY = Geometry((64, 48), False, (0, 64, 0, 48), (64, 48), (64, 64))


def _record(i: int) -> ImageRecord:
    return ImageRecord(
        key=f"K{i}", path=Path(f"/nowhere/{i}.dcm"), kind="dicom", patient_id=f"P{i // 2}", patient_name="",
        study_uid=f"S{i // 2}", study_date="", study_description="", series_uid="", sop_uid=f"K{i}",
        laterality="RL"[i % 2], laterality_source="tag", view="CC", view_source="tag", rows=64, cols=48,
        transfer_syntax="",
    )  # fmt: skip


class _Runner(QObject):
    """What DisplayState reads of the model runner: predictions, the manifest, model changes."""

    model_changed = Signal()

    def __init__(self, predictions: dict[str, Prediction]) -> None:
        super().__init__()
        self.predictions = predictions
        self.prediction_with_maps = predictions.get
        self.manifest: object = None


def _prediction(key: str, peak: float) -> Prediction:
    evidence = np.zeros((4, 4), np.float32)
    evidence[1, 1] = peak
    mi = np.full((64, 64), 0.5, np.float32)
    recon = mi + np.float32(peak / 10)
    z = np.zeros(8, np.float32)
    return Prediction(key, "v", {}, 0.5, 0.5, 0.01, z, GEOMETRY, mi, recon, evidence)


@pytest.fixture
def parts(settings):  # two studies of two images
    files = FilesState()
    records = [_record(i) for i in range(4)]
    studies = (Study("P0", "S0", "", "", tuple(records[:2])), Study("P1", "S1", "", "", tuple(records[2:])))
    files.load(StudySet(studies, ()))
    files.announce()  # K0 becomes current
    preds = {f"K{i}": _prediction(f"K{i}", peak) for i, peak in enumerate((1.0, 2.0, 5.0, 3.0))}
    runner = _Runner(preds)
    return files, runner, DisplayState(settings, files, runner)  # type: ignore[arg-type]


def test_overlay_range_follows_kind_study_and_predictions(parts) -> None:
    files, runner, display = parts
    assert display.overlay_range == (0.0, 1.0)  # no overlay
    display.set_overlay(kind="evidence")
    first = overlay_range("evidence", [runner.predictions["K0"], runner.predictions["K1"]])
    assert display.overlay_range == first and first[1] > 0
    display.set_overlay(kind="error")
    assert display.overlay_range == overlay_range("error", [runner.predictions["K0"], runner.predictions["K1"]])
    display.set_overlay(kind="evidence")
    assert display.overlay_range == first
    # a new prediction of a shown image changes the range (no signal needed: it is derived on demand)
    runner.predictions["K1"] = _prediction("K1", 4.0)
    assert display.overlay_range == overlay_range("evidence", [runner.predictions["K0"], runner.predictions["K1"]])
    assert display.overlay_range != first
    # another study: its own range
    files.set_current("K2")
    assert display.overlay_range == overlay_range("evidence", [runner.predictions["K2"], runner.predictions["K3"]])


def test_view_and_overlay_requests_emit_once_and_validate(qtbot, parts, settings) -> None:
    _, _, display = parts
    with qtbot.waitSignal(display.display_changed):
        display.set_view(layout="cc")
    assert display.view.layout == "cc" and settings.layout == "cc"
    with qtbot.assertNotEmitted(display.display_changed):
        display.set_view(layout="cc")
    display.set_window(100.0, 0.0)
    assert display.view.window == (100.0, 1e-6)
    display.set_view(preset="soft")  # a preset drops the explicit window
    assert display.view.window is None and display.view.preset == "soft"
    display.reset()
    assert (display.view.preset, display.view.inverted) == ("default", False)
    with qtbot.waitSignal(display.overlay_changed):
        display.toggle_overlay("error")
    assert display.overlay.kind == "error"
    display.toggle_overlay("error")
    assert display.overlay.kind == "none"
    display.set_overlay(opacity=3.0)
    assert display.overlay.opacity == 1.0 and settings.overlay_opacity == 1.0
    with pytest.raises(ValueError):
        display.set_overlay(kind="heat")
    with pytest.raises(ValueError):
        display.set_view(layout="grid")


def test_the_lesion_overlay_is_offered_only_while_the_model_has_the_output(qtbot, parts) -> None:
    _, runner, display = parts
    assert "lesion" not in display.choices and "evidence" in display.choices
    with pytest.raises(ValueError, match="no 'lesion' output"):
        display.set_overlay(kind="lesion")
    runner.manifest = SimpleNamespace(outputs={"evidence": [None, 1, 4, None], "lesion": [None, 1, 16, None]})
    with qtbot.waitSignal(display.overlay_changed):  # the choices changed with the model
        runner.model_changed.emit()
    assert "lesion" in display.choices
    display.set_overlay(kind="lesion")
    assert display.overlay_range == (0.0, 1.0)  # a probability: one fixed scale
    runner.manifest = None  # back to a model without the output: the overlay goes
    runner.model_changed.emit()
    assert display.overlay.kind == "none" and "lesion" not in display.choices
