"""The pipeline: decode and preprocess in the shared workers; in-process arrays, errors as values, in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.errors import ImageReadError, LimitExceededError
from inference.imaging.decode import load_image
from inference.imaging.limits import Limits
from inference.imaging.studies import read_record
from inference.model.pipeline import Pipeline, Prepared, Request, thumbnail, work
from inference.model.predict import prepare
from inference.phantoms import generator as phantom
from inference.phantoms.hostile import panic_rle, rle_bomb

HEIGHT = 128


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pipeline")
    out = {}
    for n, side in enumerate(("R", "L")):
        spec = phantom.PhantomSpec(side, "MLO", shape=(200, 150), seed=n + 5)
        out[side] = phantom.write_dicom(folder / f"{side}.dcm", phantom.render(spec), spec=spec, tags_mode="none")
    out["png"] = phantom.write_png(folder / "p.png", phantom.render(phantom.PhantomSpec("R", "CC", shape=(120, 90))))
    out["panic"] = panic_rle(folder / "panic.dcm")
    out["bomb"] = rle_bomb(folder / "bomb.dcm")
    out["blank"] = phantom.write_dicom(folder / "blank.dcm", np.zeros((64, 48)), tags_mode="none")
    return out


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    with Pipeline(workers=2, timeout_s=120) as p:
        yield p


def test_the_worker_function_gives_what_in_process_code_gives(files: dict[str, Path]) -> None:
    for name in ("R", "L", "png"):
        record = read_record(files[name])
        loaded = load_image(record)
        expected = prepare(loaded, HEIGHT)
        got = work(Request(record, HEIGHT, preview=True))
        assert got.item is not None and got.image is None and got.problem == ""
        assert np.array_equal(got.item.array, expected.array) and got.item.key == record.key
        assert got.item.geometry == expected.geometry
        assert got.pixel_laterality == loaded.pixel_laterality != ""
        assert got.preview is not None and np.array_equal(got.preview, thumbnail(loaded.pixels))


def test_stream_in_order_with_errors_as_values(pipeline: Pipeline, files: dict[str, Path]) -> None:
    names = ["R", "panic", "L", "bomb", "png"]
    records = [read_record(files[n]) for n in names]
    results = list(pipeline.prepared(records, HEIGHT))
    assert [r for r, _ in results] == records
    by_name = dict(zip(names, (res for _, res in results), strict=True))
    for name in ("R", "L", "png"):
        res = by_name[name]
        assert isinstance(res, Prepared) and res.item is not None
        assert np.array_equal(res.item.array, work(Request(read_record(files[name]), HEIGHT)).item.array)  # type: ignore[union-attr]
    assert isinstance(by_name["panic"], ImageReadError) and "panicked" in by_name["panic"].reason
    assert isinstance(by_name["bomb"], LimitExceededError) and "MAMMO_MAX_PIXELS" in by_name["bomb"].reason
    assert by_name["bomb"].path == files["bomb"]


def test_the_limits_are_the_pipelines(files: dict[str, Path]) -> None:
    with Pipeline(Limits(max_pixels=100 * 100), workers=1) as small:
        [(_, res)] = list(small.prepared([read_record(files["R"])], HEIGHT))
    assert isinstance(res, LimitExceededError) and "over the limit of 10000" in res.reason


def test_no_breast_is_a_problem_when_shown_else_an_error(pipeline: Pipeline, files: dict[str, Path]) -> None:
    record = read_record(files["blank"])
    [(_, shown)] = list(pipeline.prepared([record], HEIGHT, image=True))
    assert isinstance(shown, Prepared) and shown.item is None and shown.problem and shown.image is not None
    [(_, headless)] = list(pipeline.prepared([record], HEIGHT))
    assert isinstance(headless, ImageReadError) and headless.reason == shown.problem


def test_load_for_display(pipeline: Pipeline, files: dict[str, Path]) -> None:
    record = read_record(files["L"])
    image = pipeline.load(record)
    assert np.array_equal(image.pixels, load_image(record).pixels)
    with pytest.raises(ImageReadError, match="panicked"):
        pipeline.load(read_record(files["panic"]))


def test_closed_pipeline_refuses_work(files: dict[str, Path]) -> None:
    p = Pipeline(workers=1)
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.load(read_record(files["R"]))


def test_a_displayed_image_brings_its_breast_along(pipeline: Pipeline, files: dict[str, Path]) -> None:
    image = pipeline.load(read_record(files["R"]))
    assert "_breast" in image.__dict__  # found in the worker: preprocessing does not search again
    expected = prepare(load_image(read_record(files["R"])), HEIGHT)
    assert np.array_equal(prepare(image, HEIGHT).array, expected.array)


def test_prepared_without_its_pixels(pipeline: Pipeline, files: dict[str, Path]) -> None:
    record = read_record(files["R"])
    quiet = pipeline.load_prepared(record, HEIGHT, image=False)
    assert quiet.image is None and quiet.item is not None
    assert np.array_equal(quiet.item.array, prepare(load_image(record), HEIGHT).array)
    with pytest.raises(ImageReadError):  # no breast and no pixels to show: the file's error
        pipeline.load_prepared(read_record(files["blank"]), HEIGHT, image=False)
