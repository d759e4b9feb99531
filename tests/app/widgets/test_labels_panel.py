"""The label panel, the review queue panel and the model picker, offscreen, on a phantom study
with the bundled model."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.models.labels import LabelsState
from app.models.settings import Settings
from app.models.state import AppState
from app.widgets.label_panel import LabelPanel
from app.widgets.model_picker import ModelPickerDialog, bundled_models_folder, list_models
from app.widgets.queue_panel import QueuePanel
from inference.formats import TASK_CLASSES, read_label_manifest
from inference.labels.store import LabelStore

from ..conftest import wait_idle


@pytest.fixture
def opened(qtbot, make_state, settings: Settings, study_dir: Path, tmp_path: Path):
    settings.store_path = tmp_path / "store" / "labels.sqlite"
    state: AppState = make_state()
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    labels = LabelsState(state)
    panel = LabelPanel(labels)
    qtbot.addWidget(panel)
    panel.show()
    panel.setFocus()
    yield state, labels, panel
    labels.close()


def _checked(panel: LabelPanel, task: str) -> str | None:
    editor = panel.editors[task]
    (value,) = [v for v, b in editor.buttons.items() if b.isChecked()]
    return value


def test_prefilled_from_model_and_dicom_marked_suggested(opened) -> None:
    state, labels, panel = opened
    key = state.files.current_key
    pred = state.runner.predictions[key]
    probs = pred.probabilities["density"]
    expected = TASK_CLASSES["density"][max(range(4), key=lambda i: probs[i])]
    assert _checked(panel, "density") == expected
    assert "Suggested by model" in panel.editors["density"].status.text()
    assert pred.model_version in panel.editors["density"].status.text()
    view = panel.editors["view"]
    assert _checked(panel, "view") == state.files.record(key).model_view
    assert "DICOM" in view.status.text() and "not confirmed" in view.status.text()
    assert labels.draft(key, "density").suggested


def test_keyboard_labelling_asks_the_name_once_and_moves_on(opened, qtbot, monkeypatch) -> None:
    state, labels, panel = opened
    asked: list[int] = []

    def ask() -> bool:
        asked.append(1)
        labels.set_annotator("dr-kb")
        return True

    monkeypatch.setattr(panel, "ask_annotator", ask)
    first = state.files.current_key
    qtbot.keyClick(panel, Qt.Key.Key_Down)  # malignancy -> acr
    assert labels.focus_task == "acr"
    qtbot.keyClick(panel, Qt.Key.Key_4)
    qtbot.keyClick(panel, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(panel, Qt.Key.Key_BracketLeft)
    assert labels.draft(first, "acr").value == "4" and labels.draft(first, "acr").confidence == pytest.approx(0.8)
    assert "Edited" in panel.editors["acr"].status.text()
    assert panel.editors["acr"].slider.value() == 80
    qtbot.keyClick(panel, Qt.Key.Key_Down)  # density
    qtbot.keyClick(panel, Qt.Key.Key_0)  # unknown
    qtbot.keyClick(panel, Qt.Key.Key_Up)
    qtbot.keyClick(panel, Qt.Key.Key_Plus)  # back to 90 %
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    assert asked == [1]
    store = labels.store
    got = {r.task: r for r in store.labels(first, annotator="dr-kb")}
    assert (got["acr"].value, got["acr"].confidence, got["acr"].source) == ("4", pytest.approx(0.9), "person")
    assert got["density"].value is None and got["density"].status == "confirmed"
    assert set(got) == {"acr", "density"}  # the untouched suggestions (malignancy, view) are not labels
    assert got["acr"].model_version == state.runner.manifest.version
    assert state.files.current_key != first  # Enter moved on in the queue
    assert labels.progress().reviewed == 1

    # the next image: the name is not asked again; C confirms the model's malignancy suggestion
    second = state.files.current_key
    qtbot.keyClick(panel, Qt.Key.Key_C)
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    assert asked == [1] and labels.progress().reviewed == 2
    (confirmed,) = store.labels(second, annotator="dr-kb")
    assert (confirmed.task, confirmed.source, confirmed.status) == ("malignancy", "model-confirmed", "confirmed")

    # back on the first image the saved labels show as confirmed
    state.files.set_current(first)
    assert "Confirmed by dr-kb" in panel.editors["acr"].status.text()
    qtbot.keyClick(panel, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undoes the second image only
    assert labels.progress().reviewed == 1
    qtbot.keyClick(panel, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert labels.progress().reviewed == 2


def test_failed_save_shows_at_once_and_keeps_the_edit(opened, qtbot, settings: Settings) -> None:
    state, labels, panel = opened
    labels.set_annotator("dr-lock")
    path = settings.store_path
    labels.store.close()
    labels.store = LabelStore(path, busy_timeout=0.05)
    messages: list[tuple[str, str]] = []
    state.activity.message.connect(lambda level, text: messages.append((level, text)))
    key = state.files.current_key
    qtbot.keyClick(panel, Qt.Key.Key_2)  # malignant
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        qtbot.keyClick(panel, Qt.Key.Key_Return)
        assert panel.banner.isVisible() and str(path) in panel.banner.text() and "NOT saved" in panel.banner.text()
        assert messages and messages[-1][0] == "error"
        assert state.files.current_key == key  # stayed on the image
        assert _checked(panel, "malignancy") == "malignant"  # the edit is still on screen
        assert labels.has_unsaved(key)
    finally:
        other.execute("ROLLBACK")
        other.close()
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    assert not panel.banner.isVisible()
    assert labels.store.label(key, "malignancy", "dr-lock").value == "malignant"


def test_selection_is_labelled_together_and_others_are_shown(opened, qtbot) -> None:
    state, labels, panel = opened
    keys = [r.key for r in state.files.study_set.images]
    labels.store.set_label(keys[0], "density", "D", 0.6, annotator="dr-other")
    labels.set_annotator("dr-sel")
    state.files.set_selection(keys[:2])
    assert "2 images selected" in panel.target.text()
    assert panel.clear_selection.isVisible()  # the selection is shown with a way out
    labels.set_focus_task("view")
    qtbot.keyClick(panel, Qt.Key.Key_2)
    qtbot.keyClick(panel, Qt.Key.Key_Down)  # back to malignancy: confirm the model's suggestions
    qtbot.keyClick(panel, Qt.Key.Key_Space)
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    assert {labels.store.label(k, "view", "dr-sel").value for k in keys[:2]} == {"MLO"}
    assert {labels.store.label(k, "malignancy", "dr-sel").source for k in keys[:2]} == {"model-confirmed"}
    panel.clear_selection.click()
    assert state.files.selection == () and not panel.clear_selection.isVisible()
    assert "images selected" not in panel.target.text()
    state.files.set_current(keys[0])
    assert "dr-other: D 60%" in panel.editors["density"].others.text()
    # the other reader's label was shown, never pre-filled: density is the model's, and not stored
    assert "Suggested by model" in panel.editors["density"].status.text()
    assert labels.store.label(keys[0], "density", "dr-sel") is None


def test_queue_panel_orders_shows_progress_and_navigates(opened, qtbot) -> None:
    state, labels, _panel = opened
    queue = QueuePanel(labels)
    qtbot.addWidget(queue)
    stds = {k: p.p_malignant_std for k, p in state.runner.predictions.items()}
    first_key = queue.table.item(0, 0).data(Qt.ItemDataRole.UserRole)
    assert first_key == max(stds, key=stds.get)
    assert queue.bar.text() == "0 / 4 reviewed"
    labels.set_annotator("dr-q")
    assert not labels.accept(advance=False)  # nothing set or confirmed: nothing saved
    assert queue.bar.text() == "0 / 4 reviewed"
    labels.confirm("malignancy")
    labels.accept(advance=False)
    assert queue.bar.text() == "1 / 4 reviewed"
    queue.order.setCurrentIndex(2)  # unlabelled first
    assert labels.order == "unlabelled"
    reviewed_col = [queue.table.item(i, 3).text() for i in range(4)]
    assert reviewed_col == ["", "", "", "✓"]
    target = queue.table.item(1, 0).data(Qt.ItemDataRole.UserRole)
    queue.table.cellClicked.emit(1, 0)
    assert state.files.current_key == target


def test_export_and_import_actions(opened, qtbot, monkeypatch, tmp_path: Path) -> None:
    state, labels, _panel = opened
    queue = QueuePanel(labels)
    qtbot.addWidget(queue)
    labels.set_annotator("dr-x")
    labels.confirm("view")
    labels.accept(advance=False)
    out = tmp_path / "export"
    monkeypatch.setattr(queue, "choose_export", lambda: (str(out), False))
    with qtbot.waitSignal(labels.exported, timeout=30000) as sig:
        queue.export_action.trigger()
    assert sig.args[0].rows == 1 and not sig.args[0].problems
    (row,) = read_label_manifest(out / "manifest.csv")
    assert (out / row.image).is_file()

    # import the export into a second app's store: the annotator comes along
    other = LabelStore(tmp_path / "other.sqlite")
    labels.store, mine = other, labels.store
    monkeypatch.setattr(queue, "choose_import", lambda: str(out / "annotations.csv"))
    queue.import_action.trigger()
    assert {r.annotator for r in other.labels()} == {"dr-x"}
    labels.store = mine
    other.close()


def test_model_picker_lists_models_and_requests_one(qtbot, make_state, settings: Settings, tmp_path: Path) -> None:
    user = tmp_path / "models"
    user.mkdir()
    for suffix in (".onnx", ".json", ".md"):
        shutil.copy(bundled_models_folder() / f"mammo-mtl{suffix}", user / f"tuned{suffix}")
    (user / "broken.onnx").write_bytes(b"not a model")
    settings.set_value("models/folder", str(user))
    entries = list_models([(bundled_models_folder(), True), (user, False)])
    assert entries[0].bundled and {e.path.name for e in entries} == {"mammo-mtl.onnx", "tuned.onnx", "broken.onnx"}
    broken = next(e for e in entries if e.path.name == "broken.onnx")
    assert broken.error and "manifest" in broken.error
    state = make_state()
    requested: list[str] = []
    state.runner.set_model_path = requested.append  # type: ignore[method-assign]
    dialog = ModelPickerDialog(state)
    qtbot.addWidget(dialog)
    titles = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert any("bundled" in t for t in titles) and any("cannot be used" in t for t in titles)
    row = next(i for i, e in enumerate(dialog.entries) if e.path.name == "tuned.onnx")
    dialog.list.setCurrentRow(row)
    assert "Model card" in dialog.card.toPlainText()
    dialog.use_selected()
    assert requested == [str(user / "tuned.onnx")]
    row = next(i for i, e in enumerate(dialog.entries) if e.path.name == "broken.onnx")
    dialog.list.setCurrentRow(row)
    assert not dialog.use_button.isEnabled()


def test_queue_follows_predictions_as_they_arrive(
    qtbot, make_state, settings: Settings, study_dir: Path, tmp_path: Path
) -> None:
    settings.store_path = tmp_path / "labels.sqlite"
    state: AppState = make_state()
    labels = LabelsState(state)  # before anything is opened
    queue = QueuePanel(labels)
    qtbot.addWidget(queue)
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    qtbot.waitUntil(
        lambda: len(labels.queue) == 4 and all(i.uncertainty == i.uncertainty for i in labels.queue), timeout=5000
    )
    assert queue.table.rowCount() == 4 and queue.bar.text() == "0 / 4 reviewed"
    labels.close()


def test_imported_manifest_prefills_as_suggestion(opened, tmp_path: Path) -> None:
    from inference.formats import LabelRow, TaskLabel, write_label_manifest

    state, labels, panel = opened
    key = state.files.current_key
    manifest = write_label_manifest(
        tmp_path / "dataset.csv", [LabelRow(key, "x.dcm", {"density": TaskLabel("A", 0.3)})], json_copy=False
    )
    assert labels.import_from(manifest) == 1
    assert _checked(panel, "density") == "A"
    assert "Suggested by manifest:dataset" in panel.editors["density"].status.text()
    assert panel.editors["density"].slider.value() == 70


def test_export_includes_labelled_images_not_opened_now(opened, qtbot, three_studies: Path, tmp_path: Path) -> None:
    state, labels, _panel = opened
    labels.set_annotator("dr-y")
    first = state.files.current_key
    labels.set_value("density", "B")
    labels.accept(advance=False)
    state.open_paths([three_studies / "P0"])
    wait_idle(qtbot, state)
    assert first not in {r.key for r in state.files.study_set.images}
    labels.set_value("density", "C")
    labels.accept(advance=False)
    with qtbot.waitSignal(labels.exported, timeout=30000) as sig:
        labels.export(tmp_path / "both")
    result = sig.args[0]
    assert result.rows == 2 and not result.problems
    assert len({r.patient for r in read_label_manifest(result.manifest)}) == 2  # two women, two pseudonyms


def test_store_that_cannot_open_is_shown_and_edits_stay(
    qtbot, make_state, settings: Settings, study_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    settings.store_path = blocker / "labels.sqlite"
    settings.annotator = "dr-z"
    state: AppState = make_state()
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    labels = LabelsState(state)
    panel = LabelPanel(labels)
    qtbot.addWidget(panel)
    panel.show()
    assert labels.store is None and panel.banner.isVisible() and str(blocker) in panel.banner.text()
    key = state.files.current_key
    qtbot.keyClick(panel, Qt.Key.Key_2)
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    assert state.files.current_key == key and _checked(panel, "malignancy") == "malignant" and labels.has_unsaved(key)
    blocker.unlink()  # the folder can be made now: the next Enter saves
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    assert labels.store is not None and not panel.banner.isVisible()
    assert labels.store.label(key, "malignancy", "dr-z").value == "malignant"
    labels.close()


# ------------------------------------------------------------- issue 14: a label is what a person confirmed
def test_accept_never_stores_or_exports_untouched_suggestions(opened, qtbot, tmp_path: Path) -> None:
    state, labels, panel = opened
    labels.set_annotator("dr-only")
    key = state.files.current_key
    assert labels.focus_task == "malignancy"
    qtbot.keyClick(panel, Qt.Key.Key_2)  # malignant: the one thing the person set
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    stored = labels.store.labels(key)
    assert [(r.task, r.value, r.source) for r in stored] == [("malignancy", "malignant", "person")]
    with qtbot.waitSignal(labels.exported, timeout=30000) as sig:
        labels.export(tmp_path / "export")
    result = sig.args[0]
    assert result.sources == {"person": 1} and result.annotations == 1
    (row,) = read_label_manifest(result.manifest)
    assert row.label("malignancy").value == "malignant" and row.label("malignancy").by == "person"
    assert all(row.label(t).value is None for t in ("acr", "density", "view"))  # no model guess exported
    readme = (result.folder / "README.txt").read_text(encoding="utf-8")
    assert "person" in readme and "set by a person" in readme


def test_enter_on_an_untouched_image_saves_nothing_and_says_how(opened, qtbot) -> None:
    state, labels, panel = opened
    labels.set_annotator("dr-idle")
    messages: list[str] = []
    state.activity.message.connect(lambda _level, text: messages.append(text))
    key = state.files.current_key
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    assert labels.store.labels(key) == [] and state.files.current_key == key
    assert messages and "Nothing to save" in messages[-1]
    # a click on the suggested class confirms that suggestion (source model-confirmed)
    editor = panel.editors["density"]
    suggested = labels.draft(key, "density").value
    editor.buttons[suggested].click()
    assert labels.draft(key, "density").origin == "confirmed"
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    (rec,) = labels.store.labels(key)
    assert (rec.task, rec.value, rec.source) == ("density", suggested, "model-confirmed")


def test_focus_returns_to_the_first_task_on_each_image(opened, qtbot) -> None:
    state, labels, panel = opened
    labels.set_annotator("dr-focus")
    first = state.files.current_key
    qtbot.keyClick(panel, Qt.Key.Key_Down)  # acr
    qtbot.keyClick(panel, Qt.Key.Key_2)
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    second = state.files.current_key
    assert second != first and labels.focus_task == "malignancy"
    qtbot.keyClick(panel, Qt.Key.Key_2)  # meant for malignancy, the first task
    assert labels.draft(second, "malignancy").value == "malignant"
    assert labels.draft(second, "acr").origin != "edited"


def test_undo_returns_to_the_image_and_says_what_it_undid(opened, qtbot) -> None:
    state, labels, panel = opened
    labels.set_annotator("dr-undo")
    first = state.files.current_key
    messages: list[str] = []
    state.activity.message.connect(lambda _level, text: messages.append(text))
    qtbot.keyClick(panel, Qt.Key.Key_1)  # benign
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    assert state.files.current_key != first
    qtbot.keyClick(panel, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert state.files.current_key == first  # back on the image it changed
    assert labels.store.labels(first) == []
    assert "Undone" in messages[-1] and "malignancy benign 100% → (no label)" in messages[-1]
    assert panel.notice.isVisible() and "Undone" in panel.notice.text()


def test_labelling_mode_takes_the_label_keys_wherever_the_keyboard_is(qtbot, make_state, study_dir: Path) -> None:
    from app.widgets.main_window import MainWindow

    state: AppState = make_state()
    win = MainWindow(state)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    labels, panel = win.labels, win.label_panel
    labels.set_annotator("dr-mode")
    key = state.files.current_key
    win.viewer.setFocus()  # the person clicked on the image
    qtbot.keyClick(win.viewer, Qt.Key.Key_L)  # start labelling
    win.viewer.setFocus()  # a click on the image again: the label keys still go to the labels
    layout = state.display.view.layout
    qtbot.keyClick(win.viewer, Qt.Key.Key_2)
    assert state.display.view.layout == layout  # not the CC layout
    assert labels.draft(key, "malignancy").value == "malignant" and labels.draft(key, "malignancy").dirty
    assert labels.labelling and "LABELLING" in panel.mode.text()  # and the panel says so
    qtbot.keyClick(win.viewer, Qt.Key.Key_Escape)
    assert not labels.labelling and "LABELLING" not in panel.mode.text()
    win.viewer.setFocus()
    qtbot.keyClick(win.viewer, Qt.Key.Key_2)
    assert state.display.view.layout == "cc"  # out of labelling mode, 2 is the layout again
    wait_idle(qtbot, state)


def test_label_keys_are_data_for_the_key_list() -> None:
    from app.widgets.label_panel import KEYS

    assert {k for k, _ in KEYS} >= {"L", "0", "C or Space", "↑ / ↓", "Enter", "Esc"}
    assert all(what for _, what in KEYS)


def test_view_from_a_file_name_is_not_said_to_come_from_the_dicom_header(
    qtbot, make_state, settings: Settings, tmp_path: Path
) -> None:
    from PIL import Image

    from inference.phantoms.generator import PhantomSpec, render

    folder = tmp_path / "jpegs"
    folder.mkdir()
    pixels = (render(PhantomSpec("L", "CC", shape=(128, 96), seed=4)) * 255).astype("uint8")
    Image.fromarray(pixels).save(folder / "P66_L_DM_CC.jpg", "JPEG", quality=92)
    settings.store_path = tmp_path / "labels.sqlite"
    state: AppState = make_state()
    state.open_paths([folder])
    wait_idle(qtbot, state)
    labels = LabelsState(state)
    panel = LabelPanel(labels)
    qtbot.addWidget(panel)
    text = panel.editors["view"].status.text()
    assert "file name" in text and "P66_L_DM_CC" in text and "DICOM" not in text
    labels.close()


def test_accept_moves_in_the_chosen_order_and_says_where(opened, qtbot, settings: Settings) -> None:
    state, labels, panel = opened
    labels.set_annotator("dr-order")
    tree = [r.key for r in state.files.study_set.images]
    queue = [i.key for i in labels.queue]
    assert tree != queue  # the phantom study's queue (model uncertainty) differs from the tree
    assert panel.advance.currentData() == "queue"  # the default keeps the queue
    state.files.set_current(tree[0])
    assert panel.position.text() == f"Image {queue.index(tree[0]) + 1} of 4 in queue order"
    panel.advance.setCurrentIndex(panel.advance.findData("tree"))  # the person chooses the tree
    assert labels.advance == "tree" and settings.value("labels/advance") == "tree"
    assert panel.position.text() == "Image 1 of 4 in tree order" and panel.position.isVisible()
    qtbot.keyClick(panel, Qt.Key.Key_1)
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    assert state.files.current_key == tree[1]  # the tree's next image, not the queue's
    assert panel.position.text() == "Image 2 of 4 in tree order"
    qtbot.keyClick(panel, Qt.Key.Key_2)
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    assert state.files.current_key == tree[2]
    again = LabelsState(state)  # the choice is kept in the settings
    assert again.advance == "tree"
    again.close()
    labels.set_advance("queue")
    assert panel.advance.currentData() == "queue" and "in queue order" in panel.position.text()
    cur = state.files.current_key
    qtbot.keyClick(panel, Qt.Key.Key_1)
    qtbot.keyClick(panel, Qt.Key.Key_Return)
    reviewed = {tree[0], tree[1], cur}
    order = queue[queue.index(cur) + 1 :] + queue[: queue.index(cur)]
    assert state.files.current_key == next(k for k in order if k not in reviewed)


def test_class_buttons_are_not_cut_at_the_default_window_width(qtbot, make_state, study_dir: Path) -> None:
    from PySide6.QtGui import QFont, QFontMetrics

    from app.widgets.main_window import MainWindow

    state: AppState = make_state()
    win = MainWindow(state)
    qtbot.addWidget(win)
    win.resize(1600, 1000)  # the default size
    win.show()
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    win.panels["Labels"].raise_()
    qtbot.waitUntil(lambda: win.label_panel.isVisible())
    for task, editor in win.label_panel.editors.items():
        for b in (*editor.buttons.values(), editor.confirm_button):
            bold = QFont(b.font())
            bold.setBold(True)  # the chosen class is drawn bold
            need = QFontMetrics(bold).horizontalAdvance(b.text()) + 2 * 6 + 2  # padding and border
            assert b.isVisible() and b.width() >= need, (task, b.text(), b.width(), need)
            assert b.geometry().right() <= editor.width(), (task, b.text())  # inside its frame
    wait_idle(qtbot, state)


def test_export_into_a_folder_with_files_makes_its_own_folder(opened, qtbot, tmp_path: Path) -> None:
    state, labels, _panel = opened
    labels.set_annotator("dr-exp")
    labels.confirm("view")
    labels.accept(advance=False)
    chosen = tmp_path / "Desktop"
    chosen.mkdir()
    (chosen / "notes.txt").write_text("mine")
    with qtbot.waitSignal(labels.exported, timeout=30000) as sig:
        labels.export(chosen)
    result = sig.args[0]
    made = Path(result.folder)
    assert made.parent == chosen and made.name.startswith("labels-export-") and (made / "manifest.csv").is_file()
    assert (chosen / "notes.txt").read_text() == "mine"
    with qtbot.waitSignal(labels.exported, timeout=30000) as sig:
        labels.export(tmp_path / "new" / "export")  # a missing folder is made
    assert (tmp_path / "new" / "export" / "manifest.csv").is_file()
