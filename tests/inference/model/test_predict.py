"""predict(): outputs, Monte-Carlo dropout, maps back on the original pixels, and the summaries."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inference.errors import PreprocessError
from inference.imaging.decode import LoadedImage
from inference.imaging.studies import ImageRecord
from inference.model.predict import MC_SAMPLES, Prediction, mc_dropout, mc_seed, predict, predict_inputs, prepare
from inference.model.preprocess import preprocess
from inference.model.session import ModelSession
from inference.model.summary import study_key, summarise
from inference.phantoms.generator import Mass, PhantomSpec, render

HEIGHT = 128  # the conftest model's
LEVELS = (16, 32, 64, 128, 256)


def _record(
    key: str, laterality: str = "L", view: str = "CC", study: str = "1.2.3", shape: tuple[int, int] = (256, 192)
) -> ImageRecord:
    return ImageRecord(
        key=key, path=Path(f"/data/{key}.dcm"), kind="dicom", patient_id="P1", patient_name="", study_uid=study,
        study_date="", study_description="", series_uid="", sop_uid=key, laterality=laterality,
        laterality_source="tag" if laterality else "unknown", view=view, view_source="tag" if view else "unknown",
        rows=shape[0], cols=shape[1], transfer_syntax="",
    )  # fmt: skip


def _loaded(
    key: str, laterality: str = "L", view: str = "CC", seed: int = 0, shape: tuple[int, int] = (256, 192)
) -> LoadedImage:
    mass = Mass(0.5, 0.4, 0.05, True)
    pixels = render(PhantomSpec(laterality=laterality, view=view, shape=shape, seed=seed, masses=(mass,)))
    return LoadedImage(
        record=_record(key, laterality, view, shape=shape), pixels=pixels, raw=pixels * 4095, windows=(),
        pixel_spacing_mm=None, chest_wall_right=laterality == "R",
    )  # fmt: skip


@pytest.fixture(scope="module")
def images() -> list[LoadedImage]:
    return [
        _loaded("a", "L", "CC", 1), _loaded("b", "R", "MLO", 2), _loaded("c", "L", "MLO", 3), _loaded("d", "R", "CC", 4)
    ]


@pytest.fixture(scope="module")
def predictions(tiny_session: ModelSession, images: list[LoadedImage]) -> list[Prediction]:
    return predict(tiny_session, images, batch_size=1)


def test_outputs_have_the_contract_shapes_and_ranges(predictions: list[Prediction], images: list[LoadedImage]) -> None:
    assert [p.key for p in predictions] == [im.record.key for im in images]
    for p, im in zip(predictions, images, strict=True):
        assert p.model_version == "test-0"
        assert set(p.probabilities) == {"malignancy", "acr", "density", "view"}
        for task, n in (("malignancy", 2), ("acr", 6), ("density", 4), ("view", 2)):
            assert len(p.probabilities[task]) == n
            assert sum(p.probabilities[task]) == pytest.approx(1.0, abs=1e-5)
            assert all(0.0 <= v <= 1.0 for v in p.probabilities[task])
        assert p.p_malignant == p.probabilities["malignancy"][1]
        assert 0.0 <= p.p_malignant_mc_mean <= 1.0 and 0.0 < p.p_malignant_std < 0.5
        assert p.z.shape == (496,) and p.z.dtype == np.float32
        # z: five L2-normalised level vectors
        bounds = np.cumsum((0, *LEVELS))
        norms = [np.linalg.norm(p.z[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        np.testing.assert_allclose(norms, 1.0, atol=1e-4)
        h, w = p.model_input.shape
        assert h == HEIGHT and w % 64 == 0
        assert p.reconstruction is not None and p.reconstruction.shape == (h, w)
        assert 0.0 <= p.reconstruction.min() and p.reconstruction.max() <= 1.0
        assert p.evidence is not None and p.evidence.shape == (h // 16, w // 16)
        assert p.geometry.original_shape == im.pixels.shape
        for m in (p.evidence_original(), p.error_map_original(), p.reconstruction_original()):
            assert m is not None and m.shape == im.pixels.shape and m.dtype == np.float32


def test_evidence_adds_up_to_the_malignancy_logit(tiny_session: ModelSession, predictions: list[Prediction]) -> None:
    weight, bias = tiny_session.manifest.head("malignancy")
    for p in predictions:
        assert p.evidence is not None
        p_ben, p_mal = p.probabilities["malignancy"]
        logit_diff = np.log(p_mal) - np.log(p_ben)
        assert float(p.evidence.sum()) + float(bias[1] - bias[0]) == pytest.approx(logit_diff, abs=1e-3)
        # and the head from the manifest, applied to z, reproduces the model's own output
        logits = weight @ p.z + bias
        assert float(logits[1] - logits[0]) == pytest.approx(logit_diff, abs=1e-3)


def test_batching_changes_nothing_and_keeps_the_order(
    tiny_session: ModelSession, images: list[LoadedImage], predictions: list[Prediction]
) -> None:
    wide = _loaded("wide", "L", "CC", 9, shape=(200, 320))
    mixed = [images[0], wide, *images[1:]]
    batched = predict(tiny_session, mixed, batch_size=3)
    assert [p.key for p in batched] == ["a", "wide", "b", "c", "d"]
    assert batched[1].model_input.shape[1] != batched[0].model_input.shape[1]
    singles = {p.key: p for p in predictions}
    for p in batched:
        if p.key == "wide":
            continue
        q = singles[p.key]
        np.testing.assert_allclose(p.probabilities["malignancy"], q.probabilities["malignancy"], atol=1e-5)
        np.testing.assert_allclose(p.z, q.z, atol=1e-5)
        assert p.reconstruction is not None and q.reconstruction is not None
        np.testing.assert_allclose(p.reconstruction, q.reconstruction, atol=1e-5)
        assert p.p_malignant_std == pytest.approx(q.p_malignant_std, abs=1e-5)


def test_without_maps_the_tasks_are_the_same_and_no_map_is_made(
    tiny_session: ModelSession, images: list[LoadedImage], predictions: list[Prediction]
) -> None:
    inputs = [prepare(im, tiny_session.height) for im in images]
    slim = predict_inputs(tiny_session, inputs, batch_size=1, maps=False)
    for p, q in zip(slim, predictions, strict=True):
        assert p.key == q.key and p.probabilities == q.probabilities and p.p_malignant_std == q.p_malignant_std
        np.testing.assert_array_equal(p.z, q.z)
        assert p.reconstruction is None and p.evidence is None and p.lesion is None
        assert q.reconstruction is not None and q.evidence is not None


def test_progress_is_reported_per_batch(tiny_session: ModelSession, images: list[LoadedImage]) -> None:
    calls: list[tuple[int, int]] = []
    items = [prepare(im, HEIGHT) for im in images[:3]]
    predict_inputs(tiny_session, items, batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3, 3) and all(t == 3 for _, t in calls) and len(calls) >= 2


def test_batch_size_must_be_positive(tiny_session: ModelSession, images: list[LoadedImage]) -> None:
    with pytest.raises(ValueError, match="batch size 0"):
        predict(tiny_session, images[:1], batch_size=0)


def test_mc_dropout_is_deterministic_per_key_and_uncertain(
    tiny_session: ModelSession, images: list[LoadedImage], predictions: list[Prediction]
) -> None:
    again = predict(tiny_session, images[:2])
    for p, q in zip(predictions[:2], again, strict=True):
        assert (p.p_malignant_mc_mean, p.p_malignant_std) == (q.p_malignant_mc_mean, q.p_malignant_std)
        assert p.p_malignant_std > 0.0
    assert mc_seed("a") == mc_seed("a") != mc_seed("b")
    weight, bias = tiny_session.manifest.head("malignancy")
    z = predictions[0].z
    assert mc_dropout(z, weight, bias, 0.5, seed=1) != mc_dropout(z, weight, bias, 0.5, seed=2)


def test_mc_dropout_without_dropout_is_the_plain_head() -> None:
    rng = np.random.default_rng(0)
    z = rng.random(496).astype(np.float32)
    weight = rng.normal(size=(2, 496)).astype(np.float32) * 0.05
    bias = np.array([0.1, -0.2], np.float32)
    logits = weight @ z + bias
    expected = float(np.exp(logits[1]) / np.exp(logits).sum())
    mean, std = mc_dropout(z, weight, bias, rate=0.0, seed=5)
    assert mean == pytest.approx(expected, rel=1e-5)
    assert std == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="outside"):
        mc_dropout(z, weight, bias, rate=1.0)


def test_mc_dropout_is_inverted_dropout() -> None:
    """With a head that sums z, each sample's logit is 2 x (sum of the kept elements): mean ~ full sum."""
    z = np.full(496, 0.01, np.float32)
    weight = np.stack([np.zeros(496), np.ones(496)]).astype(np.float32)
    bias = np.zeros(2, np.float32)
    mean, std = mc_dropout(z, weight, bias, rate=0.5, samples=MC_SAMPLES, seed=0)
    full = 1.0 / (1.0 + np.exp(-4.96))  # no dropout: logit difference = sum(z)
    assert mean == pytest.approx(full, abs=0.01)
    assert 0.0 < std < 0.05


