"""``python -m training evaluate``: score an exported model (ONNX Runtime) on a manifest split.

Runs the model through :class:`inference.model.session.ModelSession` on the arrays the runtime makes
(``load_image`` + ``preprocess``), then reports, with 95 % bootstrap intervals (resampling women):

- malignancy: AUC image-wise and breast-wise (max over the breast's views), MCC, sensitivity and
  specificity at 0.5 and at the 95 %-sensitivity threshold set on the tuning split, ECE and a
  reliability curve (PNG); view: AUC; density and ACR: class-balanced accuracy and MCC;
- malignancy and view AUC stratified by data source, density label and view;
- when the manifest carries a ``calibration`` (``python -m training calibrate``): every metric on the
  calibrated probabilities, as the app shows them, and each calibrated task's ECE before and after.

The 95 %-sensitivity threshold is set only when the tuning split is large enough
(:data:`training.metrics.MIN_TUNING_IMAGES`, :data:`training.metrics.MIN_TUNING_PER_CLASS`).

Writes ``evaluation.json``, ``evaluation.txt`` (the table) and ``calibration.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from inference.formats import TASK_CLASSES, LabelRow
from inference.model.calibration import calibrate_outputs
from inference.model.session import ModelSession
from training.data import ImageDataset, load_manifest, plan_batches
from training.metrics import (
    Interval,
    auc,
    balanced_accuracy,
    bootstrap,
    ece_if_calibrated,
    expected_calibration_error,
    mcc,
    reliability_curve,
    sensitivity_specificity,
    threshold_for_sensitivity,
    too_few_for_operating_points,
    top_label_ece,
)

__all__ = [
    "Predictions",
    "predict_rows",
    "evaluate_predictions",
    "format_table",
    "calibration_png",
    "add_arguments",
    "run",
]


@dataclass(frozen=True)
class Predictions:
    """Class probabilities per task for a list of rows (rows whose image failed are dropped)."""

    rows: tuple[LabelRow, ...]
    probs: dict[str, np.ndarray]
    failed: tuple[tuple[str, str], ...] = ()


def predict_rows(
    session: ModelSession,
    rows: Sequence[LabelRow],
    root: str | Path,
    cache_dir: str | Path | None = None,
    batch_size: int = 4,
    calibrated: bool = True,
) -> Predictions:
    """Run the session on every row's image (batches of one width, as the runtime does; the tasks only,
    so the model's scoring graph runs); ``calibrated=False``: the graph's probabilities before the
    manifest's temperature scaling."""
    ds = ImageDataset(rows, session.height, root, cache_dir)
    failed = ds.prepare()
    bad = {i for i, _ in failed}
    ds = ds.subset(i for i in range(len(ds)) if i not in bad)
    tasks = [t for t in TASK_CLASSES if t in session.manifest.tasks]
    probs = {t: np.zeros((len(ds), len(TASK_CLASSES[t])), np.float32) for t in tasks}
    for idx in plan_batches([ds.width(i) for i in range(len(ds))], batch_size):
        out = session.run(np.stack([ds.array(i) for i in idx])[:, None], calibrated=calibrated, outputs=tasks)
        for t in tasks:
            probs[t][idx] = out[t]
    return Predictions(tuple(ds.rows), probs, tuple((rows[i].image, r) for i, r in failed))


def _labelled(rows: Sequence[LabelRow], task: str, keep: Sequence[int] | None = None) -> tuple[list[int], np.ndarray]:
    idx = [i for i in (range(len(rows)) if keep is None else keep) if rows[i].label(task).value is not None]
    return idx, np.array([rows[i].index(task) for i in idx], dtype=np.int64)


def _group(rows: Sequence[LabelRow], idx: Sequence[int]) -> list[str]:
    return [rows[i].patient or rows[i].key for i in idx]


def _binary_block(
    rows: Sequence[LabelRow], p: np.ndarray, idx: list[int], y: np.ndarray, n_boot: int
) -> dict[str, Any]:
    return {"auc": bootstrap(auc, y, p[idx], n_boot, groups=_group(rows, idx)).to_json()}


def _at_threshold(which: int, threshold: float) -> Callable[[np.ndarray, np.ndarray], float]:
    """Sensitivity (``which`` 0) or specificity (1) at a fixed threshold, as a bootstrap metric."""

    def metric(y: np.ndarray, score: np.ndarray) -> float:
        return sensitivity_specificity(y, score, threshold)[which]

    return metric


