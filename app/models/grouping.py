"""StudyGroups: the women and studies that imported label manifests name for files without DICOM UIDs.

Research data sets' files carry no StudyInstanceUID; ``scan`` groups them by their names' convention
or their folder (:mod:`inference.imaging.studies`). A label manifest that names an image's
``patient`` / ``study`` overrides that: after File > Import of such a manifest the opened set is
regrouped at once, and the manifest is remembered in the settings (``grouping/manifests``) so the
next session groups the same way. A remembered manifest that can no longer be read is left out.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.models.settings import Settings
from inference.errors import MammoReviewError
from inference.imaging.naming import manifest_groups
from inference.imaging.studies import StudySet, regroup

__all__ = ["StudyGroups"]

_KEY = "grouping/manifests"


class StudyGroups:
    """Image key or path -> (patient, study), from the manifests imported so far (the latest wins)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.groups: dict[str, tuple[str, str]] = {}
        self.manifests: list[str] = []
        for path in self._remembered():
            try:
                self.groups.update(manifest_groups(path))
            except (MammoReviewError, OSError):
                continue
            self.manifests.append(path)

    def _remembered(self) -> list[str]:
        try:
            value = json.loads(str(self.settings.value(_KEY, "[]") or "[]"))
        except ValueError:
            return []
        return [str(v) for v in value] if isinstance(value, list) else []

    def add_manifest(self, path: str | Path) -> int:
        """Take a manifest's groups (FormatError when it is not a label manifest); returns how many
        (patient, study) groups it names (0: none, nothing remembered)."""
        found = manifest_groups(path)
        if not found:
            return 0
        self.groups.update(found)
        real = str(Path(path).resolve())
        self.manifests = [m for m in self.manifests if m != real] + [real]
        self.settings.set_value(_KEY, json.dumps(self.manifests))
        return len(set(found.values()))

    def apply(self, study_set: StudySet) -> StudySet:
        """The set grouped with the manifests' groups (unchanged when there are none)."""
        return regroup(study_set, self.groups) if self.groups else study_set