def test_an_image_without_a_breast_is_a_preprocess_error(tiny_session: ModelSession) -> None:
    blank = replace(_loaded("blank"), pixels=np.zeros((256, 192), np.float32))
    with pytest.raises(PreprocessError, match="blank"):
        predict(tiny_session, [blank])


# --------------------------------------------------------------------------- maps on the original pixels
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_a_hot_spot_in_model_space_lands_on_the_right_original_pixel(laterality: str) -> None:
    im = _loaded("spot", laterality, "CC", 7, shape=(512, 384))
    item = prepare(im, HEIGHT)
    geo = item.geometry
    assert geo.flipped == (laterality == "R")
    my, mx = 70, 30  # inside the breast, near the chest wall (model space: chest wall on the left)
    assert mx < geo.content_shape[1]
    recon = item.array.copy()
    recon[my, mx] += 1.0  # a reconstruction error at one model pixel
    ev = np.zeros((HEIGHT // 16, item.array.shape[1] // 16), np.float32)
    ey, ex = 3, 1
    ev[ey, ex] = 1.0
    p = Prediction(
        key="spot", model_version="x", probabilities={}, p_malignant=0.5, p_malignant_mc_mean=0.5, p_malignant_std=0.1,
        z=np.zeros(496, np.float32), geometry=geo, model_input=item.array, reconstruction=recon, evidence=ev,
    )  # fmt: skip
    err = p.error_map_original()
    assert err is not None
    oy, ox = geo.model_to_original(my, mx)
    py, px = np.unravel_index(int(np.argmax(err)), err.shape)
    sy, sx = geo.scale
    assert abs(py - oy) <= 1.0 / sy + 1 and abs(px - ox) <= 1.0 / sx + 1
    # chest wall side: a right breast's chest wall is on the original's right edge
    assert (px > err.shape[1] / 2) == (laterality == "R")

    evo = p.evidence_original()
    assert evo is not None
    cy, cx = geo.model_to_original((ey + 0.5) * 16 - 0.5, (ex + 0.5) * 16 - 0.5)
    qy, qx = np.unravel_index(int(np.argmax(evo)), evo.shape)
    assert abs(qy - cy) <= 1.0 / sy + 1 and abs(qx - cx) <= 1.0 / sx + 1
    far = int(cy - 2 * 16 / sy)  # bilinear spreads a cell up to its neighbours' centres, no further
    assert far > 0 and evo[:far].max() == 0.0


def test_maps_are_zero_outside_the_breast_box(predictions: list[Prediction]) -> None:
    for p in predictions:
        err = p.error_map_original()
        assert err is not None
        y0, y1, x0, x1 = p.geometry.crop
        frame = err.copy()
        if p.geometry.flipped:
            frame = frame[:, ::-1]
        assert frame[:y0].sum() == 0 and frame[y1:].sum() == 0 and frame[:, x1:].sum() == 0


def test_the_error_map_is_the_smoothed_absolute_difference(predictions: list[Prediction]) -> None:
    p = predictions[0]
    err = p.error_map()
    assert err is not None and p.reconstruction is not None
    raw = np.abs(p.model_input - p.reconstruction)
    cw = p.geometry.content_shape[1]
    assert err[:, cw:].max() == 0.0
    assert err[:, :cw].mean() == pytest.approx(raw[:, :cw].mean(), rel=0.1)
    assert err.std() < raw.std()


# --------------------------------------------------------------------------- summaries
def _pred(key: str, p: float, std: float, acr: int, density: tuple[float, ...]) -> Prediction:
    onehot = tuple(1.0 if i == acr else 0.0 for i in range(6))
    return Prediction(
        key=key, model_version="v", probabilities={"malignancy": (1 - p, p), "acr": onehot, "density": density},
        p_malignant=p, p_malignant_mc_mean=p, p_malignant_std=std, z=np.zeros(496, np.float32),
        geometry=preprocess(np.pad(np.ones((32, 32), np.float32), 8), 64)[1],
        model_input=np.zeros((0, 0), np.float32), reconstruction=None, evidence=None,
    )  # fmt: skip


def test_breast_and_exam_follow_the_highest_view_and_the_mean_density() -> None:
    records = [
        _record("rcc", "R", "CC"), _record("lcc", "L", "CC"), _record("rmlo", "R", "MLO"), _record("lmlo", "L", "MLO")
    ]
    preds = [
        _pred("rcc", 0.20, 0.01, 1, (1.0, 0.0, 0.0, 0.0)),
        _pred("lcc", 0.70, 0.05, 4, (0.0, 1.0, 0.0, 0.0)),
        _pred("rmlo", 0.30, 0.02, 2, (0.0, 0.0, 1.0, 0.0)),
        _pred("lmlo", 0.60, 0.03, 3, (0.0, 0.0, 0.0, 1.0)),
    ]
    breasts, exams = summarise(records, preds)
    by = {b.key: b for b in breasts}
    assert list(by) == ["1.2.3/R", "1.2.3/L"]
    r, left = by["1.2.3/R"], by["1.2.3/L"]
    assert (r.source_key, r.p_malignant, r.p_malignant_std) == ("rmlo", 0.30, 0.02)
    assert r.acr.index(1.0) == 2 and r.density == (0.5, 0.0, 0.5, 0.0)
    assert (left.source_key, left.p_malignant, left.p_malignant_std) == ("lcc", 0.70, 0.05)
    assert left.acr.index(1.0) == 4 and left.density == (0.0, 0.5, 0.0, 0.5)
    assert r.image_keys == ("rcc", "rmlo") and left.laterality == "L"
    (exam,) = exams
    assert exam.key == "1.2.3" and exam.breast_keys == ("1.2.3/R", "1.2.3/L")
    assert (exam.source_key, exam.p_malignant, exam.p_malignant_std) == ("lcc", 0.70, 0.05)
    assert exam.acr.index(1.0) == 4
    assert exam.density == pytest.approx((0.25, 0.25, 0.25, 0.25))


def test_unknown_laterality_counts_for_the_exam_only_and_pixels_can_resolve_it() -> None:
    records = [_record("lcc", "L", "CC"), _record("x", "", "MLO"), _record("other", "R", "CC", study="9.9")]
    preds = [
        _pred("lcc", 0.2, 0.01, 0, (1, 0, 0, 0)),
        _pred("x", 0.9, 0.1, 5, (0, 0, 0, 1)),
        _pred("other", 0.4, 0.0, 0, (0, 1, 0, 0)),
    ]
    breasts, exams = summarise(records, preds)
    assert [b.key for b in breasts] == ["1.2.3/L", "9.9/R"]
    assert exams[0].breast_keys == ("1.2.3/L", "x") and exams[0].source_key == "x" and exams[0].p_malignant == 0.9
    assert exams[1].key == "9.9" and exams[1].p_malignant == 0.4
    # the pixels said "x" is a left breast
    breasts, exams = summarise(records, preds, laterality={"x": "L"})
    assert breasts[0].image_keys == ("lcc", "x") and breasts[0].p_malignant == 0.9
    assert exams[0].breast_keys == ("1.2.3/L",)


def test_images_without_a_prediction_are_left_out_and_studies_need_no_uid() -> None:
    records = [_record("a", "L", "CC", study=""), _record("b", "L", "MLO", study="")]
    breasts, exams = summarise(records, [_pred("a", 0.3, 0.01, 0, (0, 0, 1, 0))])
    assert study_key(records[0]) == "patient:P1"
    assert [b.image_keys for b in breasts] == [("a",)]
    assert exams[0].key == "patient:P1" and exams[0].study_uid == ""
