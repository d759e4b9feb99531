"""``python -m training calibrate``: fit temperature scaling on the tuning split, write it into the manifest.

For each classification task the model predicts (malignancy, acr, density, view) with enough
labelled tuning images, one temperature ``T`` is fitted by minimising the negative log-likelihood
of ``softmax(log p / T)`` (the graph's probabilities ``p``; see :mod:`inference.model.calibration`)
over ``log T``, bounded to :data:`inference.model.calibration.TEMPERATURE_RANGE`. The ranking of
images does not change (AUC stays), the probabilities do: the manifest's malignancy operating points
are set again on the calibrated tuning probabilities (0.5, and 95 % sensitivity when the split is
large enough, :func:`training.metrics.too_few_for_operating_points`).

The ONNX file is not touched (its ``onnx_sha256`` stays right); the new manifest gets a minor
version bump, the calibration and the operating points, and the card a "Calibration" section.
With ``--out DIR`` the model, manifest and card are written to DIR; without, the manifest and card
beside the model are rewritten.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from inference.formats import ModelManifest, read_model_manifest, write_model_manifest
from inference.model.calibration import TEMPERATURE_RANGE, apply_temperature
from inference.model.session import ModelSession
from training.data import load_manifest
from training.evaluate import _labelled, predict_rows, task_ece
from training.finetune import bump_version
from training.metrics import MIN_TUNING_IMAGES, threshold_for_sensitivity, too_few_for_operating_points

__all__ = ["fit_temperature", "nll", "calibrate", "add_arguments", "run"]

_TINY = 1e-30


def nll(probs: np.ndarray, y: np.ndarray, t: float) -> float:
    """Mean negative log-likelihood of class indices ``y`` under ``softmax(log(probs) / t)``."""
    logits = np.log(np.maximum(np.asarray(probs, np.float64), _TINY)) / t
    logits -= logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(logits).sum(axis=1))
    return float(np.mean(log_z - logits[np.arange(len(y)), y]))


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising :func:`nll` (bounded search over log T)."""
    y = np.asarray(y, np.int64)
    low, high = TEMPERATURE_RANGE
    res = minimize_scalar(
        lambda log_t: nll(probs, y, math.exp(log_t)), bounds=(math.log(low), math.log(high)), method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(res.x))


def _why_not(task: str, y: np.ndarray) -> str:
    if task == "malignancy":
        return too_few_for_operating_points(y)
    if y.size < MIN_TUNING_IMAGES or np.unique(y).size < 2:
        n_classes = np.unique(y).size
        return f"{y.size} labelled tuning image(s) in {n_classes} class(es); at least {MIN_TUNING_IMAGES} in 2"
    return ""


def _card_section(
    version: str, split: str, cal: dict[str, Any], skipped: dict[str, str], points: dict[str, Any]
) -> str:
    lines = [
        "",
        f"## Calibration ({version})",
        "",
        f"Temperature scaling fitted on the '{split}' split (the class probabilities become softmax(log p / T); "
        "the ranking of images, hence every AUC, is unchanged; ECE = expected calibration error, 10 bins, "
        "on the same split, so an optimistic figure: the validation figures are in the metrics).",
        "",
        "| task | T | n | ECE before | ECE after |",
        "|---|---|---|---|---|",
        *[
            f"| {t} | {c['temperature']:.3f} | {c['n']} | {c['ece_before']} | {c['ece_after']} |"
            for t, c in cal.items()
        ],
        *[f"- {t}: not calibrated ({why})." for t, why in skipped.items()],
        "",
        f"Malignancy operating points set again on the calibrated '{split}' probabilities: "
        + (f"0.5 and 95 % sensitivity at {points['sensitivity_95']:.4f}." if "sensitivity_95" in points
           else f"0.5 only ({points.get('not_set', 'no malignancy output')})."),
        "",
    ]
    return "\n".join(lines)


