"""``python -m training experiment``: variants, label removal, resumption and the tables, on phantoms."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from inference.formats import write_label_manifest
from tests.training.conftest import phantom_rows
from training.cli import main
from training.experiment import EXPERIMENTS, FUSION_VARIANTS, drop_labels, run_experiment
from training.onnx.checkpoint import load_checkpoint

HEIGHT = 128  # the smallest height the network takes


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    split = ["train"] * 8 + ["tuning"] * 4 + ["validation"] * 4
    rows = [dataclasses.replace(r, split=split[i]) for i, r in enumerate(phantom_rows(folder, 16))]
    return write_label_manifest(folder / "manifest.csv", rows)


def test_drop_labels_removes_that_share_with_the_seed(tmp_path: Path) -> None:
    rows = phantom_rows(tmp_path, 8)
    half = drop_labels(rows, "malignancy", 0.5, seed=1)
    assert sum(r.label("malignancy").value is None for r in half) == 4
    assert all(r.label("density").value is not None for r in half)  # other tasks kept
    assert drop_labels(rows, "malignancy", 0.5, seed=1) == half
    assert drop_labels(rows, "malignancy", 0.5, seed=2) != half
    assert drop_labels(rows, "malignancy", 0.0, seed=1) == rows


def test_the_tables_of_the_protocol() -> None:
    assert [v.tasks for v in EXPERIMENTS["tasks"]][0] == ("malignancy",)
    assert EXPERIMENTS["tasks"][-2].name == "all tasks"
    assert EXPERIMENTS["tasks"][-1].tasks == (*EXPERIMENTS["tasks"][-2].tasks, "seg")  # + lesion segmentation
    assert [v.multi_level for v in FUSION_VARIANTS] == [False, True]
    assert [v.drop_malignancy for v in EXPERIMENTS["missing"]] == [0.0, 0.25, 0.5, 0.75]
    assert len({v.folder for vs in EXPERIMENTS.values() for v in vs}) == sum(len(v) for v in EXPERIMENTS.values())


@pytest.mark.slow
def test_experiment_runs_resumes_and_writes_its_table(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    table = run_experiment("fusion", manifest, out, seeds=(0,), height=HEIGHT, epochs=1, n_boot=20, echo=False,
                           only=("z-from-the-last-level",))
    last = out / "fusion" / "z-from-the-last-level" / "seed-0"
    assert (last / "result.json").is_file()
    assert load_checkpoint(last / "last.pt").config.multi_level is False
    row = table["variants"][0]
    assert row["summary"]["validation"]["malignancy_auc"]["seeds"] == 1
    assert table["variants"][1]["missing_seeds"] == [0]
    md = (out / "fusion" / "table.md").read_text(encoding="utf-8")
    assert "| z from the last level |" in md and "Not finished yet" in md and "z from all five levels seed 0" in md

    # a second start skips the finished run and does the rest
    stamp = (last / "result.json").stat().st_mtime_ns
    assert main(["experiment", "fusion", "--manifest", str(manifest), "--out", str(out), "--seeds", "1",
                 "--height", str(HEIGHT), "--epochs", "1", "--bootstrap", "20", "--threads", "1"]) == 0
    assert (last / "result.json").stat().st_mtime_ns == stamp
    full = json.loads((out / "fusion" / "table.json").read_text(encoding="utf-8"))
    assert [r["missing_seeds"] for r in full["variants"]] == [[], []]
    every = load_checkpoint(out / "fusion" / "z-from-all-five-levels" / "seed-0" / "last.pt")
    assert every.config.multi_level is True
    assert "Not finished" not in (out / "fusion" / "table.md").read_text(encoding="utf-8")
