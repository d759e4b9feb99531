"""Research data sets' file names: parse_name, and scan/regroup grouping files without DICOM UIDs."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.imaging.naming import NamedImage, parse_name
from inference.imaging.studies import FOLDER_STUDY_MAX, regroup, scan
from inference.phantoms import generator as phantom

SHAPE = (96, 72)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("P66_L_DM_CC.jpg", ("P66", "L", "CC")),  # CDD-CESM
        ("P102_R_DM_MLO.jpg", ("P102", "R", "MLO")),
        ("0029_R_MLO.jpg", ("0029", "R", "MLO")),  # mini-DDSM
        ("A_0029_1.LEFT_CC.LJPEG", ("A_0029_1", "L", "CC")),  # DDSM
        ("Mass-Training_P_00001_RIGHT_MLO.dcm", ("Mass-Training_P_00001", "R", "MLO")),  # CBIS-DDSM
        ("case 12 right mlo.png", ("case 12", "R", "MLO")),
        ("P7_RCC.png", ("P7", "R", "CC")),
        ("mdb001.png", ("mdb001-002", "R", "")),  # mini-MIAS: odd = right, the next even = left
        ("mdb002.pgm", ("mdb001-002", "L", "")),
        ("mdb322.png", ("mdb321-322", "L", "")),
    ],
)
def test_conventions_name_the_woman_the_breast_and_the_view(name: str, expected: tuple[str, str, str]) -> None:
    found = parse_name(name)
    assert found is not None
    assert (found.patient, found.laterality, found.view) == expected


@pytest.mark.parametrize("name", ["IM0001.jpg", "L_CC.png", "R_MLO.jpg", "P7_L_DM.png", "mdb000.png", "scan.png"])
def test_names_without_a_convention_say_nothing(name: str) -> None:
    assert parse_name(name) is None


_SEEDS = iter(range(1, 10**6))


def _png(folder: Path, name: str, side: str = "L", view: str = "CC") -> Path:
    """A phantom PNG named ``name`` (each one different, so no two share an image key)."""
    spec = phantom.PhantomSpec(side, view, shape=SHAPE, seed=next(_SEEDS))  # type: ignore[arg-type]
    return phantom.write_png(folder / name, phantom.render(spec))


def test_four_views_named_by_convention_hang_as_one_study(tmp_path: Path) -> None:
    for side in "LR":
        for view in ("CC", "MLO"):
            phantom.write_jpeg(
                tmp_path / f"P66_{side}_DM_{view}.jpg",
                phantom.render(phantom.PhantomSpec(side, view, shape=SHAPE)),  # type: ignore[arg-type]
            )
            _png(tmp_path, f"0029_{side}_{view}.png", side, view)
    found = scan([tmp_path])
    assert [(s.patient_id, len(s.images)) for s in found.studies] == [("0029", 4), ("P66", 4)]
    for study in found.studies:
        assert [r.label for r in study.images] == ["R-CC", "L-CC", "R-MLO", "L-MLO"]
        assert {(r.laterality_source, r.view_source, r.study_source) for r in study.images} == {
            ("filename", "filename", "filename")
        }


def test_mini_mias_pairs_are_one_womans_right_and_left(tmp_path: Path) -> None:
    for n in (1, 2, 3, 4):
        _png(tmp_path, f"mdb{n:03d}.png", "R" if n % 2 else "L", "MLO")
    studies = scan([tmp_path]).studies
    assert [s.patient_id for s in studies] == ["mdb001-002", "mdb003-004"]
    for study in studies:
        assert [(r.laterality, r.laterality_source, r.view) for r in study.images] == [
            ("R", "filename", ""),
            ("L", "filename", ""),
        ]


def test_other_files_are_grouped_by_a_small_folder_else_alone(tmp_path: Path) -> None:
    exam, collection = tmp_path / "exam", tmp_path / "collection"
    for i in range(3):
        _png(exam, f"image{i}.png")
    for i in range(FOLDER_STUDY_MAX + 1):
        _png(collection, f"IM{i:04d}.png")
    studies = scan([tmp_path]).studies
    (folder,) = [s for s in studies if len(s.images) > 1]
    assert folder.study_uid == f"folder:{exam}" and len(folder.images) == 3
    assert {r.study_source for r in folder.images} == {"folder"}
    alone = [s for s in studies if s is not folder]
    assert len(alone) == FOLDER_STUDY_MAX + 1
    assert all(s.study_uid == f"file:{s.images[0].key}" for s in alone)


def test_a_manifest_regroups_a_scanned_set(tmp_path: Path) -> None:
    """Importing a manifest that names a woman puts her images together, whatever their names."""
    paths = [
        _png(tmp_path / "in", f"IM{i:04d}.png", side, view)
        for i, (side, view) in enumerate((("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"), ("R", "CC")))
    ]
    found = scan([tmp_path])
    assert len(found.studies) == 5
    keys = [found.by_key(r.key).key for r in found.images]
    by_path = {str(r.path): r.key for r in found.images}
    groups = {by_path[str(p)]: ("W1", "") for p in paths[:4]}
    again = regroup(found, groups)
    assert len(again.studies) == 2
    (woman,) = [s for s in again.studies if s.patient_id == "W1"]
    assert woman.study_uid == "patient:W1" and len(woman.images) == 4
    assert {r.study_source for r in woman.images} == {"manifest"}
    assert sorted(r.key for r in again.images) == sorted(keys)
    assert regroup(again, {}) == found  # without the manifest: grouped as scanned


def test_dicom_uids_win_over_names(tmp_path: Path) -> None:
    spec = phantom.PhantomSpec("L", "CC", shape=SHAPE)
    phantom.write_dicom(tmp_path / "P9_R_DM_MLO.dcm", phantom.render(spec), spec=spec, patient_id="REAL")
    (study,) = scan([tmp_path], groups={}).studies
    (rec,) = study.images
    assert study.patient_id == "REAL" and rec.study_source == "tag" and not study.study_uid.startswith("patient:")
    assert (rec.laterality, rec.laterality_source, rec.view, rec.view_source) == ("L", "tag", "CC", "tag")
    assert isinstance(parse_name(rec.path), NamedImage)
