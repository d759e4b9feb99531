"""``python -m training experiment NAME``: one of the paper's ablation tables, resumable.

NAME is a key of :data:`EXPERIMENTS`:

- ``tasks``: Table 4 of Tardy & Mateus (2022), the task ablation: malignancy alone, malignancy with
  each auxiliary task, all tasks (one :class:`Variant` per line of :data:`TASK_VARIANTS`: a new
  task is one more line);
- ``fusion``: the multi-level fusion ablation: the latent z from the last encoder level only vs.
  from all five levels (:attr:`training.model.ModelConfig.multi_level`);
- ``missing``: Table 5: 0 / 25 / 50 / 75 % of the training split's malignancy labels removed
  (which ones is drawn with the run's seed).

Every (variant, seed) trains in its own folder ``OUT/NAME/<variant>/seed-<k>`` with
:func:`training.train.train` (``last.pt`` lets an interrupted run resume) and ends with
``result.json``; a run with ``result.json`` is skipped, so the command can be started again until
the table is complete. The result of a run is scored on the tuning and validation splits with the
run's best checkpoint (by tuning malignancy AUC): AUC of malignancy and view, balanced accuracy of
density and ACR, each with a 95 % percentile-bootstrap interval over women
(:func:`training.metrics.bootstrap`).

The table (``OUT/NAME/table.md`` and ``table.json``) gives per variant and metric: the mean over the
seeds, in brackets the mean of the seeds' bootstrap interval bounds, and the seeds' range.

``--folds K`` (cross-validation) scores a recipe on more images than one tuning split holds: the
women of the train and tuning splits (the validation split stays untouched) are cut into K folds by
a hash of the woman; each fold is predicted by a run trained on the other K - 1 folds, with no
checkpoint chosen (the run's weight average over its second half, :mod:`training.average`), and the
out-of-fold predictions of all folds are scored together (split ``cv``). The table then also gives
each variant's malignancy AUC minus the first variant's, with a paired bootstrap over women (the
same images and resamples for both): differences that independent intervals hide.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.formats import LabelRow
from training.data import ImageDataset, load_manifest
from training.lesions import LesionRecord, lesions_path_for, read_lesions
from training.metrics import auc, balanced_accuracy, bootstrap
from training.model import MammoNet, build_model
from training.onnx.checkpoint import load_checkpoint
from training.train import DEFAULT_TASKS, TrainConfig, predict_dataset, train

__all__ = [
    "Variant", "TASK_VARIANTS", "FUSION_VARIANTS", "MISSING_VARIANTS", "EXPERIMENTS", "METRICS",
    "drop_labels", "experiment_folder", "fold_of", "run_variant", "run_variant_cv", "paired_difference",
    "run_experiment", "summarise", "markdown_table", "add_arguments", "run",
]


@dataclass(frozen=True)
class Variant:
    """One line of a table: the tasks trained (``recon`` = reconstruction), z from all levels or the
    last one, and the share of the training split's malignancy labels removed."""

    name: str
    tasks: tuple[str, ...]
    multi_level: bool = True
    drop_malignancy: float = 0.0

    @property
    def folder(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


TASK_VARIANTS: tuple[Variant, ...] = (
    Variant("malignancy", ("malignancy",)),
    Variant("malignancy + reconstruction", ("malignancy", "recon")),
    Variant("malignancy + ACR", ("malignancy", "acr")),
    Variant("malignancy + density", ("malignancy", "density")),
    Variant("malignancy + view", ("malignancy", "view")),
    Variant("all tasks", DEFAULT_TASKS),
    Variant("all tasks + lesion segmentation", (*DEFAULT_TASKS, "seg")),
)
FUSION_VARIANTS: tuple[Variant, ...] = (
    Variant("z from the last level", DEFAULT_TASKS, multi_level=False),
    Variant("z from all five levels", DEFAULT_TASKS),
)
MISSING_VARIANTS: tuple[Variant, ...] = tuple(
    Variant(f"{int(f * 100)} % malignancy labels removed", DEFAULT_TASKS, drop_malignancy=f)
    for f in (0.0, 0.25, 0.5, 0.75)
)
EXPERIMENTS: dict[str, tuple[Variant, ...]] = {
    "tasks": TASK_VARIANTS, "fusion": FUSION_VARIANTS, "missing": MISSING_VARIANTS,
}
#: (key, task, kind): kind "auc" for binary tasks (P of the second class), "bacc" for multi-class ones.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("malignancy_auc", "malignancy", "auc"),
    ("view_auc", "view", "auc"),
    ("density_bacc", "density", "bacc"),
    ("acr_bacc", "acr", "bacc"),
)
SPLITS: tuple[str, ...] = ("tuning", "validation", "cv")