def _breastwise(
    rows: Sequence[LabelRow], p_mal: np.ndarray, idx: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per breast (patient + side) with a malignancy label: label = max over its labelled views,
    score = max of p over ALL its views (an unlabelled view of a labelled breast still counts)."""
    def breast(r: LabelRow) -> str:
        return f"{r.patient or r.key}|{r.laterality}"

    labelled: dict[str, int] = {}
    for i in idx:
        b = breast(rows[i])
        labelled[b] = max(labelled.get(b, 0), rows[i].index("malignancy") or 0)
    score: dict[str, float] = {}
    for i, r in enumerate(rows):
        b = breast(r)
        if b in labelled:
            score[b] = max(score.get(b, 0.0), float(p_mal[i]))
    keys = list(labelled)
    return (np.array([labelled[k] for k in keys], np.int64), np.array([score[k] for k in keys], np.float64),
            [k.split("|")[0] for k in keys])


def evaluate_predictions(
    pred: Predictions, threshold_95: float = float("nan"), n_boot: int = 1000
) -> dict[str, Any]:
    """Every metric of the module docstring, as a JSON-ready dict."""
    rows, probs = list(pred.rows), pred.probs
    out: dict[str, Any] = {"n_images": len(rows)}
    if "malignancy" in probs:
        p = probs["malignancy"][:, 1].astype(np.float64)
        idx, y = _labelled(rows, "malignancy")
        groups = _group(rows, idx)
        s = p[idx]
        m: dict[str, Any] = {"auc": bootstrap(auc, y, s, n_boot, groups=groups).to_json()}
        by, bs, bg = _breastwise(rows, p, idx)
        m["auc_breast"] = bootstrap(auc, by, bs, n_boot, groups=bg).to_json()
        points = {"default": 0.5}
        if math.isfinite(threshold_95):
            points["sensitivity_95"] = threshold_95
        for name, t in points.items():
            sens, spec = sensitivity_specificity(y, s, t)
            pos = (s >= t).astype(np.int64)
            m[f"at_{name}"] = {
                "threshold": round(float(t), 6),
                "sensitivity": bootstrap(_at_threshold(0, t), y, s, n_boot, groups=groups).to_json(),
                "specificity": bootstrap(_at_threshold(1, t), y, s, n_boot, groups=groups).to_json(),
                "mcc": round(mcc(y, pos), 4) if y.size else None,
                "point": [
                    round(sens, 4) if math.isfinite(sens) else None,
                    round(spec, 4) if math.isfinite(spec) else None,
                ],
            }
        m["ece"] = bootstrap(expected_calibration_error, y, s, n_boot, groups=groups).to_json()
        mid, lo, hi = ece_if_calibrated(s)
        m["ece_if_calibrated"] = {"median": round(mid, 4), "range90": [round(lo, 4), round(hi, 4)]}
        mean_p, freq, count = reliability_curve(y, s)
        m["reliability"] = {
            "mean_predicted": [None if not np.isfinite(v) else round(float(v), 4) for v in mean_p],
            "observed": [None if not np.isfinite(v) else round(float(v), 4) for v in freq],
            "count": [int(c) for c in count],
        }
        out["malignancy"] = m
    if "view" in probs:
        idx, y = _labelled(rows, "view")
        out["view"] = _binary_block(rows, probs["view"][:, 1], idx, y, n_boot)
    for task in ("density", "acr"):
        if task in probs:
            idx, y = _labelled(rows, task)
            pred_c = probs[task].argmax(1)
            out[task] = {
                "balanced_accuracy": bootstrap(
                    balanced_accuracy, y, pred_c[idx], n_boot, groups=_group(rows, idx)
                ).to_json(),
                "mcc": round(mcc(y, pred_c[idx]), 4) if y.size else None,
                "n": int(y.size),
            }
    strata: dict[str, Any] = {}
    strata_keys: tuple[tuple[str, Callable[[LabelRow], str]], ...] = (
        ("source", lambda r: r.source or "?"),
        ("density", lambda r: r.label("density").value or "unknown"),
        ("view", lambda r: r.label("view").value or "unknown"),
    )
    for name, key in strata_keys:
        table: dict[str, Any] = {}
        for value in sorted({key(r) for r in rows}):
            keep = [i for i, r in enumerate(rows) if key(r) == value]
            cell: dict[str, Any] = {"n_images": len(keep)}
            for task in ("malignancy", "view"):
                if task in probs:
                    idx, y = _labelled(rows, task, keep)
                    if idx:
                        cell[f"{task}_auc"] = bootstrap(
                            auc, y, probs[task][idx, 1], n_boot, groups=_group(rows, idx)
                        ).to_json()
            for task in ("density",):
                if task in probs and name == "source":
                    idx, y = _labelled(rows, task, keep)
                    if idx:
                        cell["density_balanced_accuracy"] = bootstrap(
                            balanced_accuracy, y, probs[task].argmax(1)[idx], n_boot, groups=_group(rows, idx)
                        ).to_json()
            table[value] = cell
        strata[name] = table
    out["strata"] = strata
    return out


def _fmt(d: dict[str, Any] | None) -> str:
    if not d or d.get("value") is None:
        return "n/a"
    ci = d.get("ci95")
    return f"{d['value']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{d['value']:.3f}"


def format_table(result: dict[str, Any], title: str = "") -> str:
    """A readable text table of :func:`evaluate_predictions` output."""
    lines = [title] if title else []
    m = result.get("malignancy")
    if m:
        lines.append(
            f"malignancy AUC image-wise   {_fmt(m['auc'])}  (n={m['auc']['n']}, malignant={m['auc'].get('n_positive')})"
        )
        lines.append(f"malignancy AUC breast-wise  {_fmt(m['auc_breast'])}  (n={m['auc_breast']['n']})")
        for name in ("default", "sensitivity_95"):
            a = m.get(f"at_{name}")
            if a:
                lines.append(
                    f"  at {name} (t={a['threshold']:.4f}): sensitivity {_fmt(a['sensitivity'])}, "
                    f"specificity {_fmt(a['specificity'])}, MCC {a['mcc']}"
                )
        lines.append(f"malignancy ECE              {_fmt(m['ece'])}")
        ref = m.get("ece_if_calibrated")
        if ref and ref["median"] == ref["median"]:  # not NaN
            lines.append(
                f"  a perfectly calibrated model would show {ref['median']:.3f} "
                f"[{ref['range90'][0]:.3f}, {ref['range90'][1]:.3f}] on these images (90 %)"
            )
    for task, c in result.get("calibration", {}).items():
        lines.append(
            f"{task} ECE uncalibrated {c['ece_uncalibrated']} -> calibrated {c['ece_calibrated']} "
            f"(temperature {c['temperature']}, n={c['n']})"
        )
    pts = result.get("operating_points", {}).get("malignancy", {})
    if pts.get("not_set"):
        lines.append(f"no 95 %-sensitivity operating point: {pts['not_set']}")
    if "view" in result:
        lines.append(f"view AUC                    {_fmt(result['view']['auc'])}  (n={result['view']['auc']['n']})")
    for task in ("density", "acr"):
        if task in result:
            lines.append(
                f"{task} balanced accuracy   {_fmt(result[task]['balanced_accuracy'])}  "
                f"MCC {result[task]['mcc']} (n={result[task]['n']})"
            )
    for name, table in result.get("strata", {}).items():
        lines.append(f"by {name}:")
        for value, cell in table.items():
            parts = [f"{k} {_fmt(v)}" for k, v in cell.items() if isinstance(v, dict)]
            lines.append(f"  {value:14s} n={cell['n_images']:4d}  " + "; ".join(parts))
    return "\n".join(lines)


def calibration_png(result: dict[str, Any], path: str | Path, size: int = 360) -> Path:
    """A reliability diagram (observed frequency vs mean predicted probability per bin) drawn with Pillow."""
    rel = result["malignancy"]["reliability"]
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    m = 40
    span = size - 2 * m

    def xy(px: float, py: float) -> tuple[float, float]:
        return m + px * span, size - m - py * span

    d.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    d.line([xy(0, 0), xy(1, 1)], fill=(160, 160, 160), width=1)
    pts = [
        (mp, ob, c)
        for mp, ob, c in zip(rel["mean_predicted"], rel["observed"], rel["count"], strict=True)
        if mp is not None and ob is not None
    ]
    total = max(1, sum(c for *_, c in pts))
    for a, b in itertools.pairwise(pts):
        d.line([xy(a[0], a[1]), xy(b[0], b[1])], fill=(200, 40, 40), width=2)
    for mp, ob, c in pts:
        r = 2 + 10 * math.sqrt(c / total)
        x, y = xy(mp, ob)
        d.ellipse([x - r, y - r, x + r, y + r], outline=(200, 40, 40))
    d.text((m, 8), f"malignancy reliability, ECE {_fmt(result['malignancy']['ece'])}", fill="black")
    d.text((m, size - m + 8), "mean predicted P(malignant)", fill="black")
    d.text((4, m - 14), "observed", fill="black")
    img.save(path)
    return Path(path)


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="an exported model .onnx (manifest beside it)")
    parser.add_argument("--manifest", required=True, type=Path, help="label manifest CSV with a split column")
    parser.add_argument(
        "--split", default="validation", help="split to score (default validation; 'all' for every row)"
    )
    parser.add_argument(
        "--tuning-split", default="tuning", help="split on which the 95 %%-sensitivity threshold is set"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for evaluation.json/.txt and calibration.png")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder of preprocessed arrays")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--threads", type=int, default=None)


def evaluate_model(
    model: str | Path, manifest: str | Path, split: str = "validation", tuning_split: str = "tuning",
    cache_dir: str | Path | None = None, n_boot: int = 1000, threads: int | None = None,
) -> dict[str, Any]:
    """Score ``model`` on ``split`` with the 95 %-sensitivity threshold set on ``tuning_split``."""
    session = ModelSession.load(model, device="cpu", threads=threads)
    rows, root = load_manifest(manifest)
    target = rows if split == "all" else [r for r in rows if r.split == split]
    if not target:
        raise ValueError(f"{manifest}: no row in split {split!r}")
    t95 = float("nan")
    tuning_auc: dict[str, Any] | None = None
    not_set = ""
    tune = [r for r in rows if r.split == tuning_split] if tuning_split else []
    if tune and "malignancy" in session.manifest.tasks:
        tp = predict_rows(session, tune, root, cache_dir)
        idx, y = _labelled(list(tp.rows), "malignancy")
        not_set = too_few_for_operating_points(y)
        if not not_set:
            t95 = threshold_for_sensitivity(y, tp.probs["malignancy"][idx, 1], 0.95)
            tuning_auc = Interval(
                auc(y, tp.probs["malignancy"][idx, 1]), float("nan"), float("nan"), len(idx)
            ).to_json()
    raw = predict_rows(session, target, root, cache_dir, calibrated=False)
    pred = Predictions(raw.rows, calibrate_outputs(session.manifest, raw.probs), raw.failed)
    result = evaluate_predictions(pred, t95, n_boot)
    if session.manifest.calibration:
        result["calibration"] = calibration_effect(raw, pred, session.manifest.calibration)
    result["model"] = {"path": str(model), "version": session.version, "height": session.height}
    result["split"] = split
    points: dict[str, Any] = {"default": 0.5, "sensitivity_95": t95, "split": tuning_split}
    if not_set:
        points["sensitivity_95"] = None
        points["not_set"] = not_set
    result["operating_points"] = {"malignancy": points}
    result["tuning_malignancy_auc"] = tuning_auc
    result["failed"] = [list(f) for f in pred.failed]
    return result


def task_ece(task: str, y: np.ndarray, probs: np.ndarray) -> float:
    """Malignancy: the ECE of P(malignant); other tasks: the ECE of the top class."""
    return expected_calibration_error(y, probs[:, 1]) if task == "malignancy" else top_label_ece(y, probs)


def calibration_effect(raw: Predictions, calibrated: Predictions, calibration: dict[str, Any]) -> dict[str, Any]:
    """Per calibrated task: its temperature and the ECE on these rows before and after scaling."""
    out: dict[str, Any] = {}
    for task, entry in calibration.items():
        if task not in raw.probs:
            continue
        idx, y = _labelled(list(raw.rows), task)
        before = task_ece(task, y, raw.probs[task][idx]) if idx else float("nan")
        after = task_ece(task, y, calibrated.probs[task][idx]) if idx else float("nan")
        out[task] = {
            "temperature": entry.get("temperature"),
            "n": len(idx),
            "ece_uncalibrated": round(before, 4) if math.isfinite(before) else None,
            "ece_calibrated": round(after, 4) if math.isfinite(after) else None,
        }
    return out


def run(args: argparse.Namespace) -> int:
    result = evaluate_model(
        args.model, args.manifest, args.split, args.tuning_split, args.cache, args.bootstrap, args.threads
    )
    text = format_table(result, f"{args.model} on split '{args.split}' (95 % bootstrap intervals over women)")
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "evaluation.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        (args.out / "evaluation.txt").write_text(text + "\n", encoding="utf-8")
        if "malignancy" in result:
            calibration_png(result, args.out / "calibration.png")
        print(f"wrote {args.out / 'evaluation.json'}")
    return 0
