"""Fixtures of the app tests: offscreen Qt, settings and caches in tmp_path, phantom studies, no leftover workers."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyqtgraph as pg
import pytest

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
        return state

    yield make
    leftovers = [s for s in made if s.pool.running()]
    for s in made:
        assert s.shutdown(20000), "a worker did not finish within 20 s of being cancelled"
    assert not leftovers, "the test left workers running"


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


def wait_idle(qtbot: object, state: AppState, timeout_ms: int = 60000) -> None:
    """Wait until the opened set is scanned and every worker has finished."""
    qtbot.waitUntil(  # type: ignore[attr-defined]
        lambda: (
            bool(state.files.study_set.studies or state.files.study_set.problems)
            and not state.activity.busy[0]
            and not state.pool.running()
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
