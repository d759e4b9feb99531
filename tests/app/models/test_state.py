"""AppState end to end on phantom DICOM with the bundled model: opening, problems, cache, cancel, responsiveness."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import QTimer

from app.models.cache import PredictionCache
from app.models.settings import Settings
from app.models.state import AppState
from inference.model.predict import Prediction, PredictionSummary

from ..conftest import slow_backend, wait_idle


def test_open_study_predicts_every_image(qtbot, make_state, study_dir: Path) -> None:
    state: AppState = make_state()
    seen: list[tuple] = []
    state.runner.predictions_changed.connect(seen.append)
    with qtbot.waitSignal(state.files.studies_changed, timeout=20000):
        state.open_paths([study_dir])
    wait_idle(qtbot, state)
    study = state.files.study_set.studies[0]
    assert [r.label for r in study.images] == ["R-CC", "L-CC", "R-MLO", "L-MLO"]
    assert set(state.runner.predictions) == {r.key for r in study.images}
    assert state.files.current_key == study.images[0].key
    assert all(state.memory.image(r.key) is not None for r in study.images)  # decoded for display
    assert state.runner.session is not None and state.runner.session.device == "cpu"
    p = state.runner.predictions[study.images[0].key]
    assert 0.0 <= p.p_malignant <= 1.0 and p.p_malignant_std >= 0.0
    # one breast per side and one exam, summarised from the image predictions
    assert sorted(b.laterality for b in state.runner.breasts.values()) == ["L", "R"]
    assert len(state.runner.exams) == 1
    assert state.runner.breast_of(study.images[0].key).laterality == "R"
    assert state.runner.model_runs == 4
    assert sum(len(k) for k in seen) == 4


def test_bad_file_is_listed_with_its_reason(qtbot, make_state, study_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(study_dir, folder)
    (folder / "broken.dcm").write_bytes(b"DICM" + b"\x00" * 50)
    truncated = folder / "IM4.dcm"
    truncated.write_bytes(truncated.read_bytes()[:2000])  # header kept, pixel data cut
    state = make_state()
    state.open_paths([folder])
    wait_idle(qtbot, state)
    names = {p.path.name: p.reason for p in state.files.problems}
    assert "broken.dcm" in names and names["broken.dcm"]
    assert "IM4.dcm" in names and names["IM4.dcm"]
    good = [r.key for r in state.files.study_set.images if r.path.name != "IM4.dcm"]
    assert all(k in state.runner.predictions for k in good)  # the rest of the work went on


def test_a_decoder_panic_is_one_listed_problem_with_a_message(qtbot, make_state, study_dir: Path,
                                                              tmp_path: Path) -> None:
    """A Rust decoder's panic (a BaseException) in the decode workers: that file is a problem with a
    status message, the app lives on and the other images are predicted."""
    from inference.phantoms.hostile import panic_rle

    folder = tmp_path / "study"
    shutil.copytree(study_dir, folder)
    panic_rle(folder / "panic.dcm")
    state = make_state()
    messages: list[tuple[str, str]] = []
    state.activity.message.connect(lambda level, text: messages.append((level, text)))
    state.open_paths([folder])
    wait_idle(qtbot, state)
    names = {p.path.name: p.reason for p in state.files.problems}
    assert "the decoder panicked" in names.get("panic.dcm", "")
    assert any(level == "warning" and "panic.dcm was not predicted: the decoder panicked" in text
               for level, text in messages), messages
    good = [r.key for r in state.files.study_set.images if r.path.name != "panic.dcm"]
    assert len(good) == 4 and all(k in state.runner.predictions for k in good)


def test_reopening_runs_no_model(qtbot, make_state, settings: Settings, study_dir: Path) -> None:
    calls: list[int] = []
    first = make_state(backend=slow_backend(0.0, calls))
    first.open_paths([study_dir])
    wait_idle(qtbot, first)
    assert sum(calls) == 4 and first.runner.model_runs == 4
    first.runner.cache.flush()  # the writes go on in the background; an app's exit waits for them
    assert len(list(settings.cache_dir.glob("*.npz"))) == 4

    calls.clear()  # a fresh app: empty memory, same cache folder
    second = make_state(backend=slow_backend(0.0, calls), cache=PredictionCache(settings.cache_dir))
    second.open_paths([study_dir])
    wait_idle(qtbot, second)
    assert calls == [] and second.runner.model_runs == 0
    assert set(second.runner.predictions) == set(first.runner.predictions)
    for key, p in first.runner.predictions.items():
        q = second.runner.predictions[key]
        assert q.p_malignant == p.p_malignant and q.geometry == p.geometry
        assert (q.evidence == p.evidence).all()


def test_cancel_stops_the_model_and_keeps_what_is_done(qtbot, make_state, three_studies: Path) -> None:
    calls: list[int] = []
    state = make_state(backend=slow_backend(0.6, calls))
    state.open_paths([three_studies])
    qtbot.waitUntil(lambda: len(state.runner.predictions) >= 4, timeout=30000)
    state.cancel()
    assert state.activity.busy[0] == ""
    assert state.shutdown(20000)
    n = len(state.runner.predictions)
    assert 4 <= n < 12
    qtbot.wait(50)
    assert len(state.runner.predictions) == n  # nothing arrives after the cancel


def test_event_loop_keeps_turning_during_inference(qtbot, make_state, three_studies: Path) -> None:
    state = make_state(backend=slow_backend(0.4))
    ticks = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(state.activity.busy[0]))
    timer.start()
    state.open_paths([three_studies])
    wait_idle(qtbot, state)
    timer.stop()
    busy_ticks = [t for t in ticks if t == "Running the model"]
    assert len(state.runner.predictions) == 12
    # three model calls of >= 0.4 s each ran in the worker while the main thread kept ticking
    assert len(busy_ticks) >= 15


def test_navigation_and_operating_point(qtbot, make_state, three_studies: Path) -> None:
    state = make_state()
    state.open_paths([three_studies])
    wait_idle(qtbot, state)
    keys = [r.key for r in state.files.study_set.images]
    state.files.step_image(1)
    assert state.files.current_key == keys[1]
    state.files.step_study(1)
    assert state.files.current_key == state.files.study_set.studies[1].images[0].key
    state.files.step_study(-5)
    assert state.files.current_key == keys[0]
    ps = sorted(p.p_malignant for p in state.runner.predictions.values())
    with qtbot.waitSignal(state.runner.operating_point_changed):
        state.runner.set_operating_point(ps[-1])
    assert [k for k in keys if state.runner.flagged(k)] == [
        k for k in keys if state.runner.predictions[k].p_malignant >= ps[-1]
    ]
    state.runner.set_operating_point(0.0)
    assert all(state.runner.flagged(k) for k in keys)
    assert state.settings.operating_point == 0.0
    wait_idle(qtbot, state)  # moving on prefetched the next study in the background


def test_a_new_set_is_announced_with_predictions_and_summaries_that_fit_it(qtbot, make_state, study_dir: Path,
                                                                           three_studies: Path) -> None:  # fmt: skip
    state = make_state()
    state.open_paths([three_studies])
    wait_idle(qtbot, state)
    assert len(state.runner.predictions) == 12 and state.runner.breasts
    seen: list[tuple[bool, bool, str | None]] = []

    def on_studies() -> None:
        files, runner = state.files, state.runner
        fits = all(files.has(k) for k in runner.predictions)
        summaries_fit = all(files.has(k) for b in runner.breasts.values() for k in b.image_keys)
        seen.append((fits, summaries_fit, files.current_key))

    state.files.studies_changed.connect(on_studies)
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    assert seen == [(True, True, None)]  # no old prediction, no old breast, no stale current image
    assert state.files.current_key == state.files.study_set.images[0].key and len(state.runner.predictions) == 4


def test_model_error_reaches_the_user(qtbot, make_state, study_dir: Path, tmp_path: Path) -> None:
    state = make_state()
    state.settings.model_path = str(tmp_path / "missing.onnx")
    messages: list[tuple[str, str]] = []
    state.activity.message.connect(lambda level, text: messages.append((level, text)))
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    assert state.runner.predictions == {}
    assert "missing.onnx" in state.runner.model_error
    assert any(level == "error" and "missing.onnx" in text for level, text in messages)
    assert all(state.memory.image(r.key) is not None for r in state.files.study_set.images)  # still viewable



def test_maps_of_older_predictions_come_back_from_the_cache(
    qtbot, make_state, three_studies: Path, monkeypatch
) -> None:
    import app.models.images

    monkeypatch.setattr(app.models.images, "MAPS_MEMORY", 4)
    state = make_state()
    state.open_paths([three_studies])
    wait_idle(qtbot, state)
    assert len(state.runner.predictions) == 12
    light = [k for k, p in state.runner.predictions.items() if not isinstance(p, Prediction)]
    assert len(light) == 8 and not set(light) & {r.key for r in state.files.current_study.images}
    p = state.runner.predictions[light[0]]
    assert isinstance(p, PredictionSummary) and p.z.shape == (496,) and 0.0 <= p.p_malignant <= 1.0
    full = state.runner.prediction_with_maps(light[0])
    assert full.evidence is not None and full.model_input.size and full.p_malignant == p.p_malignant
