"""The hanging on screen: order, mirroring, chest walls in the middle, overlays on the right pixels, window, sync."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid
from PySide6.QtCore import QPointF

from app.models.state import AppState
from app.widgets.image_view import window_for
from app.widgets.viewer import HangingViewer
from inference.phantoms import generator as phantom

from ..conftest import SHAPE, wait_idle

VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


@pytest.fixture(scope="module")
def mirrored_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, phantom.PhantomTruth]]:
    """A 4-view study, written in a shuffled file order, whose R CC is stored mirrored (chest wall on the left)."""
    folder = tmp_path_factory.mktemp("mirrored")
    study_uid = generate_uid()
    truths = {}
    for i, (lat, view) in enumerate(reversed(VIEWS), start=1):
        spec = phantom.PhantomSpec(lat, view, "B", shape=SHAPE, seed=40 + i, mirrored=(lat, view) == ("R", "CC"))
        image, truth = phantom.render_with_truth(spec)
        phantom.write_dicom(
            folder / f"IM{i}.dcm", image, spec=spec, patient_id="MIR", study_uid=study_uid, sop_uid=generate_uid()
        )
        truths[f"{lat} {view}"] = truth
    return folder, truths


@pytest.fixture
def opened(qtbot, make_state, mirrored_study) -> tuple[AppState, HangingViewer, dict[str, phantom.PhantomTruth]]:
    folder, truths = mirrored_study
    state = make_state()
    viewer = HangingViewer(state)
    qtbot.addWidget(viewer)
    viewer.resize(900, 800)
    viewer.show()
    state.open_paths([folder])
    wait_idle(qtbot, state)
    qtbot.waitUntil(lambda: all(v.data_shape is not None for v in viewer.views), timeout=10000)
    return state, viewer, truths


def _key(state: AppState, lat: str, view: str) -> str:
    return next(r.key for r in state.files.study_set.images if r.laterality == lat and r.view == view)


def test_hanging_order_and_chest_walls_meet_in_the_middle(opened) -> None:
    state, viewer, truths = opened
    cells = {(s.row, s.col): s for s in viewer.slots}
    assert [cells[rc].marker for rc in ((0, 0), (0, 1), (1, 0), (1, 1))] == ["R CC", "L CC", "R MLO", "L MLO"]
    for slot in viewer.slots:
        view = viewer.view_of(slot.key)
        truth = truths[slot.marker]
        assert view.content.chest_wall_right is (slot.col == 0)
        # only the R CC is stored mirrored, so only it is mirrored on screen
        assert view.mirrored is (slot.marker == "R CC")
        h, w = truth.shape
        cw_col = 0 if truth.chest_wall == "left" else w - 1
        x_cw = view.image_to_view(h / 2, cw_col).x()
        x_nipple = view.image_to_view(*truth.nipple).x()
        if slot.col == 0:  # right breast on the left of the screen, chest wall toward the middle
            assert x_cw > x_nipple
            assert view.vb.viewRange()[0][1] == pytest.approx(w, abs=0.5)  # pinned to the inner edge
        else:
            assert x_cw < x_nipple
            assert view.vb.viewRange()[0][0] == pytest.approx(0.0, abs=0.5)


def test_layouts(opened) -> None:
    state, viewer, _ = opened
    state.display.set_view(layout="cc")
    assert [s.marker for s in viewer.slots] == ["R CC", "L CC"]
    state.display.set_view(layout="mlo")
    assert [s.marker for s in viewer.slots] == ["R MLO", "L MLO"]
    state.files.set_current(_key(state, "L", "MLO"))
    state.display.set_view(layout="single")
    assert [s.key for s in viewer.slots] == [state.files.current_key]
    assert viewer.views[0].content.chest_wall_right is False
    state.display.set_overlay(reconstruction=True)
    assert [s.reconstruction for s in viewer.slots] == [False, True]
    recon_view = viewer.view_of(state.files.current_key, reconstruction=True)
    expected = state.runner.prediction(state.files.current_key).reconstruction_original()
    assert recon_view._data.shape == expected.shape and np.allclose(recon_view._data, expected)
    state.display.set_overlay(reconstruction=False)
    state.display.set_view(layout="hanging")
    assert len(viewer.slots) == 4


@pytest.mark.parametrize(
    ("lat", "view", "flipped", "mirrored_on_screen"),
    # R CC is stored mirrored (chest wall left): the display flips it, the preprocessing does not;
    # R MLO is stored as usual (chest wall right): the preprocessing flips it, the display does not;
    # L CC (chest wall left): neither does
    [("R", "CC", False, True), ("R", "MLO", True, False), ("L", "CC", False, False)],
)
def test_evidence_hot_spot_lands_on_its_pixel(
    opened, monkeypatch, lat: str, view: str, flipped: bool, mirrored_on_screen: bool
) -> None:
    import app.widgets.overlays

    monkeypatch.setattr(
        app.widgets.overlays, "EVIDENCE_SMOOTHING", 0.0
    )  # geometry only: the display blur is tested below
    state, viewer, truths = opened
    key = _key(state, lat, view)
    pred = state.runner.prediction(key)
    g = pred.geometry
    assert g.flipped is flipped
    truth = truths[f"{lat} {view}"]
    row, col = (int(v) for v in truth.nipple)
    col = (col + (g.original_shape[1] - 1 if truth.chest_wall == "right" else 0)) // 2  # between nipple and chest wall
    my, mx = g.original_to_model(row, col)
    cell = 16
    evidence = np.zeros_like(pred.evidence)
    cy, cx = int(my // cell), int(mx // cell)
    evidence[cy, cx] = 1.0
    state.runner.predictions[key] = dataclasses.replace(pred, evidence=evidence)
    state.runner.predictions_changed.emit((key,))
    state.display.set_overlay(kind="evidence", opacity=1.0)
    view = viewer.view_of(key)
    rgba = view.overlay_item.image
    assert rgba.shape[:2] == g.original_shape
    alpha = rgba[..., 3].astype(np.float64)
    alpha[alpha < 0.5 * alpha.max()] = 0  # the core of the spot: its tails may be cut by the breast's edge
    ys, xs = np.indices(alpha.shape)
    cy_px, cx_px = (float((alpha * a).sum() / alpha.sum()) for a in (ys, xs))
    # the overlay's hot spot is centred on the original pixel under the hot cell's centre
    oy, ox = g.model_to_original((cy + 0.5) * cell - 0.5, (cx + 0.5) * cell - 0.5)
    cell_px = cell / g.scale[0]
    # within a twentieth of a cell (a half-cell shift or a wrong flip is 10 to 100 times that)
    assert abs(cy_px - float(oy)) <= 0.05 * cell_px and abs(cx_px - float(ox)) <= 0.05 * cell_px
    hot_row, hot_col = int(round(cy_px)), int(round(cx_px))
    assert abs(hot_row - row) <= cell_px and abs(hot_col - col) <= cell_px
    # and overlay and image put that pixel on the same spot of the screen, mirrored where the hanging mirrors
    p_img = view.image_to_view(hot_row, hot_col)
    centre = QPointF(hot_col + 0.5, hot_row + 0.5)
    p_ovl = view.overlay_item.mapToView(centre)  # overlay item coordinates are original pixels
    p_pix = view.image_item.mapToView(view.image_item.mapFromView(p_img))
    assert (p_img.x(), p_img.y()) == pytest.approx((p_ovl.x(), p_ovl.y()))
    assert (p_pix.x(), p_pix.y()) == pytest.approx((p_img.x(), p_img.y()))
    assert p_img.x() == pytest.approx(g.original_shape[1] - (hot_col + 0.5) if mirrored_on_screen else hot_col + 0.5)
    state.display.set_overlay(kind="none")
    assert not view.overlay_item.isVisible()


def test_window_drag_presets_and_invert(opened) -> None:
    state, viewer, _ = opened
    views = viewer.views
    v0 = views[0]
    img = state.memory.image(v0.content.key)
    c, w = window_for(img, "default")
    assert v0.levels == pytest.approx((c - w / 2, c + w / 2))
    v0.vb.window_drag.emit(0.0, 0.0, True)
    v0.vb.window_drag.emit(200.0, 60.0, False)  # right and down: wider and darker (as in OHIF / cornerstone)
    cw = state.display.view.window
    assert cw is not None and cw[1] == pytest.approx(w * np.e) and cw[0] == pytest.approx(c + 60 * w / 300)
    for v in views:  # every view follows the state's window
        assert v.levels == pytest.approx((cw[0] - cw[1] / 2, cw[0] + cw[1] / 2))
    state.display.set_view(preset="full")
    assert v0.levels == pytest.approx((float(img.raw.min()), float(img.raw.max())))
    state.display.set_view(inverted=True)
    assert all(v.inverted for v in views)
    assert int(v0.image_item.lut[0, 0]) == 255
    state.display.reset()
    assert state.display.view.window is None and not v0.inverted


def test_zoom_and_pan_follow_across_views(opened) -> None:
    state, viewer, _ = opened
    views = viewer.views
    src = views[0]
    h, w = src.data_shape
    src.vb.setRange(xRange=(w - 80, w), yRange=(40, 120), padding=0)
    src.vb.sigRangeChangedManually.emit([True, True])
    d, cy, span = src.view_state()
    for v in views[1:]:
        d2, cy2, span2 = v.view_state()
        assert (d2, cy2, span2) == pytest.approx((d, cy, span), rel=1e-3, abs=0.5)
    # the right-column view looks at the mirror-symmetric region: the same distance from its chest wall
    (lx0, lx1), _ = src.vb.viewRange()
    (rx0, rx1), _ = views[1].vb.viewRange()
    assert (rx0 + rx1) / 2 == pytest.approx(w - (lx0 + lx1) / 2, abs=0.5)


def test_pixel_readout_reports_the_modality_value(opened, qtbot) -> None:
    state, viewer, truths = opened
    view = viewer.views[0]
    img = state.memory.image(view.content.key)
    row, col = 100, 50
    scene = view.image_item.mapToScene(view.image_item.mapFromView(view.image_to_view(row, col)))
    assert view.pixel_at(scene) == (row, col)
    view._on_mouse_moved(scene)
    assert view.readout.text().endswith(f"value {float(img.raw[row, col]):.6g}")
    state.display.set_view(magnifier=True)
    view._on_mouse_moved(scene)
    assert view.mag.isVisible() and view.mag.pixmap().width() == 240


def _shown_grey(view, row: int, col: int) -> int:
    """The grey level the view's levels and lookup table give an original pixel."""
    lo, hi = view.levels
    v = float(view._data[row, col])
    idx = int(np.clip((v - lo) / (hi - lo), 0.0, 1.0) * 255)
    return int(view.image_item.lut[idx, 0])


