"""The label loop end to end on phantoms: labels in the store -> de-identified export ->
``python -m training finetune`` (1 epoch, height 128) -> a new .onnx + manifest the runtime loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.formats import read_label_manifest, read_model_manifest
from inference.imaging.decode import load_image
from inference.imaging.studies import scan
from inference.labels.exchange import export_labels
from inference.labels.store import LabelEdit, LabelStore
from inference.model.predict import predict
from inference.model.session import ModelSession, bundled_model_path
from inference.phantoms import generator as phantom

DENSITIES = ("A", "C", "D")


@pytest.mark.slow
def test_labels_export_finetune_and_load(tmp_path: Path) -> None:
    for i, density in enumerate(DENSITIES):
        phantom.write_study(
            tmp_path / "studies" / f"W{i}", patient_id=f"W{i}", shape=(256, 192), density=density,
            malignant_side="R" if i == 0 else None, seed=40 + i,
        )
    found = scan([tmp_path / "studies"])
    assert len(found.images) == 12 and not found.problems

    store = LabelStore(tmp_path / "labels.sqlite")
    patient_density = {f"W{i}": d for i, d in enumerate(DENSITIES)}
    for n, rec in enumerate(found.images):
        malignant = rec.patient_id == "W0" and rec.laterality == "R"
        edits = [
            LabelEdit(rec.key, "malignancy", "malignant" if malignant else "benign", 0.9),
            LabelEdit(rec.key, "density", patient_density[rec.patient_id], 0.8),
            LabelEdit(rec.key, "view", rec.model_view, 1.0),
            LabelEdit(rec.key, "acr", "5" if malignant else "1", 0.7),
        ]
        store.set_labels(edits, annotator="dr-a")
        if n % 3 == 0:  # a second reader, sometimes disagreeing on density
            store.set_label(rec.key, "density", "B", 0.6, annotator="dr-b")
    export = export_labels(store, found.images, tmp_path / "export")
    store.close()
    assert export.rows == 12 and not export.problems
    rows = read_label_manifest(export.manifest)
    assert any(0.0 < r.label("density").uncertainty < 1.0 for r in rows)

    start = bundled_model_path()
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable, "-m", "training", "finetune", "--from", str(start), "--manifest", str(export.manifest),
            "--out", str(run), "--epochs", "1", "--height", "128", "--batch-size", "4",
        ],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tuned = run / start.name
    assert tuned.is_file() and tuned.with_suffix(".json").is_file()

    manifest = read_model_manifest(tuned)
    base = read_model_manifest(start)
    assert manifest.input_height == 128 and manifest.version != base.version
    assert any("manifest.csv" in t for t in manifest.training_data)

    session = ModelSession.load(tuned, device="cpu")
    assert session.height == 128 and session.version == manifest.version
    images = [load_image(export.folder / r.image) for r in rows[:2]]
    preds = predict(session, images)
    assert [p.key for p in preds] == [r.key for r in rows[:2]]  # exported keys are the images' keys
    for p in preds:
        assert p.model_version == manifest.version and 0.0 <= p.p_malignant <= 1.0
        assert np.isfinite(p.z).all()
