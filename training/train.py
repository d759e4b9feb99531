"""``python -m training train``: train the multi-task network from a label manifest.

Adam (lr 1e-3) on the loss of :mod:`training.loss`, the paper's augmentation on the ``train``
split, one evaluation of the ``tuning`` split per epoch (malignancy and view AUC, density and ACR
balanced accuracy; with the ``seg`` task the lesion Dice), a metrics CSV, and three files in the run
folder:

- ``last.pt``: everything needed to resume exactly (weights, optimizer, epoch, position within the
  epoch and its batch plan, numpy and torch RNG states), written every epoch and every
  ``--checkpoint-minutes``;
- ``best.pt``: the weights with the best tuning malignancy AUC so far (chosen on tuning only);
- ``average.pt`` with ``--average-from E``: the mean of the weights after each epoch from E on
  (:mod:`training.average`), scored on tuning every epoch (``avg_tuning_*`` columns);
- ``metrics.csv`` and ``train.log``.

``--resume`` continues from ``last.pt``; the result is the same as an uninterrupted run.
The ``seg`` task (lesion segmentation) reads the manifest's companion ``M.lesions.csv``
(:mod:`training.lesions`, written by ``python -m training manifest``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.errors import ModelError
from inference.formats import TASK_CLASSES, TASKS, LabelRow
from training import distributed
from training.augment import Augment, Compose, IntensityAugment, Transform
from training.average import RunningAverage
from training.data import ImageDataset, collate, load_manifest, plan_batches
from training.lesions import LesionRecord, lesions_path_for, read_lesions
from training.loss import LossConfig, multitask_loss
from training.metrics import auc, balanced_accuracy
from training.model import MammoNet, ModelConfig, build_model
from training.onnx.checkpoint import load_checkpoint, save_checkpoint
from training.onnx.source import load_checkpoint_or_onnx

__all__ = [
    "ALL_TASKS",
    "DEFAULT_TASKS",
    "TrainConfig",
    "EpochResult",
    "train",
    "evaluate_split",
    "lesion_dice",
    "warm_start",
    "add_arguments",
    "run",
    "parse_tasks",
]

ALL_TASKS: tuple[str, ...] = (*TASKS, "recon", "seg")
#: The tasks a run trains unless told otherwise (the 1.0.1 set: segmentation is asked for).
DEFAULT_TASKS: tuple[str, ...] = (*TASKS, "recon")


@dataclass(frozen=True)
class TrainConfig:
    """One training run's settings (saved in every checkpoint)."""

    height: int = 512
    epochs: int = 50
    tasks: tuple[str, ...] = DEFAULT_TASKS
    batch_size: int = 4
    seed: int = 0
    lr: float = 1e-3
    augment: bool = True
    intensity: bool = False  # IntensityAugment before the geometric one (training split only)
    checkpoint_minutes: float = 10.0
    max_minutes: float = 0.0  # stop after the epoch that passes this budget (0: no limit)
    average_from: int = 0  # keep the mean of the weights after each epoch from this one on (0: off)
    class_weights: dict[str, tuple[float, ...]] = field(default_factory=dict)
    version: str = "0.1.0"

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            tasks=tuple(t for t in self.tasks if t in TASK_CLASSES),
            reconstruction="recon" in self.tasks,
            segmentation="seg" in self.tasks,
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        d["class_weights"] = {k: list(v) for k, v in self.class_weights.items()}
        return d


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: dict[str, float]
    tuning: dict[str, float]
    seconds: float


def parse_tasks(text: str) -> tuple[str, ...]:
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in tasks if t not in ALL_TASKS]
    if unknown or not tasks:
        raise ValueError(f"unknown task(s) {unknown or text!r}; choose from {', '.join(ALL_TASKS)}")
    return tasks


