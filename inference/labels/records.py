"""Label records: what the store holds and hands out, and how several annotators' labels combine.

Pure data and pure functions; no I/O. See :mod:`inference.labels.store`.

A *label* is what a person confirmed (status ``"confirmed"``), task by task: a value the person set
(source ``"person"``) or a suggestion the person explicitly confirmed unchanged (source
``"<suggestion>-confirmed"``, e.g. ``"model-confirmed"``). Everything else is a *suggestion*
(status ``"suggested"``): an imported data set's manifest (``"manifest"``), labels imported as
suggestions (``"import"``), or the model's guesses (``"model"``, kept only where an older store
held them; never a label, never exported, never a vote).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from inference.formats import TASK_CLASSES

__all__ = [
    "SOURCES",
    "SUGGESTION_SOURCES",
    "LABEL_STATUSES",
    "confirmed_source",
    "is_label",
    "exportable",
    "LabelState",
    "LabelEdit",
    "LabelRecord",
    "HistoryEntry",
    "CombinedLabel",
    "StoredImage",
    "combine",
    "utc_now",
]

#: Where a suggestion comes from: the model, the DICOM header (or file name), an imported manifest
#: or imported annotations.
SUGGESTION_SOURCES: tuple[str, ...] = ("model", "dicom", "manifest", "import")
#: A record's source: ``person`` (a value a person set), a suggestion's source, or
#: ``<suggestion source>-confirmed`` (that suggestion, explicitly confirmed by a person).
SOURCES: tuple[str, ...] = ("person", *SUGGESTION_SOURCES, *(f"{s}-confirmed" for s in SUGGESTION_SOURCES))
#: A label's status: pre-filled and not confirmed by a person, or confirmed by one.
LABEL_STATUSES: tuple[str, ...] = ("suggested", "confirmed")


def confirmed_source(suggestion: str) -> str:
    """The source of a label that confirms a suggestion of ``suggestion`` (e.g. ``model-confirmed``)."""
    if suggestion not in SUGGESTION_SOURCES:
        raise ValueError(f"{suggestion!r} is not a suggestion source ({', '.join(SUGGESTION_SOURCES)})")
    return f"{suggestion}-confirmed"


def is_label(status: str, source: str) -> bool:
    """Whether a record is a label (a person confirmed it) rather than a suggestion."""
    return status == "confirmed" and source != "model"


def exportable(status: str, source: str) -> bool:
    """Whether a record may leave the store: labels, and suggestions that are not the model's."""
    return is_label(status, source) or (status == "suggested" and source != "model")


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
    kind: str  # "edit" | "undo" | "redo" | "import" | "migration"
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
    #: ``"person"`` when people's labels voted, ``"suggested"`` when nobody confirmed the task and
    #: suggestions (an imported data set's labels) voted instead.
    by: str = "person"


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
        voters = [r for r in recs if is_label(r.status, r.source)]
        by = "person"
        if not voters:
            voters = [r for r in recs if r.status == "suggested" and r.source != "model"]
            by = "suggested"
        if not voters:
            continue
        votes = [r for r in voters if r.value is not None]
        names = tuple(sorted({r.annotator for r in voters}))
        if not votes:
            out[task] = CombinedLabel(None, 1.0, names, 0, len(voters), by)
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
        u = min(1.0, max(0.0, u))
        out[task] = CombinedLabel(winner, u, names, len(votes), len(voters) - len(votes), by)
    return out