def drop_labels(rows: Sequence[LabelRow], task: str, fraction: float, seed: int) -> list[LabelRow]:
    """``rows`` with ``fraction`` of the rows that have a ``task`` label losing it (drawn with ``seed``)."""
    have = [i for i, r in enumerate(rows) if r.label(task).value is not None]
    k = int(round(fraction * len(have)))
    drop = set(np.random.default_rng(seed).choice(have, size=k, replace=False).tolist()) if k else set()
    return [
        dataclasses.replace(r, labels={t: v for t, v in r.labels.items() if t != task}) if i in drop else r
        for i, r in enumerate(rows)
    ]


def _score(rows: Sequence[LabelRow], probs: dict[str, np.ndarray], n_boot: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, task, kind in METRICS:
        if task not in probs:
            continue
        idx = [i for i, r in enumerate(rows) if r.label(task).value is not None]
        if not idx:
            continue
        y = np.array([rows[i].index(task) for i in idx], np.int64)
        groups = [rows[i].patient or rows[i].key for i in idx]
        if kind == "auc":
            iv = bootstrap(auc, y, probs[task][idx, 1], n_boot, seed, groups)
        else:
            iv = bootstrap(balanced_accuracy, y, probs[task][idx].argmax(1), n_boot, seed, groups)
        out[key] = iv.to_json()
    return out


def _start(
    variant: Variant, seed: int, rows: Sequence[LabelRow], *, height: int, epochs: int, max_minutes: float,
    batch_size: int, average_from: int = 0,
) -> tuple[list[LabelRow], TrainConfig, MammoNet]:
    """A run's training rows (with the variant's labels removed), settings and seeded first weights."""
    if variant.drop_malignancy:
        rows = drop_labels(rows, "malignancy", variant.drop_malignancy, seed)
    cfg = TrainConfig(
        height=height, epochs=epochs, tasks=variant.tasks, batch_size=batch_size, seed=seed,
        max_minutes=max_minutes, version="experiment", average_from=average_from,
    )
    init = build_model(dataclasses.replace(cfg.model_config(), multi_level=variant.multi_level), seed=seed)
    return list(rows), cfg, init


def _prepared(rows: Sequence[LabelRow], height: int, root: Path, cache_dir: Path | None) -> ImageDataset:
    """The rows' images preprocessed (or read from the cache); those that fail are left out."""
    ds = ImageDataset(rows, height, root, cache_dir)
    bad = {i for i, _ in ds.prepare()}
    return ds.subset(i for i in range(len(ds)) if i not in bad)


def run_variant(
    variant: Variant, seed: int, rows: Sequence[LabelRow], root: Path, folder: Path, *,
    height: int, epochs: int, max_minutes: float = 0.0, batch_size: int = 4, n_boot: int = 1000,
    cache_dir: Path | None = None, echo: bool = True, lesions: dict[str, LesionRecord] | None = None,
) -> dict[str, Any]:
    """Train (or resume, or skip when done) one (variant, seed) and score it; returns its result.
    ``lesions`` (the manifest's ``.lesions.csv``) is needed by a variant with the ``seg`` task."""
    done = folder / "result.json"
    if done.is_file():
        result: dict[str, Any] = json.loads(done.read_text(encoding="utf-8"))
        return result
    train_rows, cfg, init = _start(variant, seed, [r for r in rows if r.split == "train"], height=height,
                                   epochs=epochs, max_minutes=max_minutes, batch_size=batch_size)
    tuning_rows = [r for r in rows if r.split == "tuning"]
    train(cfg, train_rows, tuning_rows, folder, root=root, cache_dir=cache_dir, resume=True, init=init, echo=echo,
          lesions=lesions if "seg" in variant.tasks else None)
    best = folder / "best.pt"
    ckpt = load_checkpoint(best if best.exists() else folder / "last.pt")
    model = ckpt.model()
    result = {"variant": variant.name, "seed": seed, "height": height, "epochs": epochs,
              "checkpoint_epoch": ckpt.epoch,
              "n_train": len(train_rows),
              "n_train_malignancy": sum(r.label("malignancy").value is not None for r in train_rows)}
    for split in SPLITS:
        ds = _prepared([r for r in rows if r.split == split], height, root, cache_dir)
        result[split] = _score(ds.rows, predict_dataset(model, ds), n_boot, seed) if len(ds) else {}
    done.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def experiment_folder(out: str | Path, name: str, folds: int = 0) -> Path:
    """Where experiment ``name`` keeps its runs and table: ``OUT/NAME``, or ``OUT/NAME-cvK`` with folds."""
    return Path(out) / (f"{name}-cv{folds}" if folds else name)


def fold_of(row: LabelRow, folds: int) -> int:
    """The cross-validation fold of a row: a hash of its woman (her images stay together)."""
    group = row.patient or row.key
    return int(hashlib.sha256(f"cv|{group}".encode()).hexdigest(), 16) % folds


def run_variant_cv(
    variant: Variant, seed: int, rows: Sequence[LabelRow], root: Path, folder: Path, *, folds: int,
    height: int, epochs: int, max_minutes: float = 0.0, batch_size: int = 4, n_boot: int = 1000,
    cache_dir: Path | None = None, echo: bool = True, lesions: dict[str, LesionRecord] | None = None,
) -> dict[str, Any]:
    """Cross-validate one (variant, seed) over the train and tuning women (``--folds``); each fold's
    run and its held-out predictions are kept (``fold-F/held-out.json``), so an interrupted
    experiment resumes fold by fold. Returns the result with the pooled out-of-fold scores (``cv``)
    and the predictions themselves (``oof``: row key -> task -> probabilities)."""
    done = folder / "result.json"
    if done.is_file():
        result: dict[str, Any] = json.loads(done.read_text(encoding="utf-8"))
        return result
    pool = [r for r in rows if r.split in ("train", "tuning")]
    fold_of_row = [fold_of(r, folds) for r in pool]
    oof: dict[str, dict[str, list[float]]] = {}
    for fold in range(folds):
        fdir = folder / f"fold-{fold}"
        held_file = fdir / "held-out.json"
        if not held_file.is_file():
            train_rows, cfg, init = _start(
                variant, seed, [r for r, f in zip(pool, fold_of_row, strict=True) if f != fold], height=height,
                epochs=epochs, max_minutes=max_minutes, batch_size=batch_size, average_from=epochs // 2 + 1,
            )
            train(cfg, train_rows, [], fdir, root=root, cache_dir=cache_dir, resume=True, init=init, echo=echo,
                  lesions=lesions if "seg" in variant.tasks else None)  # no tuning split: nothing is chosen
            model = load_checkpoint(fdir / "average.pt").model()
            ds = _prepared([r for r, f in zip(pool, fold_of_row, strict=True) if f == fold], height, root, cache_dir)
            probs = predict_dataset(model, ds) if len(ds) else {}
            held = {r.key: {t: probs[t][i].tolist() for t in model.config.tasks} for i, r in enumerate(ds.rows)}
            held_file.write_text(json.dumps(held) + "\n", encoding="utf-8")
        oof.update(json.loads(held_file.read_text(encoding="utf-8")))
    scored = [r for r in pool if r.key in oof]
    tasks = list(next(iter(oof.values()), {}))
    probs_all = {t: np.array([oof[r.key][t] for r in scored], np.float32) for t in tasks}
    result = {"variant": variant.name, "seed": seed, "height": height, "epochs": epochs, "folds": folds,
              "weights": f"mean of epochs {epochs // 2 + 1}-{epochs}", "n_pool": len(pool),
              "cv": _score(scored, probs_all, n_boot, seed) if scored else {}, "oof": oof}
    done.write_text(json.dumps(result) + "\n", encoding="utf-8")
    return result


def paired_difference(
    rows: Sequence[LabelRow], a: dict[str, Any], b: dict[str, Any], n_boot: int = 1000, seed: int = 0
) -> dict[str, Any] | None:
    """Malignancy AUC of run ``a`` minus run ``b`` on the rows both predicted out of fold, with a
    paired bootstrap over women (one resample scores both); None without such rows."""
    oa, ob = a.get("oof", {}), b.get("oof", {})
    both = [r for r in rows if r.label("malignancy").value is not None
            and "malignancy" in oa.get(r.key, {}) and "malignancy" in ob.get(r.key, {})]
    if not both:
        return None
    y = np.array([r.index("malignancy") for r in both], np.int64)
    score = np.array([[oa[r.key]["malignancy"][1], ob[r.key]["malignancy"][1]] for r in both])

    def diff(yy: np.ndarray, ss: np.ndarray) -> float:
        return auc(yy, ss[:, 0]) - auc(yy, ss[:, 1])

    return bootstrap(diff, y, score, n_boot, seed, [r.patient or r.key for r in both]).to_json()


def summarise(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per split and metric over the seeds: mean value, mean interval bounds, range, seeds counted."""
    out: dict[str, Any] = {}
    for split in SPLITS:
        cells: dict[str, Any] = {}
        for key, _, _ in METRICS:
            runs = [r[split][key] for r in results if key in r.get(split, {}) and r[split][key]["value"] is not None]
            if not runs:
                continue
            values = [float(v["value"]) for v in runs]
            cis = [v["ci95"] for v in runs if v.get("ci95")]
            cells[key] = {
                "mean": round(float(np.mean(values)), 4),
                "ci95_mean": [round(float(np.mean([c[0] for c in cis])), 4),
                              round(float(np.mean([c[1] for c in cis])), 4)] if cis else None,
                "seed_range": [round(min(values), 4), round(max(values), 4)],
                "seeds": len(values),
                "n": runs[0]["n"],
            }
        out[split] = cells
    return out


def _cell(c: dict[str, Any] | None) -> str:
    if not c:
        return "-"
    ci = f" [{c['ci95_mean'][0]:.3f}, {c['ci95_mean'][1]:.3f}]" if c["ci95_mean"] else ""
    lo, hi = c["seed_range"]
    return f"{c['mean']:.3f}{ci} (seeds {lo:.3f}-{hi:.3f}, k={c['seeds']})"


def markdown_table(name: str, table: dict[str, Any]) -> str:
    """The experiment's table in Markdown: one section per split, one row per variant."""
    meta = table["settings"]
    lines = [
        f"# Experiment `{name}`",
        "",
        f"Height {meta['height']}, {meta['epochs']} epoch(s) at most"
        + (f", {meta['max_minutes']:g} min per run at most" if meta["max_minutes"] else "")
        + f", seeds {', '.join(str(s) for s in meta['seeds'])}; manifest `{meta['manifest']}`.",
        "Each cell: mean over the seeds [mean of the seeds' 95 % bootstrap interval bounds, resampling women] "
        "(range over the seeds, k = seeds counted). AUC for malignancy and view, balanced accuracy for density "
        "and ACR; '-' where the variant has no such output or the split no such label.",
    ]
    if meta.get("folds"):
        lines.append(
            f"Cross-validation: {meta['folds']} folds of the train and tuning women (validation untouched); "
            "each fold predicted by a run trained on the others (its weight average over the second half "
            "of its epochs, nothing chosen); the out-of-fold predictions scored together."
        )
    for split in SPLITS:
        if not any(row["summary"].get(split) for row in table["variants"]):
            continue
        lines += ["", f"## {split} split", "", "| variant | " + " | ".join(k for k, _, _ in METRICS) + " |",
                  "|---|" + "---|" * len(METRICS)]
        for row in table["variants"]:
            cells = row["summary"].get(split, {})
            lines.append(f"| {row['variant']} | " + " | ".join(_cell(cells.get(k)) for k, _, _ in METRICS) + " |")
    paired = [row for row in table["variants"][1:] if row.get("vs_first")]
    if paired:
        first = table["variants"][0]["variant"]
        lines += ["", f"## malignancy AUC minus that of '{first}' (out of fold, paired bootstrap over women)", "",
                  "| variant | difference per seed [95 % interval] |", "|---|---|"]
        for row in paired:
            cells = [f"{d['value']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d.get("ci95") else
                     (f"{d['value']:+.3f}" if d.get("value") is not None else "-") for d in row["vs_first"]]
            lines.append(f"| {row['variant']} | " + "; ".join(cells) + " |")
    missing = [f"{r['variant']} seed {s}" for r in table["variants"] for s in r["missing_seeds"]]
    if missing:
        lines += ["", "Not finished yet (run the command again): " + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def run_experiment(
    name: str, manifest: str | Path, out: str | Path, *, seeds: Sequence[int] = (0, 1, 2), height: int = 128,
    epochs: int = 10, max_minutes: float = 0.0, batch_size: int = 4, n_boot: int = 1000, echo: bool = True,
    only: Sequence[str] = (), cache_dir: str | Path | None = None, folds: int = 0,
) -> dict[str, Any]:
    """Run (or continue) every (variant, seed) of experiment ``name``; write and return its table.
    Preprocessed arrays are cached in ``cache_dir`` (default ``out/cache``). ``folds`` > 1:
    cross-validation (:func:`run_variant_cv`) in ``out/NAME-cvK``."""
    if folds == 1 or folds < 0:
        raise ValueError("--folds must be 0 (the manifest's splits) or at least 2")
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    rows, root = load_manifest(manifest)
    lesion_file = lesions_path_for(manifest)
    lesions = read_lesions(lesion_file) if lesion_file.is_file() else None
    if not any(r.split == "train" for r in rows):
        raise ValueError(f"{manifest}: no row in split 'train' (the experiment needs train / tuning / validation)")
    folder = experiment_folder(out, name, folds)
    cache = Path(cache_dir) if cache_dir else Path(out) / "cache"
    table: dict[str, Any] = {
        "experiment": name,
        "settings": {"height": height, "epochs": epochs, "max_minutes": max_minutes, "seeds": list(seeds),
                     "batch_size": batch_size, "bootstrap": n_boot, "manifest": str(manifest), "folds": folds},
        "variants": [],
    }
    everything: list[list[dict[str, Any]]] = []  # per variant, its runs with their out-of-fold predictions
    for variant in EXPERIMENTS[name]:
        results, missing = [], []
        for seed in seeds:
            if "seg" in variant.tasks and lesions is None:  # no outlines beside this manifest
                missing.append(seed)
                continue
            if only and variant.folder not in only:
                done = folder / variant.folder / f"seed-{seed}" / "result.json"
                if done.is_file():
                    results.append(json.loads(done.read_text(encoding="utf-8")))
                else:
                    missing.append(seed)
                continue
            kwargs: dict[str, Any] = {"height": height, "epochs": epochs, "max_minutes": max_minutes,
                                      "batch_size": batch_size, "n_boot": n_boot, "cache_dir": cache,
                                      "echo": echo, "lesions": lesions}
            where = folder / variant.folder / f"seed-{seed}"
            if folds:
                results.append(run_variant_cv(variant, seed, rows, root, where, folds=folds, **kwargs))
            else:
                results.append(run_variant(variant, seed, rows, root, where, **kwargs))
        everything.append(results)
        table["variants"].append({"variant": variant.name, "tasks": list(variant.tasks),
                                  "multi_level": variant.multi_level, "drop_malignancy": variant.drop_malignancy,
                                  "summary": summarise(results), "missing_seeds": missing,
                                  "runs": [{k: v for k, v in r.items() if k != "oof"} for r in results]})
    if folds and everything and everything[0]:
        first = {r["seed"]: r for r in everything[0]}
        for row, results in zip(table["variants"][1:], everything[1:], strict=True):
            row["vs_first"] = [d for r in results if r["seed"] in first
                               and (d := paired_difference(rows, r, first[r["seed"]], n_boot, r["seed"]))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    (folder / "table.md").write_text(markdown_table(name, table), encoding="utf-8")
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(EXPERIMENTS), help="tasks (Table 4), fusion, missing (Table 5)")
    parser.add_argument("--manifest", required=True, type=Path, help="label manifest with train/tuning/validation")
    parser.add_argument("--out", type=Path, default=Path("experiments"), help="folder of the runs and tables")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-minutes", type=float, default=0.0, help="time budget per run (0: none)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..K-1 per variant (default 3)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--only", default="", help="comma-separated variant folders to run now (others: as done)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--cache", type=Path, default=None, help="cache of preprocessed arrays (default: OUT/cache)")
    parser.add_argument(
        "--folds", type=int, default=0,
        help="cross-validate over the train and tuning women in K folds (validation untouched; OUT/NAME-cvK)",
    )


def run(args: argparse.Namespace) -> int:
    if args.epochs < 1 or args.seeds < 1 or args.height <= 0 or args.height % 64:
        raise ValueError("--epochs and --seeds must be at least 1, --height a positive multiple of 64")
    if args.threads:
        torch.set_num_threads(args.threads)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    table = run_experiment(
        args.name, args.manifest, args.out, seeds=tuple(range(args.seeds)), height=args.height, epochs=args.epochs,
        max_minutes=args.max_minutes, batch_size=args.batch_size, n_boot=args.bootstrap, only=only,
        cache_dir=args.cache, folds=args.folds,
    )
    print(markdown_table(args.name, table))
    print(f"wrote {experiment_folder(args.out, args.name, args.folds) / 'table.md'} and table.json")
    return 0
