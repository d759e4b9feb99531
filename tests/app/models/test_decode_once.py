"""One decode per image when a study opens, preprocessing in the decode workers, the next study prefetched."""

from __future__ import annotations

import csv
import threading
from collections import Counter
from pathlib import Path

import pytest

import inference.model.predict as predict_module
from app.models.backend import Backend
from app.models.cache import PredictionCache
from app.models.settings import Settings
from inference.cli import main as cli_main
from inference.formats import TASK_CLASSES
from inference.imaging.studies import ImageRecord
from inference.model.pipeline import Prepared
from inference.phantoms import generator as phantom

from ..conftest import SHAPE, wait_idle

SAMPLES = Path(__file__).resolve().parents[3] / "resources" / "samples"


class Counting:
    """The real runtime, counting decodes by key (and the heights asked for)."""

    def __init__(self) -> None:
        self.real = Backend()
        self.lock = threading.Lock()
        self.keys: Counter[str] = Counter()
        self.heights: list[int | None] = []

    def load_image(self, record: ImageRecord) -> object:  # the image-level hook of the state's Backend
        with self.lock:
            self.keys[record.key] += 1
        return self.real.load_image(record)

    def load_prepared(self, record: ImageRecord, height: int | None) -> Prepared:
        with self.lock:
            self.keys[record.key] += 1
            self.heights.append(height)
        return self.real.decode(record, height)


def test_a_study_opens_with_one_decode_per_image(qtbot, make_state, study_dir: Path) -> None:
    counting = Counting()
    state = make_state(backend=Backend(load_image=counting.load_image))
    state.open_paths([study_dir])
    wait_idle(qtbot, state)
    keys = {r.key for r in state.files.study_set.images}
    assert len(keys) == 4 and set(state.runner.predictions) == keys
    assert all(state.memory.image(k) is not None for k in keys)
    assert sum(counting.keys.values()) == 4, counting.keys  # not 8: the display and the model share them
    assert state.memory.decodes == 4


