"""The predictions panel: the model's view against the file's, as an icon with a tooltip."""

from __future__ import annotations

import dataclasses
from typing import Any

from app.widgets.predictions_panel import PredictionsPanel

from .test_explorer import fake_backend


def test_view_disagreement_is_an_icon_with_a_tooltip_not_a_red_line(qtbot, make_state) -> None:
    base = fake_backend(8)

    def predict(session: Any, images: Any) -> list:
        preds = base.predict(session, images)
        out = []
        for p in preds:  # the model sees MLO on K0000 (a CC by its tag), agrees elsewhere
            if p.key == "K0000":
                p = dataclasses.replace(p, probabilities={**p.probabilities, "view": (0.03, 0.97)})
            out.append(p)
        return out

    state = make_state(backend=dataclasses.replace(base, predict=predict))
    panel = PredictionsPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    state.open_paths(["/nowhere"])
    qtbot.waitUntil(lambda: len(state.runner.predictions) == 8 and not state.pool.running(), timeout=30000)
    state.files.set_current("K0000")
    assert panel.view_icon.isVisible()
    tip = panel.view_icon.toolTip()
    assert "The model sees MLO (97%); the file says CC (from the DICOM header)" in tip
    assert "red" not in panel.view_flag.styleSheet() and "#ff6b6b" not in panel.view_flag.styleSheet()
    assert "⚠" not in panel.view_flag.text() and "bold" not in panel.view_flag.styleSheet()
    assert panel.view_flag.text() == "Model view MLO · file CC"
    state.files.set_current("K0001")  # the model agrees: no icon
    assert not panel.view_icon.isVisible() and panel.view_icon.toolTip() == ""
    assert panel.view_flag.text() == "Model view CC; the file says CC"
