"""AppState: the composition root of the app's state objects, which the widgets receive.

Each concern is its own object with its own typed signals (QtCore only, no widget):

- ``files`` (:class:`~app.models.files.FilesState`): the opened studies, the current image, the
  selection, the files that could not be read;
- ``memory`` (:class:`~app.models.images.ImageMemory`): the decoded images and which predictions keep
  their maps;
- ``runner`` (:class:`~app.models.runner.ModelRunner`): the model session, the predictions and their
  summaries, the operating point, the model run;
- ``display`` (:class:`~app.models.display.DisplayState`): layout, window/level, overlay and its range;
- ``activity`` (:class:`~app.models.activity.Activity`): the busy task and the messages for the user.

AppState itself holds the requests that span them (open, cancel, shut down). Long work runs in
:class:`app.models.workers.WorkerPool`; results come back on the main thread. The runtime is reached
through a :class:`~app.models.backend.Backend` so the state can be driven in tests without a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QObject

from app.models.activity import Activity
from app.models.backend import Backend, error_text
from app.models.cache import PredictionCache
from app.models.display import LAYOUTS, OVERLAYS, Display, DisplayState, Overlay
from app.models.files import FilesState
from app.models.grouping import StudyGroups
from app.models.images import IMAGE_MEMORY, MAPS_MEMORY, ImageMemory
from app.models.runner import ModelRunner
from app.models.settings import Settings
from app.models.workers import WorkerError, WorkerPool
from inference.imaging.studies import StudySet

__all__ = ["AppState", "Backend", "Display", "Overlay", "LAYOUTS", "OVERLAYS", "IMAGE_MEMORY", "MAPS_MEMORY"]

_SCANNING = "Scanning"


class AppState(QObject):
    """The state objects of one window, wired together, and the requests that span them."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend | None = None,
        cache: PredictionCache | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.backend = backend or Backend()
        self.pool = WorkerPool(max_threads=3, parent=self)  # the model, display decoding, one panel job
        self.activity = Activity(self)
        self.files = FilesState(self)
        self.memory = ImageMemory(self.files, self.pool, self.backend, self.activity, self)
        cache = cache if cache is not None else PredictionCache(settings.cache_dir)
        self.runner = ModelRunner(
            settings, self.files, self.memory, self.pool, self.backend, cache, self.activity, self
        )
        self.display = DisplayState(settings, self.files, self.runner, self)
        self.grouping = StudyGroups(settings)  # imported label manifests' women and studies

    # ------------------------------------------------------------------ requests
    def open_paths(self, paths: Iterable[str | Path]) -> None:
        """Scan files and folders, show them, and run the model on every image."""
        self.files.paths = tuple(Path(p) for p in paths)
        if not self.files.paths:
            return
        self.settings.add_recent([str(p) for p in self.files.paths])
        self.pool.cancel("inference")
        self.pool.cancel("display")
        scan = self.backend.scan
        paths_now = self.files.paths
        busy = self.activity.set_busy
        busy(_SCANNING, 0, 0)
        self.pool.submit(
            lambda progress, cancelled: scan(paths_now, progress, cancelled),
            channel="scan",
            on_progress=lambda d, t: busy(_SCANNING, d, t),
            on_result=self._on_scanned,
            on_error=self._on_error,
            on_finished=lambda cancelled: self.activity.idle() if cancelled else None,
        )

    def _on_scanned(self, study_set: StudySet) -> None:
        study_set = self.grouping.apply(study_set)
        keys = {r.key for r in study_set.images}
        self.memory.retain(keys)
        self.files.load(study_set)
        self.runner.forget(keys)  # before the widgets hear of the new set: predictions and summaries fit it
        if study_set.studies:  # the model run decodes the first study (shown first) with its model input
            self.memory.loading |= {r.key for r in study_set.studies[0].images}
        self.files.announce()
        self.activity.idle()
        if not study_set.images and study_set.problems:
            self.activity.say(
                "warning", f"No readable image in the opened files ({len(study_set.problems)} problem(s))"
            )
        self.runner.run_inference()

    def group_by_manifest(self, path: str | Path) -> int:
        """Group files without DICOM UIDs by a label manifest's patient and study, in the opened set
        at once and in later sessions; returns how many groups the manifest names. Raises
        FormatError when the file is not a label manifest."""
        found = self.grouping.add_manifest(path)
        regrouped = self.grouping.apply(self.files.study_set)
        if found and regrouped != self.files.study_set:
            self.files.regroup(regrouped)
            self.runner.summarise()  # breast and exam summaries follow the new studies
            self.files.announce_regrouped()
        return found

    def cancel(self) -> None:
        """Stop the scan and the model run (what is done stays)."""
        self.pool.cancel("scan")
        self.runner.cancel()
        self.activity.idle()
        self.memory.ensure_current()

    def _on_error(self, err: WorkerError) -> None:
        self.memory.loading.clear()
        self.activity.idle()
        self.activity.say("error", error_text(err))

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel every worker and join them, and finish the prediction cache's writes (on quit)."""
        self.pool.cancel_all()
        done = self.pool.wait(timeout_ms)
        self.runner.cache.flush()
        return done
