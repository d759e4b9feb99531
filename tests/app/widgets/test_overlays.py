"""Overlay colouring and controls: the lesion overlay beside the evidence and error ones."""

from __future__ import annotations

import numpy as np

from app.widgets.overlays import OverlayControls, lut, overlay_map, overlay_rgba
from inference.model.predict import Prediction
from inference.model.preprocess import Geometry

# a 64 x 48 image, chest wall on the right (flipped), the breast's box its left 40 columns
GEOMETRY = Geometry((64, 48), True, (0, 64, 8, 48), (64, 40), (64, 64))


def _prediction(lesion: np.ndarray | None) -> Prediction:
    model_input = np.zeros((64, 64), np.float32)
    model_input[:, :40] = 0.5  # the breast the model saw
    return Prediction("k", "v", {}, 0.5, 0.5, 0.0, np.zeros(4, np.float32), GEOMETRY, model_input, None, None, lesion)


def test_the_lesion_overlay_is_the_map_on_the_original_grid_inside_the_breast() -> None:
    lesion = np.zeros((16, 16), np.float32)
    lesion[4:8, 0:2] = 1.0  # model columns 0-7: at the chest wall, which is on the right in the original
    m = overlay_map(_prediction(lesion), "lesion")
    assert m is not None and m.shape == (64, 48)
    rows, cols = np.nonzero(m > 0.5)
    assert 16 <= rows.min() and rows.max() < 32
    assert 30 <= cols.min() and cols.max() < 40  # flipped back: the box's right end (columns 8-47 of 48)
    assert overlay_map(_prediction(None), "lesion") is None
    rgba = overlay_rgba(m, "lesion", (0.0, 1.0), 1.0)
    assert rgba[m == 0, 3].max() == 0 and rgba[m > 0.9, 3].min() == 255
    assert lut("lesion").shape == (256, 4)


def test_the_controls_list_the_choices_they_are_given(qtbot) -> None:
    controls = OverlayControls()
    qtbot.addWidget(controls)
    kinds = [controls.combo.itemData(i) for i in range(controls.combo.count())]
    assert kinds == ["none", "evidence", "error"]
    controls.show_state("lesion", 0.5, (0.0, 1.0), ("none", "evidence", "error", "lesion"))
    assert controls.combo.count() == 4 and controls.combo.currentData() == "lesion"
    controls.show_state("none", 0.5, (0.0, 1.0), ("none", "evidence", "error"))
    assert controls.combo.count() == 3
