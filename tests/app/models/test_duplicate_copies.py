"""Issue 13: a corrupt copy of an image sorted before an intact one must not hide it in the app."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from inference.phantoms import generator as phantom
from inference.phantoms.hostile import panic_rle

from ..conftest import wait_idle


def test_the_intact_copy_of_a_sop_instance_is_shown_and_predicted(qtbot, make_state, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    spec = phantom.PhantomSpec("R", "CC", shape=(256, 192), seed=4)
    intact = phantom.write_dicom(folder / "b-intact.dcm", phantom.render(spec), spec=spec)
    same = dcmread(intact, stop_before_pixels=True)
    corrupt = panic_rle(folder / "a-corrupt.dcm")  # sorts first; its RLE frame makes the decoder panic
    ds = dcmread(corrupt)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = same.SOPInstanceUID
    ds.StudyInstanceUID, ds.PatientID = same.StudyInstanceUID, same.PatientID
    ds.save_as(corrupt)

    state = make_state()
    state.open_paths([folder])
    wait_idle(qtbot, state)
    records = state.files.study_set.images
    assert [r.path.name for r in records] == ["a-corrupt.dcm"]  # the first copy stands for the image
    key = records[0].key
    assert [c.path.name for c in state.files.study_set.duplicates[key]] == ["b-intact.dcm"]
    assert state.memory.image(key) is not None  # shown, from the intact copy
    assert key in state.runner.predictions  # and predicted
