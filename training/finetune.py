"""``python -m training finetune``: continue training a model on the app's label export.

Reads the export's ``manifest.csv`` as it is (image paths relative to its folder; each label's
uncertainty becomes its loss weight 1 - u), starts from the weights of an ``.onnx`` (its
initializers) or a checkpoint, trains with the paper's fine-tuning class weights (x20 for ACR 4
and 5 by default), and writes a new ``.onnx`` + manifest whose version is bumped (minor).
Rows without a split are divided by woman into train / tuning (80 / 20); the 95 %-sensitivity
operating point is set again on that tuning part, and the tuning malignancy AUC reported, only when
that part is large enough (:data:`training.metrics.MIN_TUNING_IMAGES` images with at least
:data:`training.metrics.MIN_TUNING_PER_CLASS` of each class); else neither, and the card says why.
Labels whose ``<task>_by`` says ``suggested`` count at :data:`training.readers.SUGGESTED_WEIGHT`;
labels by anyone else but a person are ignored (:func:`training.readers.weigh_by_who`).
The new manifest and card keep the base model's metrics (``metrics.base_model``) and say what
changed. ``--max-minutes`` stops after the epoch that passes the budget; ``--threads`` sets torch's
CPU threads.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.errors import ModelError
from inference.formats import ModelManifest, read_model_manifest
from training import distributed
from training.data import ImageDataset, load_manifest
from training.metrics import threshold_for_sensitivity, too_few_for_operating_points
from training.onnx.checkpoint import load_checkpoint
from training.onnx.export import export_onnx
from training.onnx.source import load_checkpoint_or_onnx
from training.readers import SUGGESTED_WEIGHT, assign_splits, weigh_by_who, with_synthetic_malignancy
from training.train import TrainConfig, predict_dataset, task_scores, train

__all__ = ["bump_version", "card_notes", "finetune", "add_arguments", "run"]

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


def _source_info(path: Path) -> tuple[str, list[str], int | None, ModelManifest | None]:
    """(version, training_data, height, manifest or None) of the starting model."""
    if path.suffix == ".onnx":
        try:
            man = read_model_manifest(path)
            return man.version, list(man.training_data), man.input_height, man
        except ModelError:
            return "0.0.0", [], None, None
    extra = load_checkpoint(path).extra
    return str(extra.get("version", "0.0.0")), list(extra.get("training_data", [])), extra.get("height"), None


def card_notes(
    start: Path, base_version: str, manifest: Path, n_train: int, n_tuning: int, epochs: int, height: int,
    not_set: str, base: ModelManifest | None,
) -> str:
    """The new card's opening: what was fine-tuned on what, and what changed."""
    lines = [
        f"Fine-tuned from `{start.name}` {base_version} on `{manifest.name}`: {n_train} training and {n_tuning} "
        f"tuning image(s), at most {epochs} epoch(s) at height {height}. Loss weight of a label: 1 - u; labels "
        f"marked `suggested` (nobody confirmed them) at {SUGGESTED_WEIGHT:g} of that.",
        "",
        "What changed: the network's weights. "
        + (f"No tuning malignancy AUC and no 95 %-sensitivity operating point were written: {not_set}. "
           "The app offers only the 0.5 threshold." if not_set
           else "The 95 %-sensitivity operating point was set again on the tuning split."),
    ]
    if base is not None:
        lines += [
            "",
            f"The metrics under `base_model` are those of the base model {base.version} on its own validation "
            "split, before fine-tuning: this model has not been validated there.",
        ]
        if base.calibration:
            lines.append("The base model's calibration does not carry over; fit a new one with "
                         "`python -m training calibrate`.")
    return "\n".join(lines)


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
    max_minutes: float = 0.0,
    echo: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``start`` on ``manifest``; returns what was written (paths, version, tuning scores)."""
    start, out = Path(start), Path(out)
    model, extra = load_checkpoint_or_onnx(start)
    version, training_data, start_height, base = _source_info(start)
    height = height or start_height or int(extra.get("height", 512))
    rows, root = load_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest}: no rows")
    rows = weigh_by_who(rows, warn=print if echo else None)
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
        max_minutes=max_minutes,
    )
    train(cfg, train_rows, tuning_rows, out, root=root, cache_dir=out / "cache", resume=resume, init=model, echo=echo)
    if not distributed.is_main():  # torchrun: rank 0 alone evaluates and exports
        return {"onnx": None, "manifest": None, "version": cfg.version, "tuning": {}}
    best = out / "best.pt"
    tuned = load_checkpoint(best if best.exists() else out / "last.pt").model()
    points: dict[str, Any] = {"malignancy": {"default": 0.5, "split": "tuning"}}
    scores: dict[str, float] = {}
    not_set = "there is no tuning split"
    if tuning_rows:
        ds = ImageDataset(tuning_rows, height, root, out / "cache")
        probs = predict_dataset(tuned, ds)
        scores = task_scores(ds.rows, probs)
        if "malignancy" in probs:
            have = [i for i, r in enumerate(ds.rows) if r.label("malignancy").value is not None]
            y = np.array([ds.rows[i].index("malignancy") for i in have], np.int64)
            not_set = too_few_for_operating_points(y)
            if not not_set:
                t = threshold_for_sensitivity(y, probs["malignancy"][have, 1], 0.95)
                if np.isfinite(t):
                    points["malignancy"]["sensitivity_95"] = float(t)
        if not_set:
            scores.pop("malignancy_auc", None)
    if not_set:
        points["malignancy"]["not_set"] = not_set
        if echo:
            print(f"no tuning malignancy AUC and no 95 %-sensitivity operating point: {not_set}")
    metrics: dict[str, Any] = {
        "tuning_after_finetune": {k: round(v, 4) for k, v in scores.items() if np.isfinite(v)},
    }
    if not_set:
        metrics["tuning_after_finetune_not_set"] = not_set
    if base is not None:
        metrics["base_model"] = {"version": base.version, "metrics": base.metrics,
                                 "operating_points": base.operating_points}
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
        metrics=metrics,
        operating_points=points,
        card=card_notes(start, version, Path(manifest), len(train_rows), len(tuning_rows), epochs, height,
                        not_set, base),
    )
    return {"onnx": result.onnx_path, "manifest": result.manifest_path, "version": cfg.version, "tuning": scores,
            "not_set": not_set}


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
    parser.add_argument(
        "--max-minutes", type=float, default=0.0, help="stop after the epoch that passes this many minutes (0: none)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def run(args: argparse.Namespace) -> int:
    if args.epochs < 1:
        raise ValueError("--epochs must be at least 1")
    w = args.acr_weight
    if args.threads:
        torch.set_num_threads(args.threads)
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
            max_minutes=args.max_minutes,
        )
    if res["onnx"] is None:
        return 0
    print(f"wrote {res['onnx']} (version {res['version']}) and {res['manifest']}")
    return 0