def test_monochrome1_dense_tissue_is_bright(qtbot, make_state, tmp_path: Path) -> None:
    spec = phantom.PhantomSpec("L", "CC", "C", shape=SHAPE, seed=3)
    image, truth = phantom.render_with_truth(spec)
    phantom.write_dicom(tmp_path / "m1.dcm", image, spec=spec, photometric="MONOCHROME1", patient_id="M1")
    state = make_state()
    viewer = HangingViewer(state)
    qtbot.addWidget(viewer)
    viewer.resize(600, 500)
    viewer.show()
    state.open_paths([tmp_path])
    wait_idle(qtbot, state)
    view = viewer.view_of(state.files.current_key)
    assert state.memory.image(state.files.current_key).inverted
    y0, x0, y1, x1 = truth.breast_bbox
    inside = (int((y0 + y1) / 2), int((x0 + x1) / 2))
    assert _shown_grey(view, *inside) > _shown_grey(view, 2, SHAPE[1] - 3) + 60  # breast brighter than air
    state.display.set_view(inverted=True)  # the user's invert flips it back
    assert _shown_grey(view, *inside) < _shown_grey(view, 2, SHAPE[1] - 3)


def test_pictures_without_tags_hang_by_their_pixels(qtbot, make_state, tmp_path: Path) -> None:
    from PIL import Image

    for name, lat in (("a.png", "R"), ("b.png", "L")):
        img = phantom.render(phantom.PhantomSpec(lat, "MLO", "B", shape=SHAPE, seed=9, markers=False))
        Image.fromarray((img * 255).astype(np.uint8)).save(tmp_path / name)
    state = make_state()
    viewer = HangingViewer(state)
    qtbot.addWidget(viewer)
    viewer.resize(600, 500)
    viewer.show()
    state.open_paths([tmp_path])
    wait_idle(qtbot, state)
    assert len(state.files.study_set.images) == 2
    assert len(state.files.study_set.studies) == 1  # two files alone in a folder: one study
    for slot in viewer.slots:
        if not slot.key:
            continue
        view = viewer.view_of(slot.key)
        img = state.memory.image(slot.key)
        # without a tag the laterality comes from the pixels and the image is shown as stored
        assert state.files.laterality(slot.key) == ("R" if img.chest_wall_right else "L")
        assert view.mirrored is False and slot.chest_wall_right is img.chest_wall_right


