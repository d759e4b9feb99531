"""Fine-tuning on several processes (torchrun + DDP, gloo on the CPU): the processes end with the
same weights, each trained on its share of the batches, and rank 0 alone writes the run folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from training import distributed
from training.onnx.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_end_with_the_same_weights(phantom_manifest: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        str(ROOT / "tests" / "training" / "ddp_worker.py"), str(phantom_manifest), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[:6000]

    start = [torch.load(tmp_path / f"start-{r}.pt") for r in (0, 1)]
    end = [torch.load(tmp_path / f"weights-{r}.pt") for r in (0, 1)]
    assert any(not torch.equal(start[0][k], start[1][k]) for k in start[0])  # they started apart
    for k in end[0]:
        assert torch.equal(end[0][k], end[1][k]), k  # and ended identical
    assert any(not torch.equal(end[0][k], start[0][k]) for k in end[0])  # after training

    # The 5 batches split 3 / 3 (one repeated so that both take the same number of steps).
    shards = [json.loads((tmp_path / f"shard-{r}.json").read_text()) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 3
    assert {b[0] for s in shards for b in s} == set(range(5))

    # One writer: rank 0's weights are the checkpoint; one line per epoch in the log and metrics.
    run = tmp_path / "run"
    last = load_checkpoint(run / "last.pt").model().state_dict()
    for k in end[0]:
        assert torch.equal(last[k], end[0][k]), k
    assert (run / "best.pt").exists() and (run / "config.json").exists()
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 2
    assert sum("epoch " in line for line in (run / "train.log").read_text().splitlines()) == 2


def test_without_torchrun_nothing_changes() -> None:
    assert not distributed.active() and distributed.is_main() and distributed.world_size() == 1
    plan = [[0, 1], [2]]
    assert distributed.shard(distributed.common_plan(plan)) == plan
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model) is model and distributed.for_eval(model) is model
