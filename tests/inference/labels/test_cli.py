"""``python -m inference labels import | export | stats``: the app's exchange code, headless."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from inference import cli
from inference.formats import read_label_manifest
from inference.imaging.studies import StudySet, scan
from inference.labels.store import LabelEdit, LabelStore
from inference.phantoms.dicom import write_study


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> StudySet:
    folder = tmp_path_factory.mktemp("cli-labels") / "P7"
    folder.mkdir()
    write_study(folder, patient_id="P7", shape=(128, 96), malignant_side="L", seed=3)
    found = scan([folder])
    assert len(found.images) == 4
    return found


def _store(path: Path, studies: StudySet) -> None:
    keys = [r.key for r in studies.images]
    with LabelStore(path) as store:
        store.remember_images(studies.images)
        readings = {
            "dr-a": ("malignant", "benign", "malignant", "benign"),
            "dr-b": ("malignant", "benign", "benign", "benign"),
        }
        for who, values in readings.items():
            edits = [LabelEdit(k, "malignancy", v, 0.9) for k, v in zip(keys, values, strict=True)]
            store.set_labels(edits, annotator=who)
        store.set_labels([LabelEdit(keys[0], "density", "C", 0.7, source="model-confirmed")], annotator="dr-a")
        store.set_labels([LabelEdit(keys[1], "acr", "3", 0.4, status="suggested", source="model")], annotator="dr-a")


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    real_out, real_err = cli.sys.stdout, cli.sys.stderr
    cli.sys.stdout, cli.sys.stderr = out, err
    try:
        code = cli.main(["labels", *argv])
    finally:
        cli.sys.stdout, cli.sys.stderr = real_out, real_err
    return code, out.getvalue(), err.getvalue()


def test_stats_counts_and_kappa(tmp_path: Path, studies: StudySet) -> None:
    path = tmp_path / "labels.sqlite"
    _store(path, studies)
    code, out, err = _run("stats", "--store", str(path))
    assert code == 0, err
    assert "9 label(s) confirmed by people, 1 suggestion(s) (1 of them the model's" in out
    assert "model-confirmed" in out and "model (suggested)" in out
    a, b = ["malignant", "benign", "malignant", "benign"], ["malignant", "benign", "benign", "benign"]
    kappa = cohen_kappa_score(a, b)
    row = next(line for line in out.splitlines() if line.startswith("malignancy ") and "dr-a" in line)
    assert row.split()[1:] == ["dr-a", "dr-b", "4", "3", f"{kappa:.3f}"]


def test_export_writes_the_app_folder_and_import_reads_it(tmp_path: Path, studies: StudySet) -> None:
    path = tmp_path / "labels.sqlite"
    _store(path, studies)
    code, out, err = _run("export", "--store", str(path), str(tmp_path / "cli"))
    assert code == 0, err
    assert "by source: model-confirmed 1, person 8" in out and "1 model suggestion(s) left out" in out
    from inference.labels.exchange import export_store

    with LabelStore(path) as store:  # what File > Export does, with the images opened
        export_store(store, tmp_path / "app", studies.images)
    for name in ("manifest.csv", "annotations.csv"):  # the same rows (in the order the images came)
        cli_rows = (tmp_path / "cli" / name).read_text(encoding="utf-8").splitlines()
        app_rows = (tmp_path / "app" / name).read_text(encoding="utf-8").splitlines()
        assert cli_rows[0] == app_rows[0] and sorted(cli_rows) == sorted(app_rows)
    assert sorted(p.name for p in (tmp_path / "cli" / "images").iterdir()) == sorted(
        p.name for p in (tmp_path / "app" / "images").iterdir()
    )
    rows = read_label_manifest(tmp_path / "cli" / "manifest.csv")
    assert len(rows) == 4 and all((tmp_path / "cli" / r.image).is_file() for r in rows)

    other = tmp_path / "other.sqlite"
    code, out, err = _run("import", "--store", str(other), str(tmp_path / "cli"))
    assert code == 0, err
    assert "imported 9 label(s)" in out
    code, out, _ = _run("import", "--store", str(other), str(tmp_path / "cli"))
    assert "imported 0 label(s)" in out and "(9 already there)" in out
    with LabelStore(other) as store:
        assert store.annotators() == ["dr-a", "dr-b"] and len(store.labels()) == 9


def test_default_store_is_the_apps(tmp_path: Path, studies: StudySet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    code, _, err = _run("stats")
    assert code == 2 and "no label store" in err
    _store(tmp_path / "data" / "mammo-review" / "labels.sqlite", studies)
    code, out, _ = _run("stats")
    assert code == 0 and str(tmp_path / "data" / "mammo-review" / "labels.sqlite") in out
