"""The main window end to end: browser, problems, predictions panel, shortcuts, panels, drop, screenshot."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QLabel

from app.__main__ import main
from app.models.state import AppState
from app.widgets.dialogs import RESEARCH_NOTICE, AboutDialog, ShortcutsDialog
from app.widgets.main_window import MainWindow
from app.widgets.overlays import overlay_range
from app.widgets.predictions_panel import ACR_MEANING, operating_points
from inference.formats import manifest_path_for, read_model_manifest
from inference.model.session import bundled_model_path

from ..conftest import wait_idle, wait_workers


@pytest.fixture
def window(qtbot, make_state) -> MainWindow:
    state: AppState = make_state()
    win = MainWindow(state)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    return win


def test_open_by_drop_shows_studies_predictions_and_problems(
    qtbot, window: MainWindow, study_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    shutil.copytree(study_dir, folder)
    (folder / "notes.dcm").write_bytes(b"not a dicom file at all")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    event = QDropEvent(
        QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)
    state = window.state
    wait_idle(qtbot, state)
    keys = [r.key for r in state.files.study_set.images]
    assert window.browser.visible_keys() == keys  # hanging order
    assert [name for name, _ in window.problems.rows()] == ["notes.dcm"]
    assert window.problems.rows()[0][1]
    # the predictions panel renders the current image's prediction
    pred = state.runner.prediction(state.files.current_key)
    acr = window.predictions.task_boxes["acr"][1]
    assert list(acr.bars) == list(ACR_MEANING)
    assert sum(acr.values().values()) == pytest.approx(1.0, abs=0.01)
    assert f"{pred.p_malignant:.3f}" in window.predictions.p_label.text()
    assert window.settings.recent_paths[0] == str(folder)
    # the research notice is always on screen
    assert RESEARCH_NOTICE in window.notice_label.text()
    # keyboard: next image, next study, overlays, layout
    qtbot.keyClick(window, Qt.Key.Key_N)
    assert state.files.current_key == keys[1]
    qtbot.keyClick(window, Qt.Key.Key_E)
    assert state.display.overlay.kind == "evidence"
    qtbot.keyClick(window, Qt.Key.Key_R)
    assert state.display.overlay.kind == "error"
    qtbot.keyClick(window, Qt.Key.Key_2)
    assert state.display.view.layout == "cc" and len(window.viewer.slots) == 2
    # browser: choosing a row makes it current; filtering by the operating point
    state.runner.set_operating_point(max(p.p_malignant for p in state.runner.predictions.values()))
    window.browser.proxy.set_mode("flagged")
    flagged = window.browser.visible_keys()
    assert flagged and all(state.runner.flagged(k) for k in flagged)
    window.browser.proxy.set_mode("below")
    assert set(window.browser.visible_keys()) == set(keys) - set(flagged)
    window.browser.proxy.set_mode("all")
    window.browser.tree.sortByColumn(2, Qt.SortOrder.DescendingOrder)
    ps = [state.runner.prediction(k).p_malignant for k in window.browser.visible_keys()]
    assert ps == sorted(ps, reverse=True)
    wait_workers(qtbot, state)  # the decodes the navigation started


def test_panels_dialogs_and_operating_point(qtbot, window: MainWindow, study_dir: Path) -> None:
    state = window.state
    dock = window.add_panel("Extra", QLabel("extra panel"), shortcut="Ctrl+9")
    assert window.panels["Extra"] is dock and dock.toggleViewAction() in window.panels_menu.actions()
    assert ("Ctrl+9", "Show or hide the Extra panel") in window.shortcut_rows
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    points = operating_points(state.runner.manifest)
    assert points[0][1] == pytest.approx(state.runner.manifest.threshold("default"))
    assert window.predictions.op_presets.count() == len(points)
    window.predictions.op_spin.setValue(0.123)
    assert state.runner.operating_point == pytest.approx(0.123)
    assert window.predictions.op_slider.value() == 123
    help_rows = dict(window.shortcut_rows)
    for keys in ("N, PgDown", "E", "R", "B", "1", "F1"):
        assert keys in help_rows
    dlg = ShortcutsDialog(window.shortcut_rows, window)
    assert dlg.table.rowCount() == len(window.shortcut_rows)
    about = AboutDialog(state, window)
    assert "not for diagnosis" in about.text.text() and state.runner.manifest.version in about.text.text()
    dlg.deleteLater()
    about.deleteLater()


def test_window_state_persists(qtbot, make_state, settings) -> None:
    state = make_state()
    win = MainWindow(state)
    qtbot.addWidget(win)
    win.resize(700, 520)
    win.show()
    win.close()
    assert not settings.window_geometry.isEmpty()
    again = MainWindow(make_state())
    qtbot.addWidget(again)
    assert (again.size().width(), again.size().height()) == (700, 520)


def test_screenshot_command(qtbot, study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also: no timer of main() outlives it (the give-up timer fired inside later tests)."""
    import PySide6.QtCore as qtcore

    made: list[qtcore.QTimer] = []
    due: list[float] = []  # when each QTimer.singleShot call fires

    real = qtcore.QTimer

    class Recorded(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            made.append(self)

        @staticmethod
        def singleShot(msec: int, *args: object) -> None:  # noqa: N802 - Qt name
            due.append(time.monotonic() + msec / 1000)
            real.singleShot(msec, *args)  # type: ignore[call-overload]

    monkeypatch.setattr(qtcore, "QTimer", Recorded)  # main() imports QTimer when it runs
    out = tmp_path / "shot.png"
    code = main([str(study_dir), "--screenshot", str(out), "--settings", str(tmp_path / "s.ini"),
                 "--cache", str(tmp_path / "c"), "--device", "cpu", "--overlay", "evidence",
                 "--size", "1000x700"])  # fmt: skip
    assert code == 0
    assert made and not [t for t in made if t.isActive()]
    assert due and max(due) <= time.monotonic()  # no one-shot call still to come
    from PySide6.QtGui import QImage

    img = QImage(str(out))
    assert (img.width(), img.height()) == (1000, 700)
    assert len(list((tmp_path / "c").glob("*.npz"))) == 4


def test_settings_dialog_choice(qtbot, settings) -> None:
    from app.widgets.dialogs import SettingsDialog

    dlg = SettingsDialog(settings, cuda=False)
    qtbot.addWidget(dlg)
    assert dlg.device.currentData() == "cpu"
    dlg.device.setCurrentIndex(dlg.device.findData("cuda"))
    dlg.annotator.setText(" reader 1 ")
    c = dlg.choice()
    assert (c.device, c.annotator, c.cache_dir) == ("cuda", "reader 1", str(settings.cache_dir))
    assert "onnxruntime-gpu" in dlg.device.toolTip()


def test_exit_after_show_reports_the_first_window(qtbot, tmp_path: Path, capsys) -> None:
    code = main(["--exit-after-show", "--settings", str(tmp_path / "s.ini"), "--cache", str(tmp_path / "c")])
    assert code == 0
    assert "first window after" in capsys.readouterr().out


def test_lesion_overlay_has_a_key_and_a_menu_entry_only_while_the_model_has_the_output(
    qtbot, window: MainWindow
) -> None:
    state = window.state
    assert not window.act_lesion.isVisible() and not window.act_lesion.isEnabled()
    qtbot.keyClick(window, Qt.Key.Key_S)
    assert state.display.overlay.kind == "none"
    bundled = read_model_manifest(manifest_path_for(bundled_model_path()))
    manifest = dataclasses.replace(bundled, outputs={**bundled.outputs, "lesion": [None, 1, 96, None]})
    state.runner.session = SimpleNamespace(manifest=manifest, version="t", device="cpu")
    state.runner.model_changed.emit()
    assert window.act_lesion.isVisible() and window.act_lesion.isEnabled()
    assert window.act_lesion in window.menuBar().actions()[1].menu().actions()  # View
    assert "S: lesion probability" in window.overlay_controls.combo.toolTip()
    qtbot.keyClick(window, Qt.Key.Key_S)
    assert state.display.overlay.kind == "lesion" and window.act_lesion.isChecked()
    assert window.overlay_controls.combo.currentData() == "lesion"
    qtbot.keyClick(window, Qt.Key.Key_S)
    assert state.display.overlay.kind == "none" and not window.act_lesion.isChecked()
    assert ("S", "Lesion probability overlay (models with a lesion output)") in window.shortcut_rows
    state.runner.session = None  # a model without the output: the entry goes
    state.runner.model_changed.emit()
    assert not window.act_lesion.isVisible()


def test_colour_bar_shows_the_current_studys_overlay_range(qtbot, window: MainWindow, three_studies: Path) -> None:
    """The range is derived in the state: the viewer and the colour bar read the same value, also after a
    study change (which changes no prediction and no overlay)."""
    state = window.state
    state.open_paths([three_studies])
    wait_idle(qtbot, state)
    state.display.set_overlay(kind="error")
    ranges = []
    for _ in range(len(state.files.study_set.studies)):
        study = state.files.current_study
        preds = [state.runner.prediction_with_maps(r.key) for r in study.images]
        expected = overlay_range("error", [p for p in preds if p is not None])
        assert state.display.overlay_range == expected
        assert window.overlay_controls.colorbar.vrange == expected
        ranges.append(expected)
        state.files.step_study(1)
        wait_workers(qtbot, state)  # the next study's pixels
    assert len(set(ranges)) == len(ranges)  # each study its own range: a stale bar would show
    wait_workers(qtbot, state)  # the last step's pixels


def test_file_menu_holds_the_panels_actions_before_recent(window: MainWindow) -> None:
    texts = [a.text().replace("&", "") for a in window.file_menu.actions() if not a.isSeparator()]
    assert texts == [
        "Open folder…", "Open files…", "Open the sample studies", "Open from PACS…",
        "Export labels…", "Import labels…", "Models…", "Load embeddings…",
        "Recent", "Settings…", "Quit",
    ]  # fmt: skip
    assert window.file_menu.actions()[4] is window.queue.export_action


def test_one_image_layout_colours_its_overlay_with_the_studys_range(qtbot, window: MainWindow, study_dir: Path) -> None:
    """In the one-image layout the other images' predictions arrive after the shown one's: the shared
    range must still take them in, for the drawn overlay and the colour bar alike."""
    state = window.state
    state.display.set_view(layout="single")
    state.display.set_overlay(kind="error")
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    study = state.files.current_study
    assert len(window.viewer.slots) == 1 and len(study.images) == 4
    expected = overlay_range("error", [state.runner.prediction_with_maps(r.key) for r in study.images])
    assert state.display.overlay_range == expected
    assert window.viewer._drawn_range == ("error", expected)
    assert window.overlay_controls.colorbar.vrange == expected


def test_unreadable_files_are_counted_on_the_problems_tab_and_told(
    qtbot, window: MainWindow, study_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "some-bad"
    shutil.copytree(study_dir, folder)
    (folder / "notes.dcm").write_bytes(b"not a dicom file at all")
    (folder / "broken.dcm").write_bytes(b"DICM" * 10)
    window.state.open_paths([folder])
    wait_idle(qtbot, window.state)
    assert window.panels["Problems"].windowTitle() == "Problems (2)"
    messages = [window.message_label.text(), window.message_label.toolTip()]
    assert any("2 files could not be read" in m for m in messages), messages
    window.state.open_paths([study_dir])
    wait_idle(qtbot, window.state)
    assert window.panels["Problems"].windowTitle() == "Problems"


def test_progress_text_is_never_cut(qtbot, window: MainWindow) -> None:
    window._on_message("warning", "a long message " * 30)  # a long message in the status bar
    window._on_busy("Running the model", 21, 70)
    qtbot.wait(50)
    bar = window.progress
    assert bar.text() == "Running the model 21/70"
    assert bar.width() >= bar.fontMetrics().horizontalAdvance(bar.text()) + 20, bar.width()
    window._on_busy("", 0, 0)


def test_the_explorer_opens_below_the_viewer_without_squeezing_it(qtbot, make_state) -> None:
    state: AppState = make_state()
    win = MainWindow(state)
    qtbot.addWidget(win)
    win.resize(1600, 1000)  # the default size
    win.show()
    qtbot.wait(50)
    before = win.viewer.height()
    win.panels["Latent space"].show()
    qtbot.waitUntil(lambda: win.panels["Latent space"].isVisible())
    qtbot.wait(50)
    assert win.viewer.height() >= 0.55 * before, (win.viewer.height(), before)
    assert win.panels["Latent space"].height() <= 0.45 * win.height()
    assert win.panels["Studies"].height() > 0.6 * win.height()  # the side panels keep their height


def test_progress_shows_the_latest_count(qtbot, window: MainWindow) -> None:
    for done in range(71):  # a run's progress arrives faster than the bar repaints: it shows the last
        window._on_busy("Running the model", done, 70)
    qtbot.waitUntil(lambda: window.progress.text() == "Running the model 70/70", timeout=2000)
    window._on_busy("", 0, 0)
    assert not window.progress.isVisible()


def test_the_browser_sorts_predictions_as_they_land(qtbot, window: MainWindow, three_studies: Path) -> None:
    window.browser.tree.sortByColumn(2, Qt.SortOrder.DescendingOrder)  # sorted by P(malignant) before any
    for column in (1, 2):
        window.browser.tree.header().resizeSection(column, 5)  # too narrow for what will land
    window.state.open_paths([three_studies])
    wait_idle(qtbot, window.state)
    runner = window.state.runner

    def shown_in_order() -> bool:  # each study's images by descending P(malignant)
        keys = window.browser.visible_keys()
        for study in window.state.files.study_set.studies:
            mine = {r.key for r in study.images}
            ps = [runner.prediction(k).p_malignant for k in keys if k in mine]  # type: ignore[union-attr]
            if ps != sorted(ps, reverse=True):
                return False
        return len(keys) == 12

    def all_counted() -> bool:  # the count, like the order, follows once per batch (50 ms)
        return window.browser.count_label.text().startswith("12/12 predicted")

    # re-sorted once the batch landed, not per cell (the images may happen to land in order: wait
    # for the batch's count too, then the order must hold)
    qtbot.waitUntil(lambda: shown_in_order() and all_counted(), timeout=2000)
    # the columns are fitted to what landed (once per batch, not by the header on every cell)
    tree = window.browser.tree
    rows, index = [], tree.model().index(0, 0)
    while index.isValid():  # every row shown, patients, studies and images
        rows.append(index)
        index = tree.indexBelow(index)
    assert len(rows) > 12
    for column in (1, 2):
        texts = [r.siblingAtColumn(column).data() or "" for r in rows]
        widest = max(tree.fontMetrics().horizontalAdvance(t) for t in texts)
        assert tree.header().sectionSize(column) >= widest > 0, (column, tree.header().sectionSize(column), widest)
