"""Research data sets in the hanging (issue 14): grouping by file name, the model's view for files
that name none (marked), "no image" in empty cells, each image pinned by its breast's chest wall."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from app.models.state import AppState
from app.widgets.browser import StudyBrowser
from app.widgets.image_view import ImageView, ViewContent
from app.widgets.predictions_panel import PredictionsPanel
from app.widgets.viewer import HangingViewer
from inference.phantoms import generator as phantom

from ..conftest import SHAPE, wait_idle


def _open(qtbot, make_state, folder: Path) -> tuple[AppState, HangingViewer]:
    state = make_state()
    viewer = HangingViewer(state)
    qtbot.addWidget(viewer)
    viewer.resize(800, 700)
    viewer.show()
    state.open_paths([folder])
    wait_idle(qtbot, state)
    return state, viewer


def _model_says(state: AppState, view_probs: tuple[float, float]) -> None:
    """Replace the model's view probabilities (CC, MLO) of every opened image."""
    keys = tuple(state.runner.predictions)
    for key in keys:
        pred = state.runner.predictions[key]
        state.runner.predictions[key] = dataclasses.replace(
            pred, probabilities={**pred.probabilities, "view": view_probs}
        )
    state.runner.predictions_changed.emit(keys)


def _captions(viewer: HangingViewer) -> dict[str, str]:
    return {s.marker: c.view.caption.text() for c, s in zip(viewer.cells, viewer.slots, strict=False)}


def test_four_views_named_like_cdd_cesm_hang_as_one_study(qtbot, make_state, tmp_path: Path) -> None:
    for i, (side, view) in enumerate((("L", "MLO"), ("R", "CC"), ("L", "CC"), ("R", "MLO"))):
        spec = phantom.PhantomSpec(side, view, "B", shape=SHAPE, seed=60 + i)  # type: ignore[arg-type]
        phantom.write_jpeg(tmp_path / f"P66_{side}_DM_{view}.jpg", phantom.render(spec))
    state, viewer = _open(qtbot, make_state, tmp_path)
    (study,) = state.files.study_set.studies
    assert study.patient_id == "P66"
    assert [s.marker for s in viewer.slots] == ["R CC", "L CC", "R MLO", "L MLO"]
    assert all(s.key for s in viewer.slots)


def test_mini_mias_pair_hangs_in_the_mlo_cells_by_the_models_view(qtbot, make_state, tmp_path: Path) -> None:
    for n, side in ((1, "R"), (2, "L")):
        spec = phantom.PhantomSpec(side, "MLO", "B", shape=SHAPE, seed=70 + n)  # type: ignore[arg-type]
        phantom.write_png(tmp_path / f"mdb{n:03d}.png", phantom.render(spec))
    state, viewer = _open(qtbot, make_state, tmp_path)
    (study,) = state.files.study_set.studies
    assert [(r.laterality, r.view) for r in study.images] == [("R", ""), ("L", "")]
    _model_says(state, (0.01, 0.99))
    assert [(s.marker, bool(s.key)) for s in viewer.slots] == [
        ("R CC", False),
        ("L CC", False),
        ("R MLO (model)", True),
        ("L MLO (model)", True),
    ]
    captions = _captions(viewer)
    assert captions["R CC"] == captions["L CC"] == "no image"  # not "loading..." forever
    assert state.display.hanging_view(study.images[0].key) == ("MLO", True)
    _model_says(state, (0.97, 0.03))  # the model changes its mind: the images move to the CC cells
    assert [(s.marker, bool(s.key)) for s in viewer.slots][:2] == [("R CC (model)", True), ("L CC (model)", True)]


