"""Reads back what the tests need from a TID 1500 SR: per measurement group its tracking identifier,
probability of cancer, coded evaluations, referenced images and region."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataset import Dataset


@dataclass
class Group:
    tracking: str = ""
    probability: float | None = None
    codes: dict[str, str] = field(default_factory=dict)  # concept meaning -> value meaning
    images: list[str] = field(default_factory=list)  # referenced SOP Instance UIDs
    region: list[float] | None = None


def _meaning(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning)


def _walk(items: list[Dataset], group: Group) -> None:
    for item in items:
        kind, name = item.ValueType, _meaning(item)
        if kind == "TEXT" and name == "Tracking Identifier":
            group.tracking = str(item.TextValue)
        elif kind == "NUM" and name == "Probability of cancer":
            group.probability = float(item.MeasuredValueSequence[0].NumericValue)
        elif kind == "CODE":
            group.codes[name] = str(item.ConceptCodeSequence[0].CodeMeaning)
        elif kind == "IMAGE":
            group.images.append(str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
        elif kind == "SCOORD":
            group.region = [float(v) for v in item.GraphicData]
        if "ContentSequence" in item:
            _walk(list(item.ContentSequence), group)


def measurement_groups(sr: Dataset) -> dict[str, Group]:
    """Tracking identifier -> its group."""
    out: dict[str, Group] = {}
    for item in sr.ContentSequence:
        if item.ValueType == "CONTAINER" and _meaning(item) == "Imaging Measurements":
            for g in item.ContentSequence:
                group = Group()
                _walk(list(g.ContentSequence), group)
                out[group.tracking] = group
    return out


def evidence_uids(sr: Dataset) -> set[str]:
    """Every SOP Instance UID in the SR's Current Requested Procedure Evidence."""
    return {
        str(sop.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for sop in series.ReferencedSOPSequence
    }