def test_opening_again_with_a_model_loaded_decodes_once_and_preprocesses_in_the_workers(
    qtbot, make_state, three_studies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = Counting()
    state = make_state(backend=Backend(load_prepared=counting.load_prepared))
    parent_prepares: list[str] = []
    real_prepare = predict_module.prepare

    def prepare(image, height):  # type: ignore[no-untyped-def]
        parent_prepares.append(image.record.key)
        return real_prepare(image, height)

    monkeypatch.setattr(predict_module, "prepare", prepare)  # the app's process only: workers are spawned
    state.open_paths([three_studies / "P0"])  # the model loads first, then the study is decoded for it
    wait_idle(qtbot, state)
    state.open_paths([three_studies / "P1"])  # the session is loaded: the display's decodes preprocess too
    wait_idle(qtbot, state)
    assert len(state.runner.predictions) == 4
    assert sum(counting.keys.values()) == 8, counting.keys
    assert counting.heights == [state.runner.session.height] * 8
    assert parent_prepares == []  # every model input was made in a decode worker


def test_the_apps_predictions_equal_the_clis(qtbot, make_state, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    assert cli_main(["predict", str(SAMPLES), "--out", str(out), "--device", "cpu"]) == 0
    with out.open(newline="", encoding="utf-8") as f:
        rows = {r["key"]: r for r in csv.DictReader(f) if r["level"] == "image"}
    state = make_state(cache=PredictionCache(tmp_path / "empty-cache"))
    state.open_paths([SAMPLES])
    wait_idle(qtbot, state, timeout_ms=120000)
    preds = state.runner.predictions
    assert set(preds) == set(rows) and len(rows) == 8
    for key, p in preds.items():  # the CSV's six decimals of the same numbers
        row = rows[key]
        assert row["p_malignant"] == f"{p.p_malignant:.6f}"
        assert row["p_malignant_std"] == f"{p.p_malignant_std:.6f}"
        for task in ("acr", "density", "view"):
            values = p.probabilities.get(task, ())
            for c, v in zip(TASK_CLASSES[task], values, strict=True):
                assert row[f"p_{task}_{c}"] == f"{v:.6f}", (key, task, c)

def test_the_next_study_is_prefetched_and_moving_on_shows_it_at_once(qtbot, make_state, three_studies: Path) -> None:
    first_state = make_state()
    first_state.open_paths([three_studies])  # fills the prediction cache: the next open runs no model
    wait_idle(qtbot, first_state)
    counting = Counting()
    state = make_state(backend=Backend(load_image=counting.load_image))
    state.open_paths([three_studies])
    wait_idle(qtbot, state)
    studies = state.files.study_set.studies
    assert len(studies) == 3 and len(state.runner.predictions) == 12 and state.runner.model_runs == 0
    first, second, third = ({r.key for r in s.images} for s in studies)
    assert state.files.current_study_keys() == first
    assert all(state.memory.image(k) is not None for k in second)  # prefetched, one study ahead
    assert set(counting.keys) == first | second  # and no further
    state.files.set_current(sorted(second)[0])
    # at once: the pixels and the predictions are there before any event is processed
    assert all(state.memory.image(k) is not None and k in state.runner.predictions for k in second)
    wait_idle(qtbot, state)
    assert state.runner.model_runs == 0
    assert all(state.memory.image(k) is not None for k in third)  # now the third is one ahead
    assert set(counting.keys) == first | second | third and sum(counting.keys.values()) == 12


def test_the_pixels_laterality_counts_for_images_not_kept(qtbot, make_state, tmp_path: Path) -> None:
    for i in range(3):  # no laterality in the tags: the one seen in the pixels is what the summaries use
        folder = tmp_path / f"N{i}"
        folder.mkdir()
        phantom.write_study(folder, patient_id=f"N{i}", shape=SHAPE, seed=40 + i, tags_mode="none")
    state = make_state()
    state.open_paths([tmp_path])
    wait_idle(qtbot, state)
    studies = state.files.study_set.studies
    assert len(studies) == 3 and len(state.runner.predictions) == 12
    third = studies[2].images
    assert all(state.memory.image(r.key) is None for r in third)  # two studies ahead: not kept
    assert [state.files.laterality(r.key) for r in third] == ["R", "L", "R", "L"]


def test_an_image_only_predicted_leaves_its_pixels_in_the_worker(qtbot, make_state, study_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from inference.imaging.studies import scan

    state = make_state()
    first, second = scan([study_dir]).images[:2]
    quiet = state.memory.decode(first, 128, keep=False)  # the model's input only: no full-size pixels back
    assert quiet.image is None and quiet.item is not None and quiet.item.array.shape[0] == 128
    assert quiet.pixel_laterality in ("L", "R") and state.memory.image(first.key) is None
    shown = state.memory.decode(first, 128)  # asked for on screen: decoded again, with its pixels
    assert shown.image is not None and state.memory.image(first.key) is shown.image
    assert shown.item is not None and (shown.item.array == quiet.item.array).all()
    with ThreadPoolExecutor(2) as ex:  # the display waits on a decode for the model only: it still gets pixels
        both = list(ex.map(lambda keep: state.memory.decode(second, 128, keep=keep), (False, True)))
    assert both[1].image is not None and state.memory.image(second.key) is not None


def test_the_next_study_decodes_while_this_one_is_predicted(qtbot, make_state, three_studies: Path) -> None:
    real = Backend()
    decoding: list[str] = []  # patient of each decode, in the order they started
    overlapped = threading.Event()
    patient = {}

    def load_prepared(record: ImageRecord, height: int | None) -> Prepared:
        decoding.append(patient.get(record.key, record.patient_id))
        if len(set(decoding)) > 1:
            overlapped.set()
        return real.decode(record, height)

    def predict_prepared(session: object, prepared: list[Prepared]) -> list:
        if prepared[0].record.patient_id == "PX0":  # the first study waits until the second starts decoding
            assert overlapped.wait(60), f"no decode of the next study while this one was predicted: {decoding}"
        return real.run_model(session, prepared)

    state = make_state(backend=Backend(load_prepared=load_prepared, predict_prepared=predict_prepared))
    state.open_paths([three_studies])
    wait_idle(qtbot, state)
    assert len(state.runner.predictions) == 12 and not state.files.load_problems
    assert overlapped.is_set()
