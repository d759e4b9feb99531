"""What the model said about a study, gathered for a DICOM report (`inference.pacs.results`).

From a predictions CSV and its maps folder (what ``python -m inference predict`` writes, see
docs/formats.md) or from predictions in memory (what the app holds). The evidence region of an
image is the box around the connected area of strongest positive evidence (toward malignant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from inference.csvsafe import SafeDictReader
from inference.formats import TASK_CLASSES
from inference.pacs.errors import PacsError

if TYPE_CHECKING:
    from inference.imaging.studies import Study
    from inference.model.predict import Prediction
    from inference.model.summary import BreastSummary, ExamSummary

__all__ = [  # fmt: skip
    "ImageFinding", "BreastFinding", "StudyFindings", "evidence_box", "findings_from_csv", "findings_from_predictions",
]

#: Evidence at or above this fraction of the image's strongest positive evidence makes the region.
EVIDENCE_FRACTION = 0.5


def evidence_box(evidence: np.ndarray, fraction: float = EVIDENCE_FRACTION) -> tuple[int, int, int, int] | None:
    """(first column, first row, last column, last row) of the connected area around the strongest
    positive evidence where it stays >= ``fraction`` of that maximum; None without positive evidence."""
    ev = np.nan_to_num(np.asarray(evidence, np.float32))
    top = float(ev.max()) if ev.size else 0.0
    if top <= 0.0:
        return None
    labels, _ = ndimage.label(ev >= top * fraction)
    peak = np.unravel_index(int(np.argmax(ev)), ev.shape)
    rows, cols = np.nonzero(labels == labels[peak])
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


@dataclass(frozen=True, eq=False)
class ImageFinding:
    """One image: its SOP Instance UID and what the model gave for it."""

    sop_uid: str
    laterality: str  # "L" | "R" | ""
    p_malignant: float
    density: tuple[float, ...]  # in TASK_CLASSES["density"] order; () when the model has none
    view: tuple[float, ...]  # in TASK_CLASSES["view"] order
    evidence: np.ndarray | None = field(default=None, repr=False)  # on the image's own pixel grid

    def evidence_region(self) -> tuple[int, int, int, int] | None:
        return None if self.evidence is None else evidence_box(self.evidence)


@dataclass(frozen=True)
class BreastFinding:
    laterality: str  # "L" | "R"
    p_malignant: float
    density: tuple[float, ...]
    sop_uids: tuple[str, ...]  # its images


@dataclass(frozen=True)
class StudyFindings:
    """One study: its images, breasts and the exam, and the algorithm that produced them."""

    study_uid: str
    images: tuple[ImageFinding, ...]
    breasts: tuple[BreastFinding, ...]
    p_malignant: float
    density: tuple[float, ...]
    algorithm_name: str
    algorithm_version: str


def _float(text: str) -> float:
    try:
        return float(text) if text.strip() else math.nan
    except ValueError:
        return math.nan


def _probs(row: Mapping[str, str], task: str) -> tuple[float, ...]:
    values = tuple(_float(row.get(f"p_{task}_{c}", "") or "") for c in TASK_CLASSES[task])
    return () if all(math.isnan(v) for v in values) else values


#: The text columns of the predictions CSV and of the maps index (inference.cli writes them neutralised
#: against formulas, inference.csvsafe; the reader restores them).
PREDICTION_TEXT_COLUMNS = ("level", "key", "path", "status", "error", "patient_id", "study_uid", "laterality",
                           "laterality_source", "view", "view_source", "model_version")
MAPS_INDEX_TEXT_COLUMNS = ("key", "path", "evidence", "error", "preview", "lesion")


def _evidence(maps: Path | None) -> dict[str, Path]:
    """image key -> its evidence file, from a maps folder's index.csv."""
    if maps is None:
        return {}
    index = maps / "index.csv"
    try:
        with open(index, newline="", encoding="utf-8") as fp:
            rows = SafeDictReader(fp, MAPS_INDEX_TEXT_COLUMNS)
            return {r["key"]: maps / Path(r["evidence"]).name for r in rows if r.get("evidence")}
    except (OSError, KeyError) as exc:
        raise PacsError(f"cannot read the maps index ({exc})", index) from exc


