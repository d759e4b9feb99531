"""Fixtures for training tests: a tiny labelled set of phantom mammograms (PNG and DICOM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.formats import LabelRow, TaskLabel, write_label_manifest
from inference.phantoms.generator import Mass, PhantomSpec, render, write_dicom, write_png

HEIGHT = 128


def phantom_rows(folder: Path, n: int = 8) -> list[LabelRow]:
    """``n`` phantoms (every other one with a mass, alternating CC/MLO, L/R), labelled; PNG and DICOM."""
    rows = []
    for i in range(n):
        malignant = i % 2 == 1
        spec = PhantomSpec(
            "L" if i % 4 < 2 else "R",
            "CC" if i % 3 else "MLO",
            "ABCD"[i % 4],  # type: ignore[arg-type]  # a str, where PhantomSpec declares the Literal "A" | ... | "D"
            masses=(Mass(0.5, 0.4, 0.08, True),) if malignant else (),
            shape=(256, 192),
            seed=i,
        )
        image = render(spec)
        path = folder / f"img{i}.png" if i % 2 == 0 else folder / f"img{i}.dcm"
        if path.suffix == ".png":
            write_png(path, image)
        else:
            write_dicom(path, image, spec=spec, patient_id=f"P{i // 2}")
        rows.append(
            LabelRow(
                key=f"k{i}",
                image=path.name,
                labels={
                    "malignancy": TaskLabel("malignant" if malignant else "benign", 0.0),
                    "acr": TaskLabel("4" if malignant else "1", 0.2),
                    "density": TaskLabel(spec.density, 0.0),
                    "view": TaskLabel(spec.view if spec.view != "ML" else "CC", 0.0),
                },
                laterality=spec.laterality,
                patient=f"P{i // 2}",
                source="phantom",
                split="train" if i < n - 2 else "tuning",
            )
        )
    return rows


@pytest.fixture
def phantom_manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return write_label_manifest(folder / "manifest.csv", phantom_rows(folder))
