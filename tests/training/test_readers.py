"""Readers on small synthetic CSVs, the synthetic-label rule, and splits by woman."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from inference.errors import FormatError
from inference.formats import LabelRow, TaskLabel, read_label_manifest
from training.cli import main
from training.readers import (
    assign_splits,
    read_cbis_ddsm,
    read_cdd_cesm,
    read_inbreast,
    read_mias,
    read_vindr,
    synthetic_malignancy,
    with_synthetic_malignancy,
)


def _name(p: Path) -> str:
    return p.name


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_mias_mapping(tmp_path: Path) -> None:
    _write(
        tmp_path / "labels.csv",
        "image,laterality,view,tissue,abnormality,finding,malignant,lesions_x_y_radius\n"
        "mdb001.png,R,MLO,G,CIRC,benign,0,535:425:197\n"
        "mdb002.png,L,MLO,F,SPIC,malignant,1,1:2:3\n"
        "mdb003.png,R,MLO,D,NORM,normal,0,\n",
    )
    rows = read_mias(tmp_path, keys=_name)
    assert [r.label("malignancy").value for r in rows] == ["benign", "malignant", "benign"]
    assert [r.label("density") for r in rows] == [TaskLabel("B", 0.5), TaskLabel("A", 0.5), TaskLabel("C", 0.5)]
    assert all(r.label("acr").value is None and r.label("view") == TaskLabel("MLO", 0.0) for r in rows)
    assert [r.patient for r in rows] == ["mias-001", "mias-001", "mias-002"]  # odd/even pairs
    assert rows[0].image == str((tmp_path / "images" / "mdb001.png").resolve())


def test_mias_refuses_unknown_tissue(tmp_path: Path) -> None:
    _write(tmp_path / "labels.csv", "image,laterality,tissue,malignant\nmdb001.png,R,X,0\n")
    with pytest.raises(FormatError, match="tissue"):
        read_mias(tmp_path, keys=_name)


def test_cdd_cesm_le_images_never_teach_malignancy(tmp_path: Path) -> None:
    _write(
        tmp_path / "labels.csv",
        "image,patient,laterality,view,finding,malignant,density,birads,note\n"
        "cc/IM0001.jpg,,R,CC,normal,0,,,x\n"
        "cc/IM0002.jpg,7,L,CC,malignant,1,C,5,x\n"
        "le/P7_L_DM_CC.jpg,7,L,CC,malignant,1,C,5,x\n"
        "le/P7_L_DM_MLO.jpg,7,L,MLO,malignant,1,,4,x\n"
        "cc/IM0001.jpg,,R,CC,normal,0,,,duplicate line\n",
    )
    rows = {r.image.split("/")[-1]: r for r in read_cdd_cesm(tmp_path, keys=_name)}
    assert len(rows) == 4
    assert rows["IM0001.jpg"].label("malignancy") == TaskLabel("benign", 0.0)
    assert rows["IM0002.jpg"].label("malignancy").value == "malignant"
    assert rows["IM0002.jpg"].label("acr") == TaskLabel("5", 0.0)
    for le in ("P7_L_DM_CC.jpg", "P7_L_DM_MLO.jpg"):
        assert rows[le].label("malignancy").value is None
        assert rows[le].label("acr").value is None
        assert rows[le].source == "cdd-cesm/le"
    assert rows["P7_L_DM_CC.jpg"].label("density") == TaskLabel("C", 0.0)
    assert rows["P7_L_DM_MLO.jpg"].label("density").value is None
    assert rows["P7_L_DM_MLO.jpg"].label("view").value == "MLO"
    assert rows["IM0002.jpg"].patient == rows["P7_L_DM_CC.jpg"].patient == "cdd-P7"
    assert rows["IM0001.jpg"].patient == "cdd-cc-IM0001"


def test_cbis_ddsm_merges_abnormalities_of_one_image(tmp_path: Path) -> None:
    header = (
        "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
        "assessment,pathology,image file path\n"
    )
    a = _write(tmp_path / "mass_case_description_train_set.csv", header
               + "P_00001,3,LEFT,CC,1,mass,3,BENIGN,Mass-Training_P_00001_LEFT_CC/1.dcm\n"
               + "P_00001,3,LEFT,CC,2,mass,5,MALIGNANT,Mass-Training_P_00001_LEFT_CC/1.dcm\n")
    b = _write(tmp_path / "calc_case_description_test_set.csv", header.replace("breast density", "breast_density")
               + "P_00002,1,RIGHT,MLO,1,calcification,0,BENIGN_WITHOUT_CALLBACK,Calc-Test_P_00002_RIGHT_MLO/1.dcm\n")
    rows = {r.patient: r for r in read_cbis_ddsm([a, b], tmp_path, keys=_name)}
    one, two = rows["cbis-P_00001"], rows["cbis-P_00002"]
    assert one.label("malignancy").value == "malignant" and one.label("acr").value == "5"
    assert one.label("density").value == "C" and one.label("view").value == "CC" and one.laterality == "L"
    assert two.label("malignancy").value == "benign" and two.label("acr").value is None  # BI-RADS 0
    assert two.label("density").value == "A" and two.laterality == "R"


def test_vindr_breast_level(tmp_path: Path) -> None:
    csv_path = _write(
        tmp_path / "breast-level_annotations.csv",
        "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,split\n"
        "s1,x,i1,L,CC,10,10,BI-RADS 4,DENSITY C,training\n"
        "s1,x,i2,R,MLO,10,10,BI-RADS 1,DENSITY B,training\n"
        "s2,x,i3,L,MLO,10,10,BI-RADS 2,DENSITY D,test\n",
    )
    rows = read_vindr(csv_path, tmp_path / "images")
    assert [r.label("acr").value for r in rows] == ["4", "1", "2"]
    assert [r.label("density").value for r in rows] == ["C", "B", "D"]
    assert [r.label("view").value for r in rows] == ["CC", "MLO", "MLO"]
    assert all(r.label("malignancy").value is None for r in rows)
    assert [r.split for r in rows] == ["train", "train", "validation"]
    assert rows[0].image.endswith("images/s1/i1.dicom") and rows[0].patient == rows[1].patient
    synth = with_synthetic_malignancy(rows, 0.4)
    assert [r.label("malignancy") for r in synth] == [
        TaskLabel("malignant", 0.4), TaskLabel("benign", 0.4), TaskLabel("benign", 0.4)
    ]


def test_inbreast_semicolon_table(tmp_path: Path) -> None:
    table = _write(
        tmp_path / "INbreast.csv",
        "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads\n"
        "abc;50;R;CC;2010;22678622;4;4c\n"
        "abc;50;R;MLO;2010;22678646;4;6\n"
        "def;60;L;CC;2010;20586908;1;1\n",
    )
    (tmp_path / "AllDICOMs").mkdir()
    (tmp_path / "AllDICOMs" / "22678622_5530d5782fc89dd7_MG_R_CC_ANON.dcm").write_bytes(b"x")
    rows = read_inbreast(table, tmp_path / "AllDICOMs", keys=_name)
    assert [r.label("acr").value for r in rows] == ["4", "6", "1"]
    assert [r.label("density").value for r in rows] == ["D", "D", "A"]
    assert rows[0].key == "22678622_5530d5782fc89dd7_MG_R_CC_ANON.dcm"
    assert rows[1].key == "inbreast-22678646"  # file not found: a stable key from the table
    assert rows[0].patient == rows[1].patient != rows[2].patient


def test_synthetic_malignancy_rule() -> None:
    assert synthetic_malignancy("1", 0.3) == TaskLabel("benign", 0.3)
    assert synthetic_malignancy("2", 0.3) == TaskLabel("benign", 0.3)
    assert synthetic_malignancy("4", 0.3) == TaskLabel("malignant", 0.3)
    assert synthetic_malignancy("5", 0.3) == TaskLabel("malignant", 0.3)
    for ignored in ("3", "6", None):
        assert synthetic_malignancy(ignored).value is None
    with pytest.raises(ValueError):
        synthetic_malignancy("4", 1.5)
    known = LabelRow("k", "i", {"malignancy": TaskLabel("benign", 0.0), "acr": TaskLabel("5", 0.0)})
    assert with_synthetic_malignancy([known])[0].label("malignancy") == TaskLabel("benign", 0.0)


def _synthetic_rows(n_women: int = 60) -> list[LabelRow]:
    rows = []
    for w in range(n_women):
        for side in ("L", "R"):
            mal = "malignant" if w % 5 == 0 and side == "L" else "benign"
            rows.append(
                LabelRow(f"k{w}{side}", f"{w}{side}.png", {"malignancy": TaskLabel(mal)}, side, f"w{w}", source="s")
            )
    return rows


def test_splits_keep_each_woman_on_one_side_and_are_stratified() -> None:
    rows = assign_splits(_synthetic_rows(), seed=1)
    sides: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        sides[r.patient].add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    for split, share in (("train", 0.6), ("tuning", 0.2), ("validation", 0.2)):
        women = {r.patient for r in rows if r.split == split}
        malignant = {r.patient for r in rows if r.split == split and r.label("malignancy").value == "malignant"}
        assert len(women) == pytest.approx(60 * share, abs=1)
        assert len(malignant) == pytest.approx(12 * share, abs=1)
    assert assign_splits(_synthetic_rows(), seed=1) == rows
    assert assign_splits(_synthetic_rows(), seed=2) != rows
    with pytest.raises(ValueError):
        assign_splits(rows, (0.5, 0.2, 0.2))


def test_manifest_command_writes_relative_paths(tmp_path: Path) -> None:
    src = tmp_path / "mias"
    _write(src / "labels.csv", "image,laterality,view,tissue,abnormality,finding,malignant,lesions_x_y_radius\n"
           + "".join(f"mdb{i:03d}.png,{'RL'[(i + 1) % 2]},MLO,F,NORM,normal,0,\n" for i in range(1, 9)))
    for i in range(1, 9):
        _write(src / "images" / f"mdb{i:03d}.png", f"not really a png {i}")
    out = tmp_path / "out" / "m.csv"
    assert main(["manifest", "mias", str(src), "--out", str(out), "--relative"]) == 0
    rows = read_label_manifest(out)
    assert len(rows) == 8 and all(r.image.startswith("../mias/images/") for r in rows)
    assert {r.split for r in rows} <= {"train", "tuning", "validation"}
    assert all(r.key.startswith("sha256:") for r in rows)
    assert main(["manifest", "nope", str(src), "--out", str(out)]) == 1


def test_weigh_by_who_halves_suggestions_and_drops_model_labels() -> None:
    from training.readers import SUGGESTED_WEIGHT, weigh_by_who

    row = LabelRow("k", "a.png", {
        "malignancy": TaskLabel("benign", 0.2, "suggested"),
        "density": TaskLabel("B", 0.1, "person"),
        "view": TaskLabel("CC", 0.0, ""),
        "acr": TaskLabel("2", 0.0, "model"),
    })
    warnings: list[str] = []
    (out,) = weigh_by_who([row], warn=warnings.append)
    assert out.label("malignancy").weight == pytest.approx(0.8 * SUGGESTED_WEIGHT)
    assert out.label("malignancy").value == "benign"
    assert out.label("density") == row.label("density") and out.label("view") == row.label("view")
    assert out.label("acr").value is None
    assert warnings == ["ignored 1 acr label(s) marked acr_by='model': only people's labels and suggestions train"]