# ---------------------------------------------------------------------- evaluation (torch)
@torch.no_grad()
def predict_dataset(model: MammoNet, ds: ImageDataset, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Softmax probabilities per task for every image of ``ds`` (eval mode, batches of one width)."""
    was = model.training
    model.eval()
    out: dict[str, np.ndarray] = {t: np.zeros((len(ds), len(TASK_CLASSES[t])), np.float32) for t in model.config.tasks}
    if model.config.segmentation:
        out["lesion_dice"] = np.full(len(ds), np.nan, np.float32)
    try:
        for batch_idx in plan_batches([ds.width(i) for i in range(len(ds))], batch_size):
            batch = collate([ds.sample(i) for i in batch_idx], batch_idx)
            res = model(batch.image)
            for t in model.config.tasks:
                out[t][list(batch_idx)] = torch.softmax(res[t], dim=1).numpy()
            if "lesion" in res and batch.lesion is not None:
                out["lesion_dice"][list(batch_idx)] = lesion_dice(
                    torch.sigmoid(res["lesion"]).numpy(), batch.lesion.target.numpy(), batch.lesion.weight.numpy()
                )
    finally:
        model.train(was)
    return out


def lesion_dice(prob: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per image ``[N, 1, h, w]``: weighted Dice of the map thresholded at 0.5 against the target
    (cells of weight 0 left out); NaN for an image without a lesion in its target."""
    pred = (prob >= 0.5).astype(np.float32)
    w = weight.astype(np.float32)
    wy = (w * target).sum(axis=(1, 2, 3))
    inter = (w * pred * target).sum(axis=(1, 2, 3))
    denom = (w * pred).sum(axis=(1, 2, 3)) + wy
    out: np.ndarray = np.where(wy > 0, 2.0 * inter / np.maximum(denom, 1e-12), np.nan).astype(np.float32)
    return out


def task_scores(rows: Sequence[LabelRow], probs: dict[str, np.ndarray]) -> dict[str, float]:
    """AUC (malignancy, view) and balanced accuracy (density, acr) over the rows with a label;
    the mean lesion Dice over the images with a lesion in their target."""
    scores: dict[str, float] = {}
    for t, p in probs.items():
        if t == "lesion_dice":
            scores[t] = float(np.nanmean(p)) if np.isfinite(p).any() else float("nan")
            continue
        have = [i for i, r in enumerate(rows) if r.label(t).value is not None]
        y = np.array([rows[i].index(t) for i in have], dtype=np.int64)
        if t in ("malignancy", "view"):
            scores[f"{t}_auc"] = auc(y, p[have, 1]) if have else float("nan")
        else:
            scores[f"{t}_bacc"] = balanced_accuracy(y, p[have].argmax(1)) if have else float("nan")
    return scores


def evaluate_split(model: MammoNet, ds: ImageDataset) -> dict[str, float]:
    return task_scores(ds.rows, predict_dataset(model, ds))


# ---------------------------------------------------------------------- training
def training_transform(cfg: TrainConfig) -> Transform | None:
    """The training split's random transform: intensity (if on), then geometric (if on)."""
    parts: list[Transform] = []
    if cfg.intensity:
        parts.append(IntensityAugment())
    if cfg.augment:
        parts.append(Augment())
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Compose(tuple(parts))


def _log(run: Path, text: str, echo: bool) -> None:
    if not distributed.is_main():  # torchrun: rank 0 alone writes
        return
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}"
    with open(run / "train.log", "a", encoding="utf-8") as f:
        f.write(line + "\n")
    if echo:
        print(line, flush=True)


def _rng_to_json(rng: np.random.Generator) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(json.dumps(rng.bit_generator.state))
    return state


def _save_last(
    run: Path, model: MammoNet, opt: torch.optim.Optimizer, cfg: TrainConfig, resume: dict[str, Any]
) -> None:
    if not distributed.is_main():  # torchrun: rank 0 alone writes
        return
    extra = {"height": cfg.height, "version": cfg.version, "train_config": cfg.to_json(), "resume": resume}
    at = int(resume["epoch"])
    save_checkpoint(run / "last.pt", distributed.for_eval(model), epoch=at, optimizer=opt, extra=extra)


