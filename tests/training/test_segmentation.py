"""The segmentation task: maps moved with the image, the per-pixel loss, the head, training, export."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from inference.cli import main as inference_main
from inference.formats import read_model_manifest
from inference.imaging.decode import load_image
from inference.model.predict import predict
from inference.model.session import ModelSession
from inference.phantoms.generator import PhantomSpec, render, write_png
from training.augment import Augment, Compose, IntensityAugment, Map
from training.data import load_manifest
from training.lesions import LesionRecord, lesions_path_for, read_lesions, to_grid, write_lesions
from training.loss import LesionTargets, LossConfig, TaskTargets, lesion_loss, multitask_loss
from training.model import LESION_STRIDE, ModelConfig, build_model
from training.onnx.checkpoint import save_checkpoint
from training.onnx.export import export_onnx
from training.onnx.weights import model_from_onnx
from training.train import TrainConfig, parse_tasks, train, warm_start

HEIGHT = 128


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------- augmentation
@pytest.mark.parametrize("seed", range(6))
def test_geometric_augmentation_moves_a_coarse_map_exactly_as_the_image(seed: int) -> None:
    # a smooth blob away from the edges (a cell cut by an edge is in or out as a whole, its pixels
    # one by one): pooling and moving then commute up to interpolation
    gy, gx = np.mgrid[0:32, 0:24]
    coarse = np.exp(-((gy - 12.0) ** 2 + (gx - 10.0) ** 2) / 12.0).astype(np.float32)
    fy, fx = (np.mgrid[0:128, 0:96] - 1.5) / LESION_STRIDE
    image = np.exp(-((fy - 12.0) ** 2 + (fx - 10.0) ** 2) / 12.0).astype(np.float32)
    aug = Augment(p=1.0) if seed % 2 else Augment(p=0.5)
    moved_image, (moved,) = aug.with_maps(image, (Map(coarse, LESION_STRIDE, 0.0),), np.random.default_rng(seed))
    # the same draw as without maps
    np.testing.assert_array_equal(moved_image, aug(image, np.random.default_rng(seed)))
    assert moved.data.shape == coarse.shape
    # the image moved and pooled back onto the coarse grid is the moved map, up to interpolation
    assert np.abs(to_grid(moved_image, LESION_STRIDE) - moved.data).max() < 0.02


def test_moved_in_space_takes_each_maps_fill_and_intensity_leaves_maps_alone() -> None:
    coarse = np.zeros((32, 24), np.float32)
    aug = Augment(p=1.0, zoom=(0.8, 0.8), translate_y=0.0, translate_x=0.0)
    image = np.ones((128, 96), np.float32)
    _, (target, weight) = aug.with_maps(image, (Map(coarse, 4, 0.0), Map(coarse + 1, 4, 1.0)), np.random.default_rng(0))
    assert target.data.max() == 0.0 and weight.data.min() == 1.0
    maps = (Map(coarse + 0.25, 4, 0.0),)
    _, out = Compose((IntensityAugment(p=1.0), Augment(p=0.0))).with_maps(image * 0.5, maps, np.random.default_rng(1))
    np.testing.assert_array_equal(out[0].data, maps[0].data)
    with pytest.raises(TypeError, match="cannot carry maps"):
        Compose((lambda a, r: a,)).with_maps(image, maps, np.random.default_rng(0))


# ---------------------------------------------------------------------- loss
def _targets(target: np.ndarray, weight: np.ndarray) -> LesionTargets:
    return LesionTargets(torch.tensor(target, dtype=torch.float32), torch.tensor(weight, dtype=torch.float32))


def test_lesion_loss_by_hand_and_weight_zero_sends_nothing() -> None:
    logits = torch.tensor([[[[0.0, 2.0]]], [[[-1.0, 1.0]]]], requires_grad=True)
    t = _targets(np.array([[[[0.0, 1.0]]], [[[0.0, 0.0]]]]), np.array([[[[1.0, 0.5]]], [[[0.0, 0.0]]]]))
    loss = lesion_loss(logits, t)
    value = float(loss.detach())
    p = torch.sigmoid(logits.detach())
    bce0 = (np.log(2.0) + 0.5 * -np.log(float(p[0, 0, 0, 1]))) / 2
    dice0 = 1 - (2 * 0.5 * float(p[0, 0, 0, 1]) + 1) / (float(p[0, 0, 0, 0]) + 0.5 * float(p[0, 0, 0, 1]) + 0.5 + 1)
    assert value == pytest.approx((bce0 + dice0) / 2, rel=1e-5)
    torch.autograd.backward(loss)
    assert logits.grad is not None and torch.all(logits.grad[1] == 0)


def test_the_lesion_term_joins_the_total_only_with_targets() -> None:
    model = build_model(ModelConfig(tasks=("view",), segmentation=True), seed=0)
    x = torch.rand(2, 1, HEIGHT, 64)
    with torch.no_grad():
        out = model(x)
    assert out["lesion"].shape == (2, 1, HEIGHT // LESION_STRIDE, 64 // LESION_STRIDE)
    targets = {"view": TaskTargets(torch.tensor([0, 1]), torch.ones(2))}
    shape = (2, 1, HEIGHT // 4, 16)
    lesion = _targets(np.ones(shape), np.ones(shape))
    base, parts = multitask_loss(out, x, targets)
    total, parts2 = multitask_loss(out, x, targets, None, lesion)
    assert parts["seg"] == 0.0 and float(total - base) == pytest.approx(parts2["seg"], rel=1e-5)
    assert list(parts) == list(parts2)  # the same terms in the same order (the metrics CSV's columns)
    off, parts3 = multitask_loss(out, x, targets, LossConfig(segmentation=0.0), lesion)
    assert "seg" not in parts3 and float(off) == pytest.approx(float(base))
    with pytest.raises(ValueError, match="differ in shape"):
        lesion_loss(out["lesion"], _targets(np.ones((2, 1, 4, 4)), np.ones((2, 1, 4, 4))))


# ---------------------------------------------------------------------- model, checkpoints, training
def test_the_head_is_optional_and_old_weights_warm_start_it(tmp_path: Path) -> None:
    assert ModelConfig.from_dict({"tasks": ["view"]}).segmentation is False  # configs from before the task
    old = build_model(seed=1)
    assert "lesion" not in old(torch.rand(1, 1, HEIGHT, 64))
    save_checkpoint(tmp_path / "old.pt", old, epoch=1, extra={"height": HEIGHT})
    cfg = TrainConfig(height=HEIGHT, tasks=parse_tasks("malignancy,acr,density,view,recon,seg"))
    new = warm_start(cfg, tmp_path / "old.pt")
    assert new.config.segmentation and new.lesion_head is not None
    old_state, new_state = old.state_dict(), new.state_dict()
    for k, v in old_state.items():
        torch.testing.assert_close(new_state[k], v)
    assert any(k.startswith("lesion_head.") for k in new_state)
    assert not any(k.startswith("lesion_head.") for k in old_state)
    # without reconstruction the decoder still carries the lesion branch, and no reconstruction comes out
    seg_only = build_model(ModelConfig(tasks=("view",), reconstruction=False, segmentation=True), seed=0)
    out = seg_only(torch.rand(1, 1, HEIGHT, 64))
    assert "lesion" in out and "reconstruction" not in out


def _phantom_manifest(folder: Path) -> Path:
    from inference.formats import LabelRow, TaskLabel, write_label_manifest

    rows, records = [], []
    for i in range(6):
        spec = PhantomSpec("L" if i % 2 else "R", "CC", "B", masses=1 if i % 2 else (), shape=(256, 192), seed=i)
        path = folder / f"p{i}.png"
        write_png(path, render(spec))
        rows.append(LabelRow(key=f"k{i}", image=path.name, split="train" if i < 4 else "tuning",
                             labels={"view": TaskLabel("CC", 0.0), "malignancy": TaskLabel("benign", 0.0)}))
        records.append(LesionRecord(f"k{i}", "circles", circles=((128.0, 96.0, 25.0),), u=0.5) if i % 2
                       else LesionRecord(f"k{i}", "none"))
    manifest = write_label_manifest(folder / "m.csv", rows)
    write_lesions(lesions_path_for(manifest), records)
    return manifest


def test_training_with_seg_logs_its_loss_and_tuning_dice_and_resumes(tmp_path: Path) -> None:
    manifest = _phantom_manifest(tmp_path)
    tr, root = load_manifest(manifest, "train")
    tu, _ = load_manifest(manifest, "tuning")
    lesions = read_lesions(lesions_path_for(manifest))
    cfg = TrainConfig(height=HEIGHT, epochs=2, tasks=("malignancy", "view", "seg"), batch_size=2)
    kw = {"root": root, "cache_dir": tmp_path / "cache", "lesions": lesions, "echo": False}
    results = train(cfg, tr, tu, tmp_path / "a", **kw)  # type: ignore[arg-type]
    assert all("seg" in r.train_loss and np.isfinite(r.train_loss["seg"]) for r in results)
    assert all(0.0 <= r.tuning["lesion_dice"] <= 1.0 for r in results)
    with open(tmp_path / "a" / "metrics.csv", newline="", encoding="utf-8") as f:
        logged = list(csv.DictReader(f))
    assert [float(r["loss_seg"]) for r in logged] == [round(r.train_loss["seg"], 5) for r in results]
    train(cfg, tr, tu, tmp_path / "b", stop_after_steps=3, **kw)  # type: ignore[arg-type]
    train(cfg, tr, tu, tmp_path / "b", resume=True, **kw)  # type: ignore[arg-type]
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    with pytest.raises(ValueError, match="lesion records"):
        train(cfg, tr, tu, tmp_path / "c", root=root, echo=False)


# ---------------------------------------------------------------------- export and runtime
@pytest.fixture(scope="module")
def seg_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seg") / "seg.onnx"
    export_onnx(build_model(ModelConfig(segmentation=True), seed=2), path, height=HEIGHT, version="test-seg")
    return path


def test_the_lesion_map_ships_as_an_onnx_output_listed_in_the_manifest(seg_model: Path) -> None:
    manifest = read_model_manifest(seg_model.with_suffix(".json"))
    assert manifest.outputs["lesion"] == [None, 1, HEIGHT // 4, None]
    session = ort.InferenceSession(str(seg_model), providers=["CPUExecutionProvider"])
    shapes = {o.name: o.shape for o in session.get_outputs()}
    assert shapes["lesion"] == ["N", 1, HEIGHT // 4, "W_4"]
    (lesion,) = session.run(["lesion"], {"image": np.random.default_rng(0).random((1, 1, HEIGHT, 128), np.float32)})
    assert lesion.shape == (1, 1, HEIGHT // 4, 32) and 0.0 <= lesion.min() and lesion.max() <= 1.0
    assert model_from_onnx(seg_model).config.segmentation  # and it fine-tunes from the .onnx


def test_the_runtime_returns_the_lesion_map_and_older_models_none(seg_model: Path, tmp_path: Path) -> None:
    old_model = export_onnx(build_model(seed=2), tmp_path / "old.onnx", height=HEIGHT, version="test-old").onnx_path
    spec = PhantomSpec("R", "MLO", "C", masses=1, shape=(300, 220), seed=5)
    write_png(tmp_path / "r.png", render(spec))
    image = load_image(tmp_path / "r.png")
    (p,) = predict(ModelSession.load(seg_model, device="cpu"), [image])
    assert p.lesion is not None and p.lesion.shape == (HEIGHT // 4, p.model_input.shape[1] // 4)
    original = p.lesion_original()
    assert original is not None and original.shape == image.pixels.shape
    assert 0.0 <= float(original.min()) and float(original.max()) <= 1.0
    (old,) = predict(ModelSession.load(old_model, device="cpu"), [image])
    assert old.lesion is None and old.lesion_original() is None
    # the command line writes the lesion map with the others; an older model leaves the column empty
    for model, name in ((seg_model, "seg"), (old_model, "old")):
        maps = tmp_path / f"maps-{name}"
        args = ["predict", str(tmp_path / "r.png"), "--out", str(tmp_path / f"{name}.csv"), "--model", str(model),
                "--device", "cpu", "--maps", str(maps)]
        assert inference_main(args) == 0
        with open(maps / "index.csv", newline="", encoding="utf-8") as f:
            (row,) = list(csv.DictReader(f))
        if name == "old":
            assert row["lesion"] == "" and row["evidence"]
            continue
        stored = np.load(maps / row["lesion"])
        assert stored.dtype == np.float16 and stored.shape == image.pixels.shape
        np.testing.assert_allclose(stored.astype(np.float32), original, atol=1e-3)


def test_metrics_rows_keep_the_header_order_whatever_order_the_losses_come_in(tmp_path: Path) -> None:
    from training.train import EpochResult, _write_metrics

    path = tmp_path / "metrics.csv"
    _write_metrics(path, EpochResult(1, {"seg": 0.5, "total": 2.0}, {"view_auc": 0.9}, 1.0), True)
    _write_metrics(path, EpochResult(2, {"total": 1.5, "seg": 0.4}, {"view_auc": 0.8}, 1.0), False)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["loss_seg"], r["loss_total"]) for r in rows] == [("0.5", "2.0"), ("0.4", "1.5")]
