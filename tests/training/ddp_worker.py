"""One process of the DDP test (tests/training/test_distributed.py), started by torchrun:

    python -m torch.distributed.run --nproc-per-node 2 tests/training/ddp_worker.py MANIFEST OUT

Trains 2 epochs at height 128 (at 64 the deepest feature map is 1 x 1, which instance normalisation
refuses) into OUT/run (the same folder for every process, as a real run), then writes what the test
compares: this process's starting and final weights (OUT/start-RANK.pt, OUT/weights-RANK.pt) and its
share of a plan of 5 batches (OUT/shard-RANK.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from training import distributed
from training.data import load_manifest
from training.model import build_model
from training.train import TrainConfig, train


def main(manifest: Path, out: Path) -> None:
    rows, root = load_manifest(manifest)
    tr = [r for r in rows if r.split == "train"]
    tu = [r for r in rows if r.split == "tuning"]
    cfg = TrainConfig(height=128, epochs=2, batch_size=1, augment=True, checkpoint_minutes=0)
    with distributed.session() as joined:
        assert joined and distributed.world_size() == 2
        rank = distributed.rank()
        # Different starting weights per process: DDP must hand rank 0's to the others.
        model = build_model(cfg.model_config(), seed=rank)
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out / f"start-{rank}.pt")
        train(cfg, tr, tu, out / "run", root=root, cache_dir=out / "cache", init=model, echo=False)
        torch.save(model.state_dict(), out / f"weights-{rank}.pt")
        plan = [[0], [1], [2], [3], [4]]
        (out / f"shard-{rank}.json").write_text(json.dumps(distributed.shard(distributed.common_plan(plan))))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
