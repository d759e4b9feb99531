"""Fixtures of the app tests: offscreen Qt, settings and caches in tmp_path, phantom studies, no leftover workers."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import

import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyqtgraph as pg
import pytest
from PySide6.QtWidgets import QApplication

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

from app.models.cache import PredictionCache  # noqa: E402
from app.models.settings import Settings  # noqa: E402
from app.models.state import AppState, Backend  # noqa: E402
from inference.phantoms import generator as phantom  # noqa: E402

SHAPE = (256, 192)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(tmp_path / "settings" / "mammo-review.ini")
    s.cache_dir = tmp_path / "cache"
    s.store_path = tmp_path / "labels.sqlite"
    s.device = "cpu"
    return s


@pytest.fixture
def make_state(settings: Settings) -> Iterator[Callable[..., AppState]]:
    """AppState factory; fails the test if a worker is still running at its end."""
    made: list[AppState] = []

    def make(
        backend: Backend | None = None, cache: PredictionCache | None = None, settings_: Settings | None = None
    ) -> AppState:
        s = settings_ or settings
        state = AppState(s, backend=backend, cache=cache if cache is not None else PredictionCache(s.cache_dir))
        made.append(state)
        submit = state.pool.submit

        def submit_where(*args: Any, **kwargs: Any) -> Any:  # remember who started each job, for the report below
            job = submit(*args, **kwargs)
            ours = [f for f in traceback.extract_stack()[:-1] if "site-packages" not in f.filename]
            job.submitted_at = "".join(traceback.format_list(ours[-10:]))
            return job

        state.pool.submit = submit_where  # type: ignore[method-assign]
        return state

    yield make
    leftovers = [job for s in made for job in s.pool._all]  # jobs at work or with reports on their way
    report = "\n".join(f"channel {j.channel!r}, submitted at\n{getattr(j, 'submitted_at', '?')}" for j in leftovers)
    for s in made:
        assert s.shutdown(20000), "a worker did not finish within 20 s of being cancelled"
    assert not leftovers, f"the test left workers running:\n{report}"


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uncompressed 4-view phantom study with a malignant right breast."""
    folder = tmp_path_factory.mktemp("study") / "P1"
    folder.mkdir()
    phantom.write_study(folder, patient_id="P1", shape=SHAPE, malignant_side="R", seed=5)
    return folder


@pytest.fixture(scope="session")
def three_studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("three")
    for i in range(3):
        folder = root / f"P{i}"
        folder.mkdir()
        phantom.write_study(folder, patient_id=f"PX{i}", shape=SHAPE, seed=20 + i)
    return root


#: How long a test waits for the workers. Generous: on a machine shared by several test runs the first
#: model load, the decodes and the model run take many times longer than on an idle one.
WAIT_MS = 180_000


def _settled(state: AppState) -> bool:
    """No job at work or reporting, also after the reports and timers already due have been handled
    (one of them may start the next job: a model run ends by decoding the current study)."""
    QApplication.processEvents()
    return not state.pool.running()


def wait_workers(qtbot: object, state: AppState, timeout_ms: int = WAIT_MS) -> None:
    """Wait until every worker of ``state`` has finished and its reports have arrived. A test that ends
    right after an action that starts jobs (navigation, a study change, a model run) calls this last:
    the teardown check fails a test that leaves a worker running."""
    qtbot.waitUntil(lambda: _settled(state), timeout=timeout_ms)  # type: ignore[attr-defined]


def wait_idle(qtbot: object, state: AppState, timeout_ms: int = WAIT_MS) -> None:
    """Wait until the opened set is scanned and every worker has finished."""
    qtbot.waitUntil(  # type: ignore[attr-defined]
        lambda: (
            bool(state.files.study_set.studies or state.files.study_set.problems)
            and not state.activity.busy[0]
            and _settled(state)
        ),
        timeout=timeout_ms,
    )


def slow_backend(delay_s: float, calls: list[int] | None = None) -> Backend:
    """The real runtime with a model that takes ``delay_s`` longer per call (cancel / responsiveness tests)."""
    real = Backend()

    def predict(session: object, images: list) -> list:
        if calls is not None:
            calls.append(len(images))
        time.sleep(delay_s)
        return real.predict(session, images)

    return Backend(predict=predict)