def findings_from_csv(
    predictions: str | Path, maps: str | Path | None, algorithm_name: str, sop_of_key: Mapping[str, str] | None = None
) -> list[StudyFindings]:
    """The studies of a predictions CSV (rows ``ok`` only). ``maps``: its maps folder, for the
    evidence regions. Image keys are SOP Instance UIDs for DICOM files; ``sop_of_key`` maps others."""
    path = Path(predictions)
    try:
        with open(path, newline="", encoding="utf-8") as fp:
            rows = [r for r in SafeDictReader(fp, PREDICTION_TEXT_COLUMNS) if r.get("status") == "ok"]
    except OSError as exc:
        raise PacsError(f"cannot read the predictions ({exc.strerror or exc})", path) from exc
    evidence_files = _evidence(Path(maps) if maps is not None else None)
    sop = dict(sop_of_key or {})
    studies: dict[str, dict[str, list[dict[str, str]]]] = {}
    for r in rows:
        level = r["level"]
        key = r["study_uid"] if level == "image" else r["key"].rsplit("/", 1)[0] if level == "breast" else r["key"]
        studies.setdefault(key, {"image": [], "breast": [], "exam": []}).setdefault(r["level"], []).append(r)
    out = []
    for study_key, levels in studies.items():
        if not levels["exam"] or not levels["image"]:
            continue
        images = []
        for r in levels["image"]:
            ev_path = evidence_files.get(r["key"])
            evidence = np.load(ev_path).astype(np.float32) if ev_path is not None else None
            images.append(ImageFinding(sop.get(r["key"], r["key"]), r["laterality"], _float(r["p_malignant"]),
                                       _probs(r, "density"), _probs(r, "view"), evidence))  # fmt: skip
        breasts = []
        for r in levels["breast"]:
            uids = tuple(i.sop_uid for i in images if i.laterality == r["laterality"])
            breasts.append(BreastFinding(r["laterality"], _float(r["p_malignant"]), _probs(r, "density"), uids))
        exam = levels["exam"][0]
        out.append(StudyFindings(
            study_uid=levels["image"][0]["study_uid"] or study_key, images=tuple(images), breasts=tuple(breasts),
            p_malignant=_float(exam["p_malignant"]), density=_probs(exam, "density"),
            algorithm_name=algorithm_name, algorithm_version=exam.get("model_version", ""),
        ))  # fmt: skip
    return out


def findings_in(studies: Sequence[StudyFindings], study_uid: str) -> StudyFindings:
    for s in studies:
        if s.study_uid == study_uid:
            return s
    raise PacsError(f"no prediction for study {study_uid}")


def findings_from_predictions(
    study: Study,
    predictions: Mapping[str, Prediction],
    breasts: Sequence[BreastSummary],
    exam: ExamSummary,
    laterality: Mapping[str, str],
    algorithm_name: str,
) -> StudyFindings:
    """A study's findings from predictions in memory (the app's), DICOM images only."""
    images = []
    for rec in study.images:
        p = predictions.get(rec.key)
        if p is None or rec.kind != "dicom" or not rec.sop_uid:
            continue
        images.append(ImageFinding(rec.sop_uid, laterality.get(rec.key, rec.laterality), p.p_malignant,
                                   p.probabilities.get("density", ()), p.probabilities.get("view", ()),
                                   p.evidence_original()))  # fmt: skip
    if not images:
        raise PacsError(f"no prediction for a DICOM image of study {study.study_uid}")
    sop_of = {r.key: r.sop_uid for r in study.images}
    found = tuple(
        BreastFinding(b.laterality, b.p_malignant, b.density, tuple(sop_of[k] for k in b.image_keys if sop_of.get(k)))
        for b in breasts
    )
    return StudyFindings(study.study_uid, tuple(images), found, exam.p_malignant, exam.density, algorithm_name,
                         exam.model_version)  # fmt: skip
