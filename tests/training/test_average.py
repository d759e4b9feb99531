"""Weight averaging: within a run (--average-from) and across runs (python -m training average)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.errors import ModelError
from training.average import RunningAverage, average_models
from training.cli import main
from training.data import load_manifest
from training.model import MammoNet, ModelConfig, build_model
from training.onnx.checkpoint import load_checkpoint, save_checkpoint
from training.train import TrainConfig, train

from .conftest import HEIGHT

SMALL = ModelConfig(tasks=("malignancy", "view"), reconstruction=False)


def test_the_running_mean_is_the_mean_and_counts_an_epoch_once() -> None:
    nets = [build_model(SMALL, seed=s) for s in (1, 2, 3)]
    mean = RunningAverage()
    for epoch, net in enumerate(nets, start=1):
        assert mean.update(net, epoch)
    assert not mean.update(nets[0], 2)  # a repeated epoch (resumed run) is not added again
    avg = mean.model(nets[0]).state_dict()
    for name, value in avg.items():
        expected = sum(n.state_dict()[name] for n in nets) / 3
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)
    assert mean.epochs == [1, 2, 3]


def test_average_command_writes_the_mean_of_checkpoints(tmp_path: Path) -> None:
    nets = [build_model(SMALL, seed=s) for s in (4, 5)]
    paths = [save_checkpoint(tmp_path / f"{i}.pt", n, epoch=1, extra={"height": HEIGHT}) for i, n in enumerate(nets)]
    assert main(["average", *map(str, paths), "--out", str(tmp_path / "soup.pt")]) == 0
    soup = load_checkpoint(tmp_path / "soup.pt")
    assert soup.extra["height"] == HEIGHT
    name = next(k for k, v in soup.state_dict.items() if v.is_floating_point())
    torch.testing.assert_close(soup.state_dict[name], (nets[0].state_dict()[name] + nets[1].state_dict()[name]) / 2)
    other = save_checkpoint(tmp_path / "other.pt", MammoNet(ModelConfig(tasks=("malignancy",))), epoch=1)
    with pytest.raises(ModelError, match="another architecture"):
        average_models([paths[0], other])


def test_a_run_keeps_the_average_of_its_last_epochs_and_resumes_it(phantom_manifest: Path, tmp_path: Path) -> None:
    rows, root = load_manifest(phantom_manifest)
    tr = [r for r in rows if r.split == "train"]
    tu = [r for r in rows if r.split == "tuning"]
    cfg = TrainConfig(height=HEIGHT, epochs=3, batch_size=2, checkpoint_minutes=0, augment=False,
                      tasks=("malignancy", "view", "recon"), average_from=2)
    kw = {"root": root, "cache_dir": tmp_path / "cache", "echo": False}
    results = train(cfg, tr, tu, tmp_path / "a", **kw)
    assert "avg_malignancy_auc" not in results[0].tuning
    assert "avg_malignancy_auc" in results[1].tuning and "avg_view_auc" in results[2].tuning
    avg = load_checkpoint(tmp_path / "a" / "average.pt")
    assert avg.extra["averaged_epochs"] == [2, 3]
    # the same run interrupted in its last epoch and resumed keeps the same mean
    train(cfg, tr, tu, tmp_path / "b", stop_after_steps=7, **kw)  # 3 steps an epoch: stops in epoch 3
    assert load_checkpoint(tmp_path / "b" / "average.pt").extra["averaged_epochs"] == [2]
    train(cfg, tr, tu, tmp_path / "b", resume=True, **kw)
    again = load_checkpoint(tmp_path / "b" / "average.pt")
    assert again.extra["averaged_epochs"] == [2, 3]
    for name, value in avg.state_dict.items():
        torch.testing.assert_close(again.state_dict[name], value)
