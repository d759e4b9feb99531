"""``python -m inference predict`` on files without DICOM tags: breast and exam rows follow the
grouping by file name (issue 14)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from inference.cli import main
from inference.phantoms.generator import PhantomSpec, render, write_jpeg, write_png

SHAPE = (256, 192)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_research_names_give_one_exam_and_two_breasts_per_woman(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    seed = 0
    for side in "RL":
        for view in ("CC", "MLO"):
            seed += 1
            spec = PhantomSpec(side, view, shape=SHAPE, seed=seed)  # type: ignore[arg-type]
            write_jpeg(folder / f"P66_{side}_DM_{view}.jpg", render(spec))
    for n, side in ((1, "R"), (2, "L")):  # a mini-MIAS pair: odd = right, even = left, no view in the name
        write_png(folder / f"mdb{n:03d}.png", render(PhantomSpec(side, "MLO", shape=SHAPE, seed=10 + n)))  # type: ignore[arg-type]
    out = tmp_path / "p.csv"
    code = main(["predict", str(folder), "--out", str(out), "--model", str(tiny_model), "--device", "cpu"])
    capsys.readouterr()
    assert code == 0
    rows = _rows(out)
    images = [r for r in rows if r["level"] == "image"]
    assert len(images) == 6 and {r["status"] for r in images} == {"ok"}
    cesm = [r for r in images if r["patient_id"] == "P66"]
    assert [(r["laterality"], r["view"]) for r in cesm] == [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]
    assert {(r["laterality_source"], r["view_source"], r["study_uid"]) for r in cesm} == {
        ("filename", "filename", "patient:P66")
    }
    mias = [r for r in images if r["patient_id"] == "mdb001-002"]
    assert [(r["laterality"], r["laterality_source"], r["view"]) for r in mias] == [
        ("R", "filename", ""),
        ("L", "filename", ""),
    ]
    breasts = [r["key"] for r in rows if r["level"] == "breast"]
    exams = [r["key"] for r in rows if r["level"] == "exam"]
    assert sorted(breasts) == sorted(["patient:P66/R", "patient:P66/L", "patient:mdb001-002/R", "patient:mdb001-002/L"])
    assert sorted(exams) == ["patient:P66", "patient:mdb001-002"]
    exam = next(r for r in rows if r["level"] == "exam" and r["key"] == "patient:P66")
    assert float(exam["p_malignant"]) == max(float(r["p_malignant"]) for r in cesm)