def calibrate(
    model: str | Path,
    manifest: str | Path,
    *,
    split: str = "tuning",
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """Fit, and write the calibrated manifest (and card); returns what was fitted and written."""
    model = Path(model)
    session = ModelSession.load(model, device="cpu", threads=threads)
    rows, root = load_manifest(manifest)
    target = [r for r in rows if r.split == split]
    if not target:
        raise ValueError(f"{manifest}: no row in split {split!r}")
    pred = predict_rows(session, target, root, cache_dir, calibrated=False)
    cal: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    calibrated: dict[str, np.ndarray] = {}
    for task in session.manifest.tasks:
        idx, y = _labelled(list(pred.rows), task)
        why = _why_not(task, y)
        if why:
            skipped[task] = why
            continue
        p = pred.probs[task][idx]
        t = fit_temperature(p, y)
        scaled = apply_temperature(p, t)
        before, after = round(task_ece(task, y, p), 4), round(task_ece(task, y, scaled), 4)
        if after >= before:  # the NLL optimum need not lower the ECE: then the model's own probabilities stay
            skipped[task] = f"T = {t:.3f} would not lower the {split} ECE ({before} -> {after})"
            continue
        calibrated[task] = scaled
        cal[task] = {
            "method": "temperature", "temperature": round(t, 4), "fitted_on": split, "n": len(idx),
            "ece_before": before, "ece_after": after,
        }
    if "malignancy" in session.manifest.tasks and "malignancy" not in calibrated and "malignancy" in pred.probs:
        idx, _ = _labelled(list(pred.rows), "malignancy")
        calibrated["malignancy"] = pred.probs["malignancy"][idx]  # operating points on the uncalibrated ones
    if not cal and all("would not lower" not in why for why in skipped.values()):
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise ValueError(f"nothing to calibrate on split {split!r}: {why}")
    points: dict[str, Any] = {"default": 0.5, "split": split}
    if "malignancy" in session.manifest.tasks:
        idx, y = _labelled(list(pred.rows), "malignancy")
        not_set = too_few_for_operating_points(y)
        if not_set:
            points["not_set"] = not_set
        else:
            probs = calibrated["malignancy"][:, 1]
            points["sensitivity_95"] = float(threshold_for_sensitivity(y, probs, 0.95))
    old: ModelManifest = session.manifest
    new_version = version or bump_version(old.version)
    new = dataclasses.replace(
        old, version=new_version, calibration=cal,
        operating_points={**old.operating_points, "malignancy": points},
    )
    folder = Path(out) if out is not None else model.parent
    folder.mkdir(parents=True, exist_ok=True)
    onnx_out = folder / model.name
    if onnx_out.resolve() != model.resolve():
        shutil.copyfile(model, onnx_out)
    manifest_out = write_model_manifest(onnx_out, new)
    card_out = None
    if old.card:
        card_in = model.parent / old.card
        text = card_in.read_text(encoding="utf-8") if card_in.is_file() else f"# Model card: {old.name}\n"
        text = text.replace(f"# Model card: {old.name} {old.version}", f"# Model card: {old.name} {new_version}", 1)
        card_out = folder / old.card
        card_out.write_text(text.rstrip("\n") + "\n" + _card_section(new_version, split, cal, skipped, points),
                            encoding="utf-8")
    read_model_manifest(manifest_out)  # what was written reads back
    return {"onnx": onnx_out, "manifest": manifest_out, "card": card_out, "version": new_version,
            "calibration": cal, "skipped": skipped, "operating_points": points}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="an exported model .onnx (manifest beside it)")
    parser.add_argument("--manifest", required=True, type=Path, help="label manifest CSV with a split column")
    parser.add_argument("--split", default="tuning", help="split to fit on (default tuning)")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="folder for the calibrated model (default: rewrite its manifest in place)",
    )
    parser.add_argument("--cache", type=Path, default=None, help="cache folder of preprocessed arrays")
    parser.add_argument("--version", default=None, help="version of the calibrated model (default: minor bump)")
    parser.add_argument("--threads", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    res = calibrate(
        args.model, args.manifest, split=args.split, out=args.out, cache_dir=args.cache, threads=args.threads,
        version=args.version,
    )
    for task, c in res["calibration"].items():
        print(f"{task:10s} T={c['temperature']:.3f}  ECE on {args.split} {c['ece_before']} -> {c['ece_after']}  "
              f"(n={c['n']})")
    for task, why in res["skipped"].items():
        print(f"{task:10s} not calibrated: {why}")
    pts = res["operating_points"]
    if "sensitivity_95" in pts:
        print(f"malignancy 95 %-sensitivity threshold on calibrated {args.split}: {pts['sensitivity_95']:.4f}")
    else:
        print(f"no 95 %-sensitivity operating point: {pts.get('not_set', 'no malignancy output')}")
    print(f"wrote {res['manifest']} (version {res['version']})")
    return 0
