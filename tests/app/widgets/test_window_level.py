"""Window/level across studies (reset unless locked), the drag direction, and the magnifier."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.models.display import DisplayState
from app.models.settings import Settings
from app.models.state import AppState
from app.widgets.image_view import window_for
from app.widgets.viewer import HangingViewer
from inference.phantoms import generator as phantom

from ..conftest import SHAPE, wait_idle


def _viewer(qtbot, state: AppState) -> HangingViewer:
    viewer = HangingViewer(state)
    qtbot.addWidget(viewer)
    viewer.resize(700, 600)
    viewer.show()
    return viewer


def _shown(qtbot, viewer: HangingViewer) -> None:
    qtbot.waitUntil(lambda: all(v.data_shape is not None for v in viewer.views if v.content and v.content.key))


def test_manual_window_holds_for_its_study_unless_locked(qtbot, make_state, settings: Settings, three_studies) -> None:
    state = make_state()
    viewer = _viewer(qtbot, state)
    state.open_paths([three_studies])
    wait_idle(qtbot, state)
    _shown(qtbot, viewer)
    first = state.files.current_study
    state.display.set_window(900.0, 50.0)
    state.files.step_image(1)  # same study: the window holds
    assert state.files.current_study is first and state.display.view.window == (900.0, 50.0)
    state.files.step_study(1)  # another study: back to the files' own windows
    wait_idle(qtbot, state)
    _shown(qtbot, viewer)
    assert state.display.view.window is None and state.display.view.preset == "default"
    v = viewer.views[0]
    c, w = window_for(state.memory.image(v.content.key), "default")
    assert v.levels == pytest.approx((c - w / 2, c + w / 2))

    state.display.set_window_locked(True)  # the person locks it
    state.display.set_window(900.0, 50.0)
    state.files.step_study(1)
    assert state.display.view.window == (900.0, 50.0)
    assert DisplayState(settings, state.files, state.runner).view.window_locked  # kept in the settings
    state.display.set_window_locked(False)
    assert not DisplayState(settings, state.files, state.runner).view.window_locked
    wait_idle(qtbot, state)


def test_an_8_bit_jpeg_after_a_manual_16_bit_window_is_not_black(qtbot, make_state, study_dir, tmp_path) -> None:
    state = make_state()
    viewer = _viewer(qtbot, state)
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    _shown(qtbot, viewer)
    img = state.memory.image(state.files.current_key)
    assert float(img.raw.max()) > 255  # a 16-bit DICOM
    state.display.set_window(float(img.raw.max()) * 0.8, float(img.raw.max()) * 0.1)  # a manual window
    jpegs = tmp_path / "jpegs"
    jpegs.mkdir()
    pixels = (phantom.render(phantom.PhantomSpec("L", "CC", shape=SHAPE, seed=4)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(jpegs / "P66_L_DM_CC.jpg", "JPEG", quality=92)
    state.open_paths([jpegs])
    wait_idle(qtbot, state)
    _shown(qtbot, viewer)
    view = viewer.view_of(state.files.current_key)
    jpeg = state.memory.image(state.files.current_key)
    assert state.display.view.window is None
    lo, hi = view.levels
    assert lo < float(np.percentile(jpeg.raw, 99)) and hi > float(jpeg.raw.min())  # the picture is visible
    shown = np.clip((jpeg.raw - lo) / (hi - lo), 0, 1)
    assert float(shown.max()) > 0.5  # not black


def test_drag_down_raises_the_centre_as_in_ohif(qtbot, make_state, study_dir) -> None:
    state = make_state()
    viewer = _viewer(qtbot, state)
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    _shown(qtbot, viewer)
    v = viewer.views[0]
    lo, hi = v.levels
    c, w = (lo + hi) / 2, hi - lo
    v.vb.window_drag.emit(0.0, 0.0, True)
    v.vb.window_drag.emit(0.0, 30.0, False)  # down: higher centre, darker (cornerstoneTools wwwc)
    assert state.display.view.window is not None and state.display.view.window[0] > c
    v.vb.window_drag.emit(0.0, -30.0, False)  # up from the start: lower centre, brighter
    assert state.display.view.window[0] < c and state.display.view.window[1] == pytest.approx(w)
    v.vb.window_drag.emit(-100.0, -30.0, False)  # left: narrower
    assert state.display.view.window[1] < w


def test_the_magnifier_goes_at_once_and_follows_invert(qtbot, make_state, study_dir) -> None:
    state = make_state()
    viewer = _viewer(qtbot, state)
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    _shown(qtbot, viewer)
    view = viewer.views[0]
    h, w = view.data_shape
    scene = view.image_item.mapToScene(view.image_item.mapFromView(view.image_to_view(h // 2, w // 2)))
    state.display.set_view(magnifier=True)
    view._on_mouse_moved(scene)
    assert view.mag.isVisible()
    before = view.mag.pixmap().toImage().pixelColor(120, 120).value()
    state.display.set_view(inverted=True)  # the magnifier is drawn again, inverted
    after = view.mag.pixmap().toImage().pixelColor(120, 120).value()
    assert abs((255 - before) - after) <= 2 and before != after
    state.display.set_view(magnifier=False)  # M again: gone now, not at the next mouse move
    assert not view.mag.isVisible()
    state.display.set_view(magnifier=True)
    assert view.mag.isVisible()  # back where the mouse is
    wait_idle(qtbot, state)


def test_the_window_lock_is_a_toggle_in_the_window(qtbot, make_state) -> None:
    from app.widgets.main_window import MainWindow

    state = make_state()
    win = MainWindow(state)
    qtbot.addWidget(win)
    assert not win.act_lock_window.isChecked()
    win.act_lock_window.trigger()
    assert state.display.view.window_locked and win.act_lock_window.isChecked()
    assert any("Lock the window/level" in what for _, what in win.shortcut_rows)
    win.act_lock_window.trigger()
    assert not state.display.view.window_locked
