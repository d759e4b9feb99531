"""Label records: what the store holds and hands out, and how several annotators' labels combine.

Pure data and one pure function (:func:`combine`); no I/O. See :mod:`inference.labels.store`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from inference.formats import TASK_CLASSES

__all__ = [
    "SOURCES",
    "LABEL_STATUSES",
    "LabelState",
    "LabelEdit",
    "LabelRecord",
    "HistoryEntry",
    "CombinedLabel",
    "StoredImage",
    "combine",
    "utc_now",
]

SOURCES: tuple[str, ...] = ("person", "model", "import", "manifest")
#: A label's status: pre-filled and not confirmed by a person, or confirmed by one.
LABEL_STATUSES: tuple[str, ...] = ("suggested", "confirmed")


def utc_now() -> str:
    """The current UTC time as ISO 8601 with microseconds and ``Z`` (sorts as text)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LabelState:
    """A label's content: class name (``None`` = unknown), confidence in [0, 1] and status."""

    value: str | None
    confidence: float
    status: str = "confirmed"

    @property
    def uncertainty(self) -> float:
        return 1.0 - self.confidence


@dataclass(frozen=True)
class LabelEdit:
    """A requested change of one task of one image (``value=None`` sets "unknown").

    ``source`` overrides the source of the call for this edit (e.g. ``"model"`` when a person
    confirms the model's suggestion unchanged within an action that is otherwise ``"person"``).
    """

    key: str
    task: str
    value: str | None
    confidence: float = 1.0
    status: str = "confirmed"
    source: str | None = None


@dataclass(frozen=True)
class LabelRecord:
    """The current label of one (image key, annotator, task)."""

    key: str
    annotator: str
    task: str
    value: str | None
    confidence: float
    status: str
    source: str
    model_version: str
    time: str

    @property
    def uncertainty(self) -> float:
        return 1.0 - self.confidence

    @property
    def state(self) -> LabelState:
        return LabelState(self.value, self.confidence, self.status)


@dataclass(frozen=True)
class HistoryEntry:
    """One row of the append-only history. ``old``/``new`` are ``None`` where no label existed."""

    id: int
    action: int
    key: str
    annotator: str
    task: str
    old: LabelState | None
    new: LabelState | None
    source: str
    model_version: str
    time: str
    kind: str  # "edit" | "undo" | "redo" | "import"
    reverts: int | None  # for undo/redo: the action it undoes or redoes
    origin: str  # for imports: the content hash that makes importing idempotent


@dataclass(frozen=True)
class StoredImage:
    """Where a labelled image was last seen (what an export needs of it)."""

    key: str
    path: Path
    kind: str
    patient_id: str
    study_uid: str
    laterality: str
    time: str


@dataclass(frozen=True)
class CombinedLabel:
    """Several annotators' labels of one task of one image, combined (see :func:`combine`)."""

    value: str | None
    uncertainty: float
    annotators: tuple[str, ...] = ()
    votes: int = 0
    abstentions: int = 0


def combine(records: Iterable[LabelRecord]) -> dict[str, CombinedLabel]:
    """Combine the labels of one image into one label and uncertainty per task.

    Rule (docs/formats.md, "Combining annotators"): only *confirmed* labels vote; when a task has
    none, the *suggested* labels that did not come from the model (imported manifests, DICOM) vote
    instead, so a model never trains on its own guesses. An "unknown" vote is an abstention. The
    winning class is the argmax of the summed confidences (ties: more votes, then class order);
    ``uncertainty = 1 - (sum of the winner's confidences) / (number of voting annotators)``, so
    disagreement and low confidence both raise it. A task where everyone abstains is missing
    (``value=None``, ``uncertainty=1``).
    """
    by_task: dict[str, list[LabelRecord]] = {}
    for rec in records:
        by_task.setdefault(rec.task, []).append(rec)
    out: dict[str, CombinedLabel] = {}
    for task, recs in by_task.items():
        voters = [r for r in recs if r.status == "confirmed"]
        if not voters:
            voters = [r for r in recs if r.status == "suggested" and r.source != "model"]
        if not voters:
            continue
        votes = [r for r in voters if r.value is not None]
        names = tuple(sorted({r.annotator for r in voters}))
        if not votes:
            out[task] = CombinedLabel(None, 1.0, names, 0, len(voters))
            continue
        classes = TASK_CLASSES.get(task, ())
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for value, confidence in ((r.value, r.confidence) for r in votes if r.value is not None):
            sums[value] = sums.get(value, 0.0) + confidence
            counts[value] = counts.get(value, 0) + 1
        order = {c: i for i, c in enumerate(classes)}
        winner = max(sums, key=lambda c: (sums[c], counts[c], -order.get(c, len(order))))
        u = 1.0 - sums[winner] / len(votes)
        out[task] = CombinedLabel(winner, min(1.0, max(0.0, u)), names, len(votes), len(voters) - len(votes))
    return out