def test_large_image_is_drawn_from_block_means_on_the_original_grid(opened, qtbot) -> None:
    from app.widgets.image_view import ImageView, ViewContent

    state, viewer, _ = opened
    small = state.memory.image(viewer.views[0].content.key)
    rng = np.random.default_rng(0)
    raw = rng.random((2400, 1800), dtype=np.float32) * 4000
    big = dataclasses.replace(small, raw=raw, pixels=raw / 4000, chest_wall_right=True)
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(400, 500)
    view.show()
    view.set_content(ViewContent("big", big, "L CC", chest_wall_right=False))  # needs a mirror
    assert view.mirrored and view.image_item.image.shape == (1200, 900)
    assert view.image_item.image[10, 20] == pytest.approx(raw[20:22, 40:42].mean(), rel=1e-5)
    # display pixel (10, 20) covers original pixels rows 20-21, columns 40-41
    shown = view.image_item.mapToView(QPointF(20.5, 10.5))
    orig = view.image_to_view(20.5, 40.5)  # centre of that 2 x 2 block
    assert (shown.x(), shown.y()) == pytest.approx((orig.x(), orig.y()))
    assert orig.x() == pytest.approx(1800 - 41.0)
    # the readout still reports every original pixel
    scene = view.vb.mapViewToScene(view.image_to_view(21, 41))
    assert view.pixel_at(scene) == (21, 41)


def test_evidence_display_blur_keeps_the_peak_in_place(opened) -> None:
    state, _viewer, _truths = opened
    key = _key(state, "L", "CC")
    pred = state.runner.prediction(key)
    evidence = np.zeros_like(pred.evidence)
    cy, cx = evidence.shape[0] // 2, 2
    evidence[cy, cx] = 1.0
    sharp = dataclasses.replace(pred, evidence=evidence).evidence_original()
    soft = dataclasses.replace(pred, evidence=evidence).evidence_original(smooth=1.0)
    assert np.unravel_index(np.argmax(soft), soft.shape) == pytest.approx(
        np.unravel_index(np.argmax(sharp), sharp.shape), abs=2
    )
    assert soft.max() < sharp.max() and (soft > 0.01 * soft.max()).sum() > (sharp > 0.01 * sharp.max()).sum()
