"""Importing a label manifest that names a woman regroups her files without DICOM UIDs (issue 14),
at once and in the next session."""

from __future__ import annotations

from pathlib import Path

from app.models.labels import LabelsState
from app.models.settings import Settings
from inference.formats import LabelRow, write_label_manifest
from inference.phantoms import generator as phantom

from ..conftest import SHAPE, wait_idle

VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


def _collection(folder: Path) -> list[Path]:
    """Five PNGs with names that say nothing: a data set's folder, so each is a study of its own."""
    paths = []
    for i, (side, view) in enumerate((*VIEWS, ("R", "CC"))):
        spec = phantom.PhantomSpec(side, view, "B", shape=SHAPE, seed=90 + i)  # type: ignore[arg-type]
        paths.append(phantom.write_png(folder / f"IM{i:04d}.png", phantom.render(spec)))
    return paths


def test_manifest_import_regroups_a_woman_now_and_next_time(
    qtbot, make_state, settings: Settings, tmp_path: Path
) -> None:
    paths = _collection(tmp_path / "data")
    state = make_state()
    labels = LabelsState(state)
    state.open_paths([tmp_path / "data"])
    wait_idle(qtbot, state)
    assert len(state.files.study_set.studies) == 5
    key_of = {r.path.name: r.key for r in state.files.study_set.images}
    rows = [LabelRow(key_of[p.name], f"data/{p.name}", {}, patient="P66") for p in paths[:4]]
    manifest = write_label_manifest(tmp_path / "cases.csv", rows, json_copy=False)
    state.files.set_current(key_of["IM0002.png"])
    seen: list[str] = []
    state.files.studies_changed.connect(lambda: seen.append("studies"))
    labels.import_from(manifest)
    assert seen == ["studies"]
    assert len(state.files.study_set.studies) == 2
    study = state.files.current_study
    assert study is not None and study.patient_id == "P66" and len(study.images) == 4
    assert state.files.current_key == key_of["IM0002.png"]  # the user stays on the image
    assert len(state.runner.predictions) == 5
    assert "patient:P66" in state.runner.exams  # the exam summary follows the new study
    labels.close()

    again = make_state(settings_=Settings(settings.path))  # the next session
    again.open_paths([tmp_path / "data"])
    wait_idle(qtbot, again)
    assert sorted(len(s.images) for s in again.files.study_set.studies) == [1, 4]
