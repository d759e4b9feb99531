"""FilesState: the opened files, their studies, the current image, the selection and the unreadable files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from inference.imaging.studies import ImageRecord, Problem, Study, StudySet

__all__ = ["FilesState"]


class FilesState(QObject):
    """What is opened and where the user is in it. Navigation requests change it; it emits what changed."""

    studies_changed = Signal()
    current_changed = Signal(str)  # "" = no current image
    selection_changed = Signal(tuple)
    problems_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.study_set = StudySet((), ())
        self.paths: tuple[Path, ...] = ()
        self.current_key: str | None = None
        self.selection: tuple[str, ...] = ()
        self.load_problems: dict[str, Problem] = {}  # files that failed to decode or preprocess
        self.pixel_laterality: dict[str, str] = {}  # the side seen in the pixels, when the file says none
        self._records: dict[str, ImageRecord] = {}
        self._study_of: dict[str, Study] = {}

    # ------------------------------------------------------------------ read access
    def record(self, key: str) -> ImageRecord:
        return self._records[key]

    def has(self, key: str) -> bool:
        return key in self._records

    def study_of(self, key: str | None) -> Study | None:
        return None if key is None else self._study_of.get(key)

    @property
    def current_study(self) -> Study | None:
        return self.study_of(self.current_key)

    @property
    def current_record(self) -> ImageRecord | None:
        return None if self.current_key is None else self._records.get(self.current_key)

    def current_study_keys(self) -> set[str]:
        study = self.current_study
        return {r.key for r in study.images} if study is not None else set()

    @property
    def problems(self) -> tuple[Problem, ...]:
        """Files that could not be read: the scan's, then those that failed to decode or preprocess."""
        return self.study_set.problems + tuple(self.load_problems.values())

    def laterality(self, key: str) -> str:
        """The tag's (or text's) laterality, else the one seen in the pixels, else ""."""
        rec = self._records.get(key)
        if rec is not None and rec.laterality:
            return rec.laterality
        return self.pixel_laterality.get(key, "")

    def ordered_records(self) -> list[ImageRecord]:
        """Every record, the current study's first."""
        cur = self.current_study
        first = list(cur.images) if cur is not None else []
        return first + [r for r in self.study_set.images if cur is None or self._study_of.get(r.key) is not cur]

    # ------------------------------------------------------------------ changes
    def load(self, study_set: StudySet) -> None:
        """Take a newly scanned set: no current image or selection yet, no load problems. No signal yet,
        so the state objects that depend on the records catch up first; then :meth:`announce`."""
        self.study_set = study_set
        self._records = {r.key: r for r in study_set.images}
        self._study_of = {r.key: s for s in study_set.studies for r in s.images}
        self.load_problems = {}
        self.selection = ()
        self.current_key = None

    def announce(self) -> None:
        """Tell the widgets about the set taken by :meth:`load`: the studies, the problems, then the
        current image (the first one, or none)."""
        self.studies_changed.emit()
        self.problems_changed.emit()
        images = self.study_set.images
        if images:
            self.set_current(images[0].key)
        else:
            self.current_changed.emit("")

    def regroup(self, study_set: StudySet) -> None:
        """Take the same images grouped anew (a label manifest named their women): the current image,
        the selection and the problems stay. No signal yet: then :meth:`announce_regrouped`."""
        assert {r.key for r in study_set.images} == set(self._records), "regroup keeps the images"
        self.study_set = study_set
        self._records = {r.key: r for r in study_set.images}
        self._study_of = {r.key: s for s in study_set.studies for r in s.images}

    def announce_regrouped(self) -> None:
        """Tell the widgets that the studies changed and show the current image in its new study."""
        self.studies_changed.emit()
        self.current_changed.emit(self.current_key or "")

    def add_problem(self, key: str, reason: str) -> None:
        rec = self._records.get(key)
        if rec is not None:
            self.load_problems[key] = Problem(rec.path, reason, False)
            self.problems_changed.emit()

    def forget_problems(self, keep: Sequence[str] | set[str]) -> None:
        """Drop the load problems except those of ``keep`` (e.g. another model may preprocess them)."""
        self.load_problems = {k: p for k, p in self.load_problems.items() if k in keep}
        self.problems_changed.emit()

    def note_pixel_laterality(self, key: str, lat: str) -> None:
        if lat and self.pixel_laterality.get(key) != lat:
            self.pixel_laterality[key] = lat

    # ------------------------------------------------------------------ requests: navigation
    def set_current(self, key: str | None) -> None:
        if key is not None and key not in self._records:
            raise KeyError(key)
        if key == self.current_key:
            return
        self.current_key = key
        self.current_changed.emit(key or "")

    def set_selection(self, keys: Sequence[str]) -> None:
        keys = tuple(k for k in keys if k in self._records)
        if keys != self.selection:
            self.selection = keys
            self.selection_changed.emit(keys)

    def step_image(self, step: int) -> None:
        """Move to the next (+1) or previous (-1) image of the opened set."""
        keys = [r.key for r in self.study_set.images]
        if not keys:
            return
        i = keys.index(self.current_key) if self.current_key in keys else -1
        self.set_current(keys[max(0, min(len(keys) - 1, i + step))])

    def step_study(self, step: int) -> None:
        """Move to the first image of the next (+1) or previous (-1) study."""
        studies = [s for s in self.study_set.studies if s.images]
        if not studies:
            return
        cur = self.current_study
        i = next((n for n, s in enumerate(studies) if s is cur), -1)
        target = studies[max(0, min(len(studies) - 1, i + step))]
        self.set_current(target.images[0].key)
