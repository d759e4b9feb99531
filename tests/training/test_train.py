"""Training on tiny phantoms: the loss falls, resumption is exact, and the commands work end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from inference.formats import read_label_manifest, read_model_manifest, write_label_manifest
from training.cli import main
from training.data import load_manifest
from training.evaluate import evaluate_model
from training.finetune import bump_version
from training.onnx.checkpoint import load_checkpoint
from training.train import TrainConfig, train

from .conftest import HEIGHT


def _rows(manifest: Path) -> tuple[list, list, Path]:
    rows, root = load_manifest(manifest)
    return [r for r in rows if r.split == "train"], [r for r in rows if r.split == "tuning"], root


def test_a_few_epochs_lower_the_loss(phantom_manifest: Path, tmp_path: Path) -> None:
    tr, tu, root = _rows(phantom_manifest)
    cfg = TrainConfig(height=HEIGHT, epochs=4, batch_size=3, augment=False, checkpoint_minutes=0)
    results = train(cfg, tr, tu, tmp_path / "run", root=root, cache_dir=tmp_path / "cache", echo=False)
    assert [r.epoch for r in results] == [1, 2, 3, 4]
    assert results[-1].train_loss["total"] < results[0].train_loss["total"]
    assert results[-1].train_loss["recon"] < results[0].train_loss["recon"]
    assert set(results[0].tuning) == {"malignancy_auc", "acr_bacc", "density_bacc", "view_auc"}
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert (tmp_path / "run" / "best.pt").exists()


@pytest.mark.parametrize("intensity", [False, True])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    phantom_manifest: Path, tmp_path: Path, intensity: bool
) -> None:
    tr, tu, root = _rows(phantom_manifest)
    cfg = TrainConfig(
        height=HEIGHT, epochs=2, batch_size=2, checkpoint_minutes=0, tasks=("malignancy", "view", "recon"),
        intensity=intensity,
    )
    kw = {"root": root, "cache_dir": tmp_path / "cache", "echo": False}
    train(cfg, tr, tu, tmp_path / "a", **kw)
    # 6 images / 2 per batch = 3 steps per epoch: stop in the middle of the second epoch
    train(cfg, tr, tu, tmp_path / "b", stop_after_steps=4, **kw)
    assert load_checkpoint(tmp_path / "b" / "last.pt").epoch == 1
    torch.manual_seed(12345)  # whatever happens to the global RNG in between must not matter
    train(cfg, tr, tu, tmp_path / "b", resume=True, **kw)
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert a.epoch == b.epoch == 2
    for name, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[name]), name


def test_train_export_evaluate_finetune_commands(phantom_manifest: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--manifest", str(phantom_manifest), "--out", str(run), "--height", str(HEIGHT),
                 "--epochs", "1", "--batch-size", "3", "--threads", "1"]) == 0
    onnx = tmp_path / "model" / "m.onnx"
    assert main(["export-onnx", "--checkpoint", str(run / "best.pt"), "--out", str(onnx), "--version", "1.0.0"]) == 0
    result = evaluate_model(onnx, phantom_manifest, split="tuning", n_boot=50)
    assert result["model"]["height"] == HEIGHT
    assert result["malignancy"]["auc"]["n"] == 2
    assert result["operating_points"]["malignancy"]["split"] == "tuning"
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(onnx), "--manifest", str(phantom_manifest), "--split", "all",
                 "--out", str(out), "--bootstrap", "50"]) == 0
    data = json.loads((out / "evaluation.json").read_text())
    assert data["n_images"] == 8 and "strata" in data and (out / "calibration.png").stat().st_size > 0
    # fine-tune on an "export": same rows, no split, relative paths, some labels uncertain or missing
    export = tmp_path / "data" / "export.csv"
    rows = [r.__class__(**{**r.__dict__, "split": ""}) for r in read_label_manifest(phantom_manifest)]
    write_label_manifest(export, rows)
    ft = tmp_path / "ft"
    assert main(["finetune", "--from", str(onnx), "--manifest", str(export), "--out", str(ft), "--epochs", "1",
                 "--max-minutes", "30", "--threads", "1"]) == 0
    tuned = read_model_manifest(ft / "m.json")
    assert tuned.version == "1.1.0"
    assert tuned.input_height == HEIGHT
    # issue 14 item 7: a 2-image tuning split gets no AUC and no operating point, and the card says why
    points = tuned.operating_points["malignancy"]
    assert "sensitivity_95" not in points and "at least 20" in points["not_set"]
    assert "malignancy_auc" not in tuned.metrics["tuning_after_finetune"]
    card = (ft / "m.md").read_text(encoding="utf-8")
    assert "No tuning malignancy AUC and no 95 %-sensitivity operating point" in card
    # ... and keeps the base model's metrics, saying what they are
    base = read_model_manifest(onnx)
    assert tuned.metrics["base_model"] == {"version": "1.0.0", "metrics": base.metrics,
                                           "operating_points": base.operating_points}
    assert "base model 1.0.0 on its own validation split" in card


def test_bump_version() -> None:
    assert bump_version("1.0.0") == "1.1.0"
    assert bump_version("0.0.0-random") == "0.0.0-random.ft1"
    assert bump_version("0.0.0-random.ft1") == "0.0.0-random.ft2"


def test_warm_start_copies_matching_weights_only(tmp_path: Path) -> None:
    from training.model import ModelConfig, build_model
    from training.onnx.checkpoint import save_checkpoint
    from training.train import warm_start

    donor = build_model(ModelConfig(tasks=("malignancy",), reconstruction=False), seed=1)
    save_checkpoint(tmp_path / "d.pt", donor, epoch=3)
    cfg = TrainConfig(height=HEIGHT, seed=2)
    model = warm_start(cfg, tmp_path / "d.pt")
    fresh = build_model(cfg.model_config(), seed=2)
    assert torch.equal(model.heads["malignancy"].weight, donor.heads["malignancy"].weight)
    assert torch.equal(model.stem[0].weight, donor.stem[0].weight)
    assert torch.equal(model.heads["view"].weight, fresh.heads["view"].weight)
    assert model.decoder is not None