def train(
    cfg: TrainConfig,
    train_rows: Sequence[LabelRow],
    tuning_rows: Sequence[LabelRow],
    run: str | Path,
    *,
    root: str | Path = ".",
    cache_dir: str | Path | None = None,
    resume: bool = False,
    init: MammoNet | None = None,
    lesions: dict[str, LesionRecord] | None = None,
    echo: bool = True,
    stop_after_steps: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[EpochResult]:
    """Train (or resume) a run in folder ``run``; returns the per-epoch results of this call.

    ``init`` starts from given weights (fine-tuning). ``lesions`` (key -> record) are the lesion
    targets of the ``seg`` task. ``stop_after_steps`` interrupts after that
    many optimizer steps of this call, saving ``last.pt`` (used to test exact resumption).
    """
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    if "seg" in cfg.tasks and not lesions:
        raise ValueError("the seg task needs lesion records (the manifest's .lesions.csv)")
    lesions = lesions if "seg" in cfg.tasks else None
    train_ds = ImageDataset(train_rows, cfg.height, root, cache_dir, training_transform(cfg), lesions)
    tune_ds = ImageDataset(tuning_rows, cfg.height, root, cache_dir, lesions=lesions)
    for name, ds in (("train", train_ds), ("tuning", tune_ds)):
        with distributed.main_first():  # torchrun: rank 0 fills the cache, then the others read it
            failed = ds.prepare()
        for i, reason in failed:
            _log(run, f"skipping {name} image {ds.rows[i].image}: {reason}", echo)
        if failed:
            bad = {i for i, _ in failed}
            ds2 = ds.subset(i for i in range(len(ds)) if i not in bad)
            if name == "train":
                train_ds = ds2
            else:
                tune_ds = ds2
    if len(train_ds) == 0:
        raise ValueError("no training image left")
    widths = [train_ds.width(i) for i in range(len(train_ds))]
    loss_cfg = LossConfig(class_weights=cfg.class_weights)

    state: dict[str, Any]
    if resume and (run / "last.pt").exists():
        ckpt = load_checkpoint(run / "last.pt")
        saved = ckpt.extra.get("train_config", {})
        if saved.get("height") != cfg.height or list(saved.get("tasks", [])) != list(cfg.tasks):
            raise ModelError("the run's last.pt was trained with another height or task list", run / "last.pt")
        model = ckpt.model()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        if ckpt.optimizer is not None:
            opt.load_state_dict(ckpt.optimizer)
        state = dict(ckpt.extra["resume"])
        rng = np.random.default_rng()
        rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        _log(run, f"resumed at epoch {state['epoch']} step {state['step']}", echo)
    else:
        torch.manual_seed(cfg.seed)
        model = init if init is not None else build_model(cfg.model_config(), seed=cfg.seed)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        rng = np.random.default_rng(cfg.seed)
        state = {"epoch": 0, "step": 0, "plan": None, "sums": {}, "count": 0, "best": -1.0, "best_epoch": -1,
                 "elapsed": 0.0, "np_rng": None, "torch_rng": None}
        if distributed.is_main():
            with open(run / "config.json", "w", encoding="utf-8") as f:
                json.dump(cfg.to_json(), f, indent=1)
        _log(
            run,
            f"start: {len(train_ds)} train, {len(tune_ds)} tuning images, height {cfg.height}, "
            f"tasks {','.join(cfg.tasks)}",
            echo,
        )

    average = RunningAverage()
    if cfg.average_from > 0 and resume and (run / "average.pt").exists():
        average = RunningAverage.load(run / "average.pt")
    results: list[EpochResult] = []
    steps_this_call = 0
    started = time.monotonic() - float(state["elapsed"])
    last_save = time.monotonic()
    model.train()
    step_model = distributed.wrap(model)  # DDP under torchrun, else the model itself

    def snapshot() -> dict[str, Any]:
        s = dict(state)
        s["np_rng"] = _rng_to_json(rng)
        s["torch_rng"] = torch.get_rng_state().tolist()
        s["elapsed"] = time.monotonic() - started
        return s

    while state["epoch"] < cfg.epochs:
        t0 = time.monotonic()
        if state["plan"] is None:
            state["plan"] = distributed.common_plan(plan_batches(widths, cfg.batch_size, rng))
            state["step"], state["sums"], state["count"] = 0, {}, 0
        plan: list[list[int]] = distributed.shard(state["plan"])  # this process's batches
        while state["step"] < len(plan):
            idx = plan[state["step"]]
            batch = distributed.place(collate([train_ds.sample(i, rng) for i in idx], idx))
            out = step_model(batch.image)
            loss, parts = multitask_loss(out, batch.image, batch.targets, loss_cfg, batch.lesion)
            if not math.isfinite(parts["total"]):
                raise ValueError(f"the loss became {parts['total']} at epoch {state['epoch'] + 1}")
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt.step()
            sums = state["sums"]
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            state["count"] += len(idx)
            state["step"] += 1
            steps_this_call += 1
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                _save_last(run, model, opt, cfg, snapshot())
                return results
            if cfg.checkpoint_minutes > 0 and time.monotonic() - last_save > 60 * cfg.checkpoint_minutes:
                _save_last(run, model, opt, cfg, snapshot())
                last_save = time.monotonic()
        epoch = state["epoch"] + 1
        train_loss = {k: v / max(1, state["count"]) for k, v in state["sums"].items()}
        tuning = evaluate_split(distributed.for_eval(model), tune_ds) if len(tune_ds) else {}
        mal = tuning.get("malignancy_auc", float("nan"))
        improved = math.isfinite(mal) and mal > state["best"]
        if improved or (state["best_epoch"] < 0 and not math.isfinite(mal)):
            state["best"], state["best_epoch"] = (mal if math.isfinite(mal) else -1.0), epoch
        if distributed.is_main() and state["best_epoch"] == epoch:
            save_checkpoint(
                run / "best.pt", distributed.for_eval(model), epoch=epoch,
                extra={"height": cfg.height, "version": cfg.version, "train_config": cfg.to_json(), "tuning": tuning},
            )
        if 0 < cfg.average_from <= epoch and average.update(distributed.for_eval(model), epoch):
            averaged = average.model(distributed.for_eval(model))
            if len(tune_ds):
                tuning.update({f"avg_{k}": v for k, v in evaluate_split(averaged, tune_ds).items()})
            if distributed.is_main():
                average.save(run / "average.pt", averaged, {"height": cfg.height, "version": cfg.version,
                                                            "train_config": cfg.to_json(), "tuning": tuning})
        result = EpochResult(epoch, train_loss, tuning, time.monotonic() - t0)
        results.append(result)
        _write_metrics(run / "metrics.csv", result, improved)
        state["epoch"], state["plan"] = epoch, None
        snap = snapshot()
        _save_last(run, model, opt, cfg, snap)
        last_save = time.monotonic()
        losses = " ".join(f"{k}={v:.4f}" for k, v in train_loss.items())
        scores = " ".join(f"{k}={v:.3f}" for k, v in tuning.items())
        _log(
            run,
            f"epoch {epoch}/{cfg.epochs} {result.seconds:.0f}s loss {losses} | "
            f"tuning {scores}{' *best' if improved else ''}",
            echo,
        )
        if progress is not None:
            progress(f"epoch {epoch}")
        if cfg.max_minutes > 0 and snap["elapsed"] > 60 * cfg.max_minutes:
            _log(run, f"time budget of {cfg.max_minutes:g} min reached after epoch {epoch}", echo)
            break
    return results


def _write_metrics(path: Path, r: EpochResult, best: bool) -> None:
    if not distributed.is_main():  # torchrun: rank 0 alone writes
        return
    row = {"epoch": r.epoch, "seconds": round(r.seconds, 1), "best": int(best)}
    row.update({f"loss_{k}": round(v, 5) for k, v in r.train_loss.items()})
    row.update({f"tuning_{k}": round(v, 4) for k, v in r.tuning.items()})
    new = not path.exists()
    fields = list(row)
    if not new:  # the header's column order, whatever order this epoch's losses came in
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        fields = header + [k for k in row if k not in header]
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        if new:
            w.writeheader()
        w.writerow(row)


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, type=Path, help="label manifest CSV with a split column")
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, metrics.csv, train.log)")
    parser.add_argument("--height", type=int, default=512, help="input height, a multiple of 64 (default 512)")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument(
        "--tasks", default=",".join(DEFAULT_TASKS),
        help=f"comma-separated subset of {','.join(ALL_TASKS)} (default {','.join(DEFAULT_TASKS)}; "
        "seg reads the manifest's .lesions.csv)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--no-augment", action="store_true", help="switch the geometric augmentation off")
    parser.add_argument(
        "--intensity-augment", action="store_true",
        help="add the intensity augmentation (resolution, blur, gamma, contrast, window, noise; each p = 0.5)",
    )
    parser.add_argument("--max-minutes", type=float, default=0.0, help="stop after the epoch passing this wall time")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument(
        "--average-from", type=int, default=0, metavar="EPOCH",
        help="also keep average.pt, the mean of the weights after each epoch from EPOCH on, scored on tuning",
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="cache folder of preprocessed arrays (default RUN/cache)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="warm start: copy every weight whose name and shape match from this checkpoint or .onnx "
        "(others stay Xavier)",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.height <= 0 or args.height % 64:
        raise ValueError(f"--height {args.height} is not a positive multiple of 64")
    if args.batch_size < 1 or args.epochs < 1:
        raise ValueError("--batch-size and --epochs must be at least 1")
    return TrainConfig(
        height=args.height,
        epochs=args.epochs,
        tasks=parse_tasks(args.tasks),
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        augment=not args.no_augment,
        intensity=args.intensity_augment,
        checkpoint_minutes=args.checkpoint_minutes,
        max_minutes=args.max_minutes,
        average_from=args.average_from,
    )


def warm_start(cfg: TrainConfig, source: str | Path) -> MammoNet:
    """A fresh network for ``cfg`` (seeded) with every tensor of ``source`` whose name and shape match."""
    donor, _ = load_checkpoint_or_onnx(source)
    model = build_model(cfg.model_config(), seed=cfg.seed)
    own = model.state_dict()
    copied = {k: v for k, v in donor.state_dict().items() if k in own and own[k].shape == v.shape}
    if not copied:
        raise ModelError("no weight of this model fits the network being trained", source)
    own.update(copied)
    model.load_state_dict(own)
    return model


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, root = load_manifest(args.manifest)
    train_rows = [r for r in rows if r.split == "train"]
    tuning_rows = [r for r in rows if r.split == "tuning"]
    if not train_rows:
        raise ValueError(f"{args.manifest}: no row has split 'train' (run `python -m training manifest` to split)")
    init = warm_start(cfg, args.init) if args.init is not None and not args.resume else None
    lesions = None
    if "seg" in cfg.tasks:
        lesion_file = lesions_path_for(args.manifest)
        if not lesion_file.exists():
            raise ValueError(f"the seg task needs {lesion_file} (written by `python -m training manifest`)")
        lesions = read_lesions(lesion_file)
    with distributed.session():  # under torchrun: one process of a DDP group (training/distributed.py)
        results = train(
            cfg,
            train_rows,
            tuning_rows,
            args.out,
            root=root,
            cache_dir=args.cache or args.out / "cache",
            resume=args.resume,
            init=init,
            lesions=lesions,
        )
        if not distributed.is_main():
            return 0
    print(f"done: {len(results)} epoch(s) this call; best checkpoint {args.out / 'best.pt'}")
    return 0


