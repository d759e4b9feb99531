"""``python -m training finetune``: continue training a model on the app's label export.

Reads the export's ``manifest.csv`` as it is (image paths relative to its folder; each label's
uncertainty becomes its loss weight 1 - u), starts from the weights of an ``.onnx`` (its
initializers) or a checkpoint, trains with the paper's fine-tuning class weights (x20 for ACR 4
and 5 by default), and writes a new ``.onnx`` + manifest whose version is bumped (minor).
Rows without a split are divided by woman into train / tuning (80 / 20); the 95 %-sensitivity
operating point is set again on that tuning part.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ModelError
from inference.formats import read_model_manifest
from training import distributed
from training.data import ImageDataset, load_manifest
from training.metrics import threshold_for_sensitivity
from training.onnx.checkpoint import load_checkpoint
from training.onnx.export import export_onnx
from training.onnx.source import load_checkpoint_or_onnx
from training.readers import assign_splits, with_synthetic_malignancy
from training.train import TrainConfig, predict_dataset, task_scores, train

__all__ = ["bump_version", "finetune", "add_arguments", "run"]

ACR_FINETUNE_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 1.0, 20.0, 20.0, 1.0)


def bump_version(version: str) -> str:
    """``1.0.0`` -> ``1.1.0``; a pre-release or odd version gets a ``.ft1``-style suffix bumped."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version.strip())
    if m:
        return f"{m.group(1)}.{int(m.group(2)) + 1}.0"
    m = re.fullmatch(r"(.*)\.ft(\d+)", version.strip())
    if m:
        return f"{m.group(1)}.ft{int(m.group(2)) + 1}"
    return f"{version.strip() or '0.0.0'}.ft1"


def _source_info(path: Path) -> tuple[str, list[str], int | None]:
    """(version, training_data, height) of the starting model."""
    if path.suffix == ".onnx":
        try:
            man = read_model_manifest(path)
            return man.version, list(man.training_data), man.input_height
        except ModelError:
            return "0.0.0", [], None
    extra = load_checkpoint(path).extra
    return str(extra.get("version", "0.0.0")), list(extra.get("training_data", [])), extra.get("height")


def finetune(
    start: str | Path,
    manifest: str | Path,
    out: str | Path,
    *,
    epochs: int = 5,
    height: int | None = None,
    acr_weights: tuple[float, ...] = ACR_FINETUNE_WEIGHTS,
    synthetic_uncertainty: float | None = None,
    seed: int = 0,
    batch_size: int = 4,
    lr: float = 1e-4,
    resume: bool = False,
    echo: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``start`` on ``manifest``; returns what was written (paths, version, tuning scores)."""
    start, out = Path(start), Path(out)
    model, extra = load_checkpoint_or_onnx(start)
    version, training_data, start_height = _source_info(start)
    height = height or start_height or int(extra.get("height", 512))
    rows, root = load_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest}: no rows")
    if synthetic_uncertainty is not None:
        rows = with_synthetic_malignancy(rows, synthetic_uncertainty)
    if not any(r.split == "train" for r in rows):
        rows = assign_splits(rows, (0.8, 0.2, 0.0), seed=seed)
    train_rows = [r for r in rows if r.split == "train"]
    tuning_rows = [r for r in rows if r.split == "tuning"]
    tasks = tuple(model.config.tasks) + (("recon",) if model.config.reconstruction else ())
    cfg = TrainConfig(
        height=height, epochs=epochs, tasks=tasks, batch_size=batch_size, seed=seed, lr=lr,
        class_weights={"acr": tuple(acr_weights)} if "acr" in tasks else {}, version=bump_version(version),
    )
    train(cfg, train_rows, tuning_rows, out, root=root, cache_dir=out / "cache", resume=resume, init=model, echo=echo)
    if not distributed.is_main():  # torchrun: rank 0 alone evaluates and exports
        return {"onnx": None, "manifest": None, "version": cfg.version, "tuning": {}}
    best = out / "best.pt"
    tuned = load_checkpoint(best if best.exists() else out / "last.pt").model()
    points: dict[str, Any] = {"malignancy": {"default": 0.5, "split": "tuning"}}
    scores: dict[str, float] = {}
    if tuning_rows:
        ds = ImageDataset(tuning_rows, height, root, out / "cache")
        probs = predict_dataset(tuned, ds)
        scores = task_scores(ds.rows, probs)
        if "malignancy" in probs:
            have = [i for i, r in enumerate(ds.rows) if r.label("malignancy").value is not None]
            y = np.array([ds.rows[i].index("malignancy") for i in have])
            t = threshold_for_sensitivity(y, probs["malignancy"][have, 1], 0.95)
            if np.isfinite(t):
                points["malignancy"]["sensitivity_95"] = float(t)
    name = start.stem
    result = export_onnx(
        tuned,
        out / f"{name}.onnx",
        height=height,
        version=cfg.version,
        name=name,
        training_data=[
            *training_data,
            f"fine-tuned on {Path(manifest).name} ({len(train_rows)} images, labels with uncertainty)",
        ],
        metrics={"tuning_after_finetune": {k: round(v, 4) for k, v in scores.items() if np.isfinite(v)}},
        operating_points=points,
        card=f"{name}.md",
    )
    return {"onnx": result.onnx_path, "manifest": result.manifest_path, "version": cfg.version, "tuning": scores}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="start", required=True, type=Path, help="starting model: .onnx or checkpoint .pt"
    )
    parser.add_argument(
        "--manifest", required=True, type=Path, help="the app's export manifest.csv (labels with uncertainty)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("finetune-run"), help="run folder; the new .onnx is written there"
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--height", type=int, default=None, help="default: the starting model's")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--acr-weight", type=float, default=20.0, help="class weight of ACR 4 and 5 (paper: 20)")
    parser.add_argument(
        "--synthetic-malignancy", type=float, default=None, metavar="U",
        help="fill missing malignancy from ACR (1-2 benign, 4-5 malignant) with uncertainty U",
    )
    parser.add_argument("--resume", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.epochs < 1:
        raise ValueError("--epochs must be at least 1")
    w = args.acr_weight
    with distributed.session():  # under torchrun: one process of a DDP group (training/distributed.py)
        res = finetune(
            args.start,
            args.manifest,
            args.out,
            epochs=args.epochs,
            height=args.height,
            acr_weights=(1.0, 1.0, 1.0, w, w, 1.0),
            synthetic_uncertainty=args.synthetic_malignancy,
            seed=args.seed,
            batch_size=args.batch_size,
            lr=args.lr,
            resume=args.resume,
        )
    if res["onnx"] is None:
        return 0
    print(f"wrote {res['onnx']} (version {res['version']}) and {res['manifest']}")
    return 0


