"""scan(): grouping by UIDs, hanging order, laterality and view sources, non-image and broken files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from inference.errors import ImageReadError, NotAnImageError
from inference.formats import image_key
from inference.imaging.studies import ImageRecord, Problem, laterality_in_text, read_record, scan, view_in_text
from inference.phantoms import generator as phantom

SHAPE = (96, 72)
HANGING = ["R-CC", "L-CC", "R-MLO", "L-MLO"]


def _study(folder: Path, **kw: object) -> list[Path]:
    return phantom.write_study(folder, shape=SHAPE, **kw)  # type: ignore[arg-type]


def _one(path: Path, laterality: str = "L", view: str = "CC", **kw: object) -> Path:
    spec = phantom.PhantomSpec(laterality, view, shape=SHAPE)  # type: ignore[arg-type]
    return phantom.write_dicom(path, phantom.render(spec), spec=spec, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- grouping and order
def test_a_study_is_grouped_by_uid_and_hung_rcc_lcc_rmlo_lmlo(tmp_path: Path) -> None:
    paths = _study(tmp_path / "s", patient_id="P1")
    for i, p in enumerate(paths):  # file names in reverse hanging order
        p.rename(p.with_name(f"{9 - i}.dcm"))
    found = scan([tmp_path])
    assert found.problems == ()
    (study,) = found.studies
    assert study.patient_id == "P1" and study.date == "20240115"
    assert [r.label for r in study.images] == HANGING
    assert {(r.laterality_source, r.view_source) for r in study.images} == {("tag", "tag")}
    assert all(r.kind == "dicom" and r.rows == SHAPE[0] and r.cols == SHAPE[1] for r in study.images)
    assert study.images[0].patient_name == "Phantom, Patient"
    assert found.images == study.images
    assert found.by_key(study.images[2].key) is study.images[2]
    with pytest.raises(KeyError):
        found.by_key("nope")


def test_patients_and_studies_are_separated_and_sorted_by_date(tmp_path: Path) -> None:
    _study(tmp_path / "b-late", patient_id="B", study_date="20240301", seed=1)
    _study(tmp_path / "a", patient_id="A", seed=2)
    _study(tmp_path / "b-early", patient_id="B", study_date="20230301", seed=3)
    found = scan([tmp_path])
    assert [(s.patient_id, s.date) for s in found.studies] == [("A", "20240115"), ("B", "20230301"), ("B", "20240301")]
    assert all(len(s.images) == 4 for s in found.studies)
    assert len({s.study_uid for s in found.studies}) == 3


def test_extra_views_hang_after_the_four_standard_ones(tmp_path: Path) -> None:
    paths = _study(tmp_path, patient_id="P")
    uid = dcmread(paths[0]).StudyInstanceUID
    _one(tmp_path / "ml.dcm", "R", "ML", patient_id="P", study_uid=uid)
    found = scan([tmp_path])
    (study,) = found.studies
    assert [r.label for r in study.images] == [*HANGING, "R-ML"]
    assert study.images[-1].model_view == "CC"


def test_files_named_twice_are_indexed_once_and_copies_are_duplicates(tmp_path: Path) -> None:
    path = _one(tmp_path / "a.dcm")
    shutil.copy(path, tmp_path / "copy.dcm")
    found = scan([tmp_path, path])
    assert len(found.images) == 1
    (problem,) = found.problems
    assert problem.skipped and problem.path.name == "copy.dcm"
    assert problem.reason == f"same SOP instance as {tmp_path / 'a.dcm'}"
    assert [r.path for r in found.duplicates[found.images[0].key]] == [tmp_path / "copy.dcm"]


def test_progress_is_reported_and_cancel_stops_early(tmp_path: Path) -> None:
    _study(tmp_path)
    calls: list[tuple[int, int]] = []
    scan([tmp_path], progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)
    seen: list[int] = []
    partial = scan([tmp_path], progress=lambda d, t: seen.append(d), cancelled=lambda: len(seen) > 2)
    assert len(partial.images) == 2


# --------------------------------------------------------------------------- laterality and view
def test_text_only_tags_give_text_sources(tmp_path: Path) -> None:
    _study(tmp_path, tags_mode="text_only")
    (study,) = scan([tmp_path]).studies
    assert [r.label for r in study.images] == HANGING
    assert {(r.laterality_source, r.view_source) for r in study.images} == {("text", "text")}


def test_no_tags_leave_laterality_and_view_unknown(tmp_path: Path) -> None:
    _study(tmp_path, tags_mode="none")
    (study,) = scan([tmp_path]).studies
    sources = {(r.laterality, r.laterality_source, r.view, r.view_source) for r in study.images}
    assert sources == {("", "unknown", "", "unknown")}
    assert {r.model_view for r in study.images} == {""}


def _strip(path: Path, *keywords: str) -> Dataset:
    ds = dcmread(path)
    for k in keywords:
        if k in ds:
            delattr(ds, k)
    return ds


def test_series_laterality_and_view_code_sequence_count_as_tags(tmp_path: Path) -> None:
    ds = _strip(_one(tmp_path / "a.dcm", "R", "MLO"), "ImageLaterality", "ViewPosition")
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "399368009", "SCT", "medio-lateral oblique"
    ds.ViewCodeSequence = Sequence([code])
    ds.save_as(tmp_path / "a.dcm")
    record = read_record(tmp_path / "a.dcm")
    assert (record.laterality, record.laterality_source, record.view, record.view_source) == ("R", "tag", "MLO", "tag")


def test_view_code_meaning_alone_is_understood(tmp_path: Path) -> None:
    ds = _strip(_one(tmp_path / "a.dcm", "L", "CC"), "ViewPosition")
    ds.ViewCodeSequence[0].CodeValue = "X-LOCAL"
    ds.ViewCodeSequence[0].CodeMeaning = "Cranio-caudal exaggerated laterally"
    ds.save_as(tmp_path / "a.dcm")
    record = read_record(tmp_path / "a.dcm")
    assert (record.view, record.view_source, record.model_view) == ("XCCL", "tag", "CC")


@pytest.mark.parametrize(("side", "mirrored"), [("L", False), ("R", False), ("L", True), ("R", True)])
def test_patient_orientation_gives_the_side_of_a_cc_image(tmp_path: Path, side: str, mirrored: bool) -> None:
    """The only evidence is PatientOrientation: no laterality tag, no side in any text or the file name.

    Down the columns of a CC image is toward the patient's left ("L") for a right breast. A mirrored
    image shows the other side in its pixels: the header still decides, and the mismatch is flagged.
    """
    from inference.imaging.decode import load_image, resolve_laterality

    spec = phantom.PhantomSpec(side, "CC", shape=SHAPE, mirrored=mirrored)  # type: ignore[arg-type]
    path = phantom.write_dicom(tmp_path / "image.dcm", phantom.render(spec), spec=spec)
    ds = _strip(path, "ImageLaterality", "Laterality")
    ds.SeriesDescription = ds.ProtocolName = "MAMMOGRAPHY"
    ds.save_as(path)
    column = {"L": "R", "R": "L"}[side]
    assert list(ds.PatientOrientation)[1] == column and laterality_in_text(path.stem) == ""
    record = read_record(path)
    assert (record.laterality, record.laterality_source) == (side, "text")
    loaded = load_image(record)
    assert loaded.pixel_laterality == ({"L": "R", "R": "L"}[side] if mirrored else side)
    assert loaded.laterality_mismatch == mirrored
    assert resolve_laterality(record, loaded) == (side, "text")
    del ds.PatientOrientation  # without it nothing in the header tells the side: the pixels do
    ds.save_as(path)
    silent = read_record(path)
    assert (silent.laterality, silent.laterality_source) == ("", "unknown")
    assert resolve_laterality(silent, load_image(silent)) == (loaded.pixel_laterality, "pixels")


def test_file_names_give_laterality_and_view(tmp_path: Path) -> None:
    image = phantom.render(phantom.PhantomSpec("R", "MLO", shape=SHAPE))
    record = read_record(phantom.write_png(tmp_path / "P102_R_DM_MLO.png", image))
    assert (record.laterality, record.laterality_source) == ("R", "filename")
    assert (record.view, record.view_source) == ("MLO", "filename")


@pytest.mark.parametrize(
    ("text", "laterality", "view"),
    [
        ("P102_R_DM_CC", "R", "CC"),
        ("L MLO", "L", "MLO"),
        ("RMLO", "R", "MLO"),
        ("LCC", "L", "CC"),
        ("R-ML", "R", "ML"),
        ("LM", "", "LM"),
        ("LEFT CRANIO-CAUDAL", "L", "CC"),
        ("Right medio-lateral oblique", "R", "MLO"),
        ("L CC and R CC", "", "CC"),
        ("R CC L MLO", "", ""),
        ("SCREENING MAMMOGRAPHY", "", ""),
        ("ACCESSION R2", "", ""),
        ("mdb001", "", ""),
        ("IM0001", "", ""),
        ("LXCCL", "L", "XCCL"),
    ],
)
def test_free_text_parsing_respects_word_boundaries(text: str, laterality: str, view: str) -> None:
    assert laterality_in_text(text) == laterality
    assert view_in_text(text) == view


# --------------------------------------------------------------------------- other formats
def test_pictures_are_grouped_by_a_manifest_else_by_their_names(tmp_path: Path) -> None:
    paths = []
    for side, view in (("L", "MLO"), ("R", "CC"), ("L", "CC"), ("R", "MLO")):
        image = phantom.render(phantom.PhantomSpec(side, view, shape=SHAPE))  # type: ignore[arg-type]
        paths.append(phantom.write_png(tmp_path / f"P7_{side}_DM_{view}.png", image))
    (tmp_path / "notes.txt").write_text("not an image")
    named = scan([tmp_path])
    assert named.problems == ()
    (study,) = named.studies
    assert (study.patient_id, study.study_uid) == ("P7", "patient:P7")
    assert {r.study_source for r in study.images} == {"filename"}
    assert [r.label for r in study.images] == HANGING
    groups = {str(p): ("woman-7", "exam-1") for p in paths}
    (study,) = scan([tmp_path], groups=groups).studies
    assert (study.patient_id, study.study_uid) == ("woman-7", "exam-1")
    assert {r.study_source for r in study.images} == {"manifest"}
    assert [r.label for r in study.images] == HANGING
    assert study.images[0].key == image_key(study.images[0].path)


def test_every_picture_format_is_indexed(tmp_path: Path) -> None:
    image = phantom.render(phantom.PhantomSpec("L", "CC", shape=SHAPE))
    phantom.write_png(tmp_path / "a.png", image, bits=16)
    phantom.write_png(tmp_path / "b.tif", image, bits=16)
    phantom.write_png(tmp_path / "c.pgm", image, bits=8)
    phantom.write_jpeg(tmp_path / "d.jpg", image)
    Image.open(tmp_path / "d.jpg").save(tmp_path / "e.jpeg.bak", "JPEG")  # by content, not name
    found = scan([tmp_path, tmp_path / "e.jpeg.bak"])
    assert sorted(r.kind for r in found.images) == ["jpeg", "jpeg", "pgm", "png", "tiff"]
    assert all((r.rows, r.cols) == SHAPE and r.transfer_syntax == "" for r in found.images)


# --------------------------------------------------------------------------- problems
def test_non_image_dicom_is_skipped_with_its_reason(tmp_path: Path) -> None:
    phantom.write_non_image_dicom(tmp_path / "sr.dcm", "sr")
    phantom.write_non_image_dicom(tmp_path / "ps.dcm", "gsps")
    found = scan([tmp_path])
    assert found.images == ()
    reasons = {p.path.name: (p.skipped, p.reason) for p in found.problems}
    assert reasons == {
        "sr.dcm": (True, "Basic Text SR: not an image"),
        "ps.dcm": (True, "Grayscale Softcopy Presentation State: not an image"),
    }
    with pytest.raises(NotAnImageError):
        read_record(tmp_path / "sr.dcm")


def test_colour_and_multi_frame_dicom_are_skipped(tmp_path: Path) -> None:
    ds = dcmread(_one(tmp_path / "x.dcm"))
    ds.set_pixel_data(np.zeros((*SHAPE, 3), np.uint8), "RGB", 8)
    ds.save_as(tmp_path / "rgb.dcm")
    ds = dcmread(tmp_path / "x.dcm")
    ds.set_pixel_data(np.zeros((2, *SHAPE), np.uint16), "MONOCHROME2", 12)
    ds.save_as(tmp_path / "frames.dcm")
    (tmp_path / "x.dcm").unlink()
    reasons = {p.path.name: p for p in scan([tmp_path]).problems}
    assert reasons["rgb.dcm"].skipped and "colour image (PhotometricInterpretation RGB)" in reasons["rgb.dcm"].reason
    assert reasons["frames.dcm"].skipped and "2 frames" in reasons["frames.dcm"].reason


def test_broken_files_are_problems_and_the_scan_goes_on(tmp_path: Path) -> None:
    good = _one(tmp_path / "good.dcm")
    data = good.read_bytes()
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "cut-pixels.dcm").write_bytes(data[:-700])
    (tmp_path / "cut-header.dcm").write_bytes(data[:200])
    (tmp_path / "random.dcm").write_bytes(np.random.default_rng(1).bytes(4000))
    png = phantom.write_png(tmp_path / "cut.png", phantom.render(phantom.PhantomSpec("L", "CC", shape=SHAPE)))
    png.write_bytes(png.read_bytes()[:-50])
    (tmp_path / "README").write_text("ignored: not named like an image")
    found = scan([tmp_path, tmp_path / "missing.dcm"])
    assert [r.path.name for r in found.images] == ["good.dcm"]
    problems = {p.path.name: p for p in found.problems}
    assert set(problems) == {"empty.dcm", "cut-pixels.dcm", "cut-header.dcm", "random.dcm", "cut.png", "missing.dcm"}
    assert not any(p.skipped for p in problems.values())
    expected = SHAPE[0] * SHAPE[1] * 2
    cut = problems["cut-pixels.dcm"].reason
    assert cut == f"truncated pixel data: expected {expected} bytes, found {expected - 700}"
    assert problems["empty.dcm"].reason == "empty file (0 bytes)"
    assert "not a DICOM, PNG, JPEG, TIFF or PGM" in problems["random.dcm"].reason
    assert "truncated PNG" in problems["cut.png"].reason
    assert problems["missing.dcm"].reason == "no such file or folder"
    assert str(problems["cut-header.dcm"]).startswith(str(tmp_path / "cut-header.dcm"))


def test_a_file_named_explicitly_that_is_not_an_image_is_a_problem(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert scan([tmp_path]).problems == ()
    (problem,) = scan([notes]).problems
    assert problem == Problem(notes, problem.reason, False) and "unrecognised content" in problem.reason
    with pytest.raises(ImageReadError, match="notes.txt"):
        read_record(notes)


def test_records_are_frozen(tmp_path: Path) -> None:
    record = read_record(_one(tmp_path / "a.dcm"))
    assert isinstance(record, ImageRecord)
    with pytest.raises(AttributeError):
        record.laterality = "R"  # type: ignore[misc]


def test_old_dicom_without_preamble_or_meta_header_is_read(tmp_path: Path) -> None:
    ds = dcmread(_one(tmp_path / "a.dcm", "R", "MLO"))
    del ds.file_meta
    ds.preamble = None
    dcmwrite(tmp_path / "IMG0001", ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert (tmp_path / "IMG0001").read_bytes()[:2] == b"\x08\x00"
    (tmp_path / "a.dcm").unlink()
    (record,) = scan([tmp_path]).images
    assert (record.transfer_syntax, record.label) == ("1.2.840.10008.1.2", "R-MLO")
    from inference.imaging.decode import load_image

    assert load_image(record).pixels.shape == SHAPE


@pytest.mark.parametrize("syntax", ["rle", "jpeg2000", "jpegls", "jpeg-lossless", "jpeg-baseline"])
def test_cut_compressed_pixel_data_is_found_and_trailing_padding_is_not(tmp_path: Path, syntax: str) -> None:
    data = _one(tmp_path / "ok.dcm", transfer_syntax=syntax).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-30])
    padding = b"\xfc\xff\xfc\xffOB\x00\x00" + (6000).to_bytes(4, "little") + bytes(6000)  # (FFFC,FFFC)
    (tmp_path / "ok.dcm").write_bytes(data + padding)
    found = scan([tmp_path])
    assert [r.path.name for r in found.images] == ["ok.dcm"]
    (problem,) = found.problems
    assert problem.path.name == "cut.dcm" and not problem.skipped
    assert problem.reason.startswith("truncated pixel data: a compressed fragment of")


def test_images_of_other_modalities_are_skipped(tmp_path: Path) -> None:
    ds = dcmread(_one(tmp_path / "ct.dcm"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = "CT"
    ds.save_as(tmp_path / "ct.dcm")
    (problem,) = scan([tmp_path]).problems
    assert problem.skipped and problem.reason == "CT Image of modality CT: not a mammogram"


def test_patients_sort_by_the_numbers_in_their_ids(tmp_path: Path) -> None:
    """Studies come in the order a person reads the patients' names: P2 before P10."""
    for seed, pid in enumerate(("P10", "P2", "P1")):  # a seed each: identical files would be one image
        spec = phantom.PhantomSpec("L", "CC", shape=(120, 90), seed=seed)
        phantom.write_png(tmp_path / f"{pid}_L_DM_CC.png", phantom.render(spec))
    assert [s.patient_id for s in scan([tmp_path]).studies] == ["P1", "P2", "P10"]