def test_browser_and_predictions_panel_name_the_models_view_as_the_viewer_does(
    qtbot, make_state, tmp_path: Path
) -> None:
    for n, side in ((1, "R"), (2, "L")):
        spec = phantom.PhantomSpec(side, "MLO", "B", shape=SHAPE, seed=70 + n)  # type: ignore[arg-type]
        phantom.write_png(tmp_path / f"mdb{n:03d}.png", phantom.render(spec))
    state = make_state()
    browser, panel = StudyBrowser(state), PredictionsPanel(state)
    for w in (browser, panel):
        qtbot.addWidget(w)
    state.open_paths([tmp_path])
    wait_idle(qtbot, state)
    keys = [r.key for r in state.files.study_set.images]
    assert state.files.current_key == keys[0]

    def view_column() -> list[str]:
        return [browser._rows[k][1].text() for k in keys]

    _model_says(state, (0.01, 0.99))
    assert view_column() == ["R MLO (model)", "L MLO (model)"]
    assert panel.title.text().startswith("R MLO (model)  ·  ")
    _model_says(state, (0.97, 0.03))
    assert view_column() == ["R CC (model)", "L CC (model)"]
    assert panel.title.text().startswith("R CC (model)  ·  ")


def test_an_image_still_loading_says_so_and_a_missing_one_says_no_image(qtbot) -> None:
    view = ImageView()
    qtbot.addWidget(view)
    view.set_content(ViewContent("", None, "L CC", chest_wall_right=False, caption="no image"))
    assert view.caption.text() == "no image"
    view.set_content(ViewContent("k", None, "L CC", chest_wall_right=False))
    assert view.caption.text() == "loading…"
    view.set_content(ViewContent("", None, "L CC", chest_wall_right=False))
    assert view.caption.text() == "no image"


@pytest.mark.parametrize("side", ["R", "L"])
def test_padded_image_is_pinned_by_its_breasts_chest_wall(qtbot, make_state, tmp_path: Path, side: str) -> None:
    """Black columns beyond the chest wall (a data set padded to a square) stay off screen."""
    pad = 120
    spec = phantom.PhantomSpec(side, "CC", "B", shape=SHAPE, seed=80, markers=False)  # type: ignore[arg-type]
    image = phantom.render(spec)
    padding = np.zeros((image.shape[0], pad), np.float32)
    padded = np.hstack([image, padding] if side == "R" else [padding, image])  # chest wall R: right edge
    phantom.write_png(tmp_path / f"case1_{side}_CC.png", padded)
    state, viewer = _open(qtbot, make_state, tmp_path)
    key = state.files.study_set.images[0].key
    view = viewer.view_of(key)
    assert view is not None and not view.mirrored
    (x0, x1), _ = view.vb.viewRange()
    w = padded.shape[1]
    if side == "R":  # the right breast hangs on the left, its chest wall against the slot's right edge
        assert x1 == pytest.approx(w - pad, abs=8)
    else:
        assert x0 == pytest.approx(pad, abs=8)


def test_an_image_that_cannot_be_decoded_says_why_instead_of_loading(qtbot, make_state, tmp_path: Path) -> None:
    for n, side in ((5, "R"), (6, "L")):
        spec = phantom.PhantomSpec(side, "MLO", "B", shape=SHAPE, seed=90 + n)  # type: ignore[arg-type]
        phantom.write_png(tmp_path / f"mdb{n:03d}.png", phantom.render(spec))
    broken = tmp_path / "mdb006.png"  # scans (header and end are whole), fails to decode
    data = bytearray(broken.read_bytes())
    start = data.find(b"IDAT") + 40
    data[start : start + 360] = bytes(b ^ 0x5A for b in data[start : start + 360])
    broken.write_bytes(bytes(data))
    state, viewer = _open(qtbot, make_state, tmp_path)
    (study,) = state.files.study_set.studies
    assert len(study.images) == 2
    state.display.set_view(layout="single")
    assert study.images[1].path == broken
    state.files.set_current(study.images[1].key)
    (cell,) = viewer.cells[:1]
    assert cell.view.caption.text().startswith("not shown: cannot decode PNG")
