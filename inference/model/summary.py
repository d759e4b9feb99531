"""Breast- and exam-level summaries of image predictions (the aggregation rule of issue 3).

- A breast (one study, one laterality): the view with the highest malignancy probability gives the
  breast's malignancy, its Monte-Carlo std and its ACR category probabilities; density is the mean
  of the views' density probabilities.
- An exam (one study): the same rule over its breasts. Images whose laterality is unknown belong to
  no breast; the exam counts each of them as a breast of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inference.model.predict import PredictionSummary

if TYPE_CHECKING:
    from inference.imaging.studies import ImageRecord

__all__ = ["BreastSummary", "ExamSummary", "study_key", "summarise"]


@dataclass(frozen=True)
class BreastSummary:
    """One breast of one study."""

    key: str  # "<study>/L" or "<study>/R"
    study_uid: str
    patient_id: str
    laterality: str  # "L" | "R"
    image_keys: tuple[str, ...]
    source_key: str  # the image whose malignancy probability is the highest
    p_malignant: float
    p_malignant_std: float
    acr: tuple[float, ...]  # of the source image
    density: tuple[float, ...]  # mean over the breast's images
    model_version: str


@dataclass(frozen=True)
class ExamSummary:
    """One study: the highest breast (or unassigned image) and the mean density."""

    key: str  # the study key
    study_uid: str
    patient_id: str
    breast_keys: tuple[str, ...]  # the breasts, then unassigned images' keys
    source_key: str  # the image behind the exam's malignancy
    p_malignant: float
    p_malignant_std: float
    acr: tuple[float, ...]
    density: tuple[float, ...]
    model_version: str


def study_key(record: ImageRecord) -> str:
    """The study an image belongs to: its ``study_uid``, which :func:`inference.scan` gives every image
    (the DICOM StudyInstanceUID, else the study of the grouping rules, docs/formats.md "Studies of
    files without DICOM tags"); for a record built elsewhere without one, its patient, else its folder."""
    if record.study_uid:
        return record.study_uid
    if record.patient_id:
        return f"patient:{record.patient_id}"
    return f"folder:{record.path.parent}"


@dataclass(frozen=True)
class _Unit:
    key: str
    source_key: str
    p: float
    std: float
    acr: tuple[float, ...]
    density: tuple[float, ...]


def _combine(units: Sequence[_Unit]) -> tuple[_Unit, tuple[float, ...]]:
    """The unit with the highest p (NaN counts lowest) and the mean density over units that have one."""
    top = max(units, key=lambda u: -np.inf if np.isnan(u.p) else u.p)
    dens = [u.density for u in units if u.density]
    density = tuple(float(v) for v in np.mean(np.asarray(dens, np.float64), axis=0)) if dens else ()
    return top, density


def _unit(key: str, p: PredictionSummary) -> _Unit:
    return _Unit(
        key=key,
        source_key=p.key,
        p=p.p_malignant,
        std=p.p_malignant_std,
        acr=p.probabilities.get("acr", ()),
        density=p.probabilities.get("density", ()),
    )


def summarise(
    records: Sequence[ImageRecord],
    predictions: Sequence[PredictionSummary],
    laterality: Mapping[str, str] | None = None,
) -> tuple[list[BreastSummary], list[ExamSummary]]:
    """Breast and exam summaries of the records that have a prediction, in the records' order.

    ``laterality`` (image key -> "L"/"R"/"") overrides the records' laterality, e.g. with the one
    read from the pixels (:func:`inference.imaging.decode.resolve_laterality`).
    """
    by_key = {p.key: p for p in predictions}
    lat = dict(laterality or {})
    studies: dict[str, list[ImageRecord]] = {}
    for r in records:
        if r.key in by_key:
            studies.setdefault(study_key(r), []).append(r)
    breasts: list[BreastSummary] = []
    exams: list[ExamSummary] = []
    for skey, recs in studies.items():
        version = by_key[recs[0].key].model_version
        units: list[_Unit] = []
        for side in ("R", "L"):
            views = [r for r in recs if lat.get(r.key, r.laterality) == side]
            if not views:
                continue
            bkey = f"{skey}/{side}"
            top, density = _combine([_unit(bkey, by_key[r.key]) for r in views])
            breasts.append(
                BreastSummary(
                    key=bkey,
                    study_uid=recs[0].study_uid,
                    patient_id=recs[0].patient_id,
                    laterality=side,
                    image_keys=tuple(r.key for r in views),
                    source_key=top.source_key,
                    p_malignant=top.p,
                    p_malignant_std=top.std,
                    acr=top.acr,
                    density=density,
                    model_version=version,
                )
            )
            units.append(_Unit(bkey, top.source_key, top.p, top.std, top.acr, density))
        for r in recs:
            if lat.get(r.key, r.laterality) not in ("R", "L"):
                units.append(_unit(r.key, by_key[r.key]))
        top, density = _combine(units)
        exams.append(
            ExamSummary(
                key=skey,
                study_uid=recs[0].study_uid,
                patient_id=recs[0].patient_id,
                breast_keys=tuple(u.key for u in units),
                source_key=top.source_key,
                p_malignant=top.p,
                p_malignant_std=top.std,
                acr=top.acr,
                density=density,
                model_version=version,
            )
        )
    return breasts, exams
