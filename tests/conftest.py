"""Shared fixtures: synthetic mammography DICOM written by `inference.phantoms.generator` into tmp_path.

- `phantom_spec`: a small (256 x 192) left CC phantom with one spiculated mass.
- `phantom_study`: a 4-view study (R CC, L CC, R MLO, L MLO; IM1..IM4.dcm) of 256 x 192 images,
  cancer in the right breast; returns the four paths in that order.
- `phantom_dicom`: a factory `phantom_dicom(name="image.dcm", spec=None, **write_dicom_kwargs)`
  that renders `spec` (default `phantom_spec`) and writes it to tmp_path / name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from inference.phantoms.generator import Mass, PhantomSpec, render, write_dicom, write_study

SMALL = (256, 192)


@pytest.fixture
def phantom_spec() -> PhantomSpec:
    return PhantomSpec("L", "CC", "B", masses=(Mass(0.5, 0.35, 0.05, True),), shape=SMALL, seed=7)


@pytest.fixture
def phantom_study(tmp_path: Path) -> list[Path]:
    return write_study(tmp_path / "study", shape=SMALL, density="C", malignant_side="R", seed=3)


@pytest.fixture
def phantom_dicom(tmp_path: Path, phantom_spec: PhantomSpec) -> Callable[..., Path]:
    def make(name: str = "image.dcm", spec: PhantomSpec | None = None, **kwargs: object) -> Path:
        spec = spec or phantom_spec
        return write_dicom(tmp_path / name, render(spec), spec=spec, **kwargs)  # type: ignore[arg-type]

    return make
