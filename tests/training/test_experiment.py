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
from training.data import load_manifest
from training.experiment import EXPERIMENTS, FUSION_VARIANTS, drop_labels, fold_of, run_experiment
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


@pytest.mark.slow
def test_cross_validation_predicts_each_pooled_woman_from_a_run_that_never_saw_her(
    manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "exp"
    table = run_experiment("fusion", manifest, out, seeds=(0,), height=HEIGHT, epochs=2, n_boot=50, echo=False,
                           folds=3)
    folder = out / "fusion-cv3"
    rows, _ = load_manifest(manifest)
    pool = [r for r in rows if r.split in ("train", "tuning")]  # the validation women stay untouched
    by_key = {r.key: r for r in rows}
    results = []
    for variant in ("z-from-the-last-level", "z-from-all-five-levels"):
        run = folder / variant / "seed-0"
        result = json.loads((run / "result.json").read_text(encoding="utf-8"))
        results.append(result)
        assert set(result["oof"]) == {r.key for r in pool}  # each pooled image predicted once
        for fold in range(3):
            held = json.loads((run / f"fold-{fold}" / "held-out.json").read_text(encoding="utf-8"))
            assert {fold_of(by_key[k], 3) for k in held} <= {fold}  # a fold holds its own women only
            # the weights that predicted it: the mean of the second half of the run, nothing chosen
            assert load_checkpoint(run / f"fold-{fold}" / "average.pt").extra["averaged_epochs"] == [2]
        assert result["cv"]["malignancy_auc"]["n"] == len(pool)
    assert {fold_of(r, 3) for r in pool} == {0, 1, 2}
    # the paired difference is the difference of the two AUCs on the same images
    vs = table["variants"][1]["vs_first"]
    assert len(vs) == 1
    assert vs[0]["value"] == pytest.approx(
        results[1]["cv"]["malignancy_auc"]["value"] - results[0]["cv"]["malignancy_auc"]["value"], abs=1e-3
    )
    assert "oof" not in json.dumps(json.loads((folder / "table.json").read_text(encoding="utf-8"))["variants"])
    md = (folder / "table.md").read_text(encoding="utf-8")
    assert "## cv split" in md and "## tuning split" not in md and "paired bootstrap over women" in md
    # a second start finds every fold done and trains nothing
    stamp = (folder / "z-from-the-last-level" / "seed-0" / "result.json").stat().st_mtime_ns
    run_experiment("fusion", manifest, out, seeds=(0,), height=HEIGHT, epochs=2, n_boot=50, echo=False, folds=3)
    assert (folder / "z-from-the-last-level" / "seed-0" / "result.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="folds"):
        run_experiment("fusion", manifest, out, folds=1)
