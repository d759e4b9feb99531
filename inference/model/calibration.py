"""Temperature scaling of the model's class probabilities, as the manifest's ``calibration`` says.

The ONNX graph ends in a softmax, so its outputs are probabilities ``p = softmax(l)``. Temperature
scaling divides the logits by one scalar ``T`` per task (Guo et al. 2017): ``softmax(l / T)``.
Since ``log p = l - logsumexp(l)`` differs from ``l`` by a constant per image, ``softmax(log p / T)``
is the same thing, computed here from the probabilities. ``T > 1`` softens over-confident outputs;
the ranking (argmax, AUC) never changes.

The manifest entry (``training/calibrate.py`` writes it, fitted on the tuning split)::

    "calibration": {"malignancy": {"method": "temperature", "temperature": 1.8,
                                   "fitted_on": "tuning", "n": 73, "ece_before": 0.13, "ece_after": 0.04}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ManifestError
from inference.formats import ModelManifest

__all__ = ["TEMPERATURE_RANGE", "check_calibration", "temperature", "apply_temperature", "calibrate_outputs"]

#: Temperatures outside this range are refused at load: they would flatten every output to the
#: class prior or make every output 0 / 1, which no honest fit produces.
TEMPERATURE_RANGE: tuple[float, float] = (0.05, 20.0)
_TINY = 1e-30


def check_calibration(manifest: ModelManifest, source: str | Path | None = None) -> None:
    """Raise :class:`ManifestError` when the manifest's ``calibration`` cannot be applied."""
    cal = manifest.calibration
    if not isinstance(cal, Mapping):
        raise ManifestError(f"model {manifest.name!r}: 'calibration' is not an object", source)
    low, high = TEMPERATURE_RANGE
    for task, entry in cal.items():
        if task not in manifest.tasks:
            raise ManifestError(
                f"model {manifest.name!r}: calibration for {task!r}, which the model does not predict", source
            )
        if not isinstance(entry, Mapping) or entry.get("method") != "temperature":
            raise ManifestError(
                f"model {manifest.name!r}: calibration of {task!r} is not a temperature scaling", source
            )
        t = entry.get("temperature")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not low <= t <= high:
            raise ManifestError(
                f"model {manifest.name!r}: calibration temperature of {task!r} is {t!r}; expected a number in "
                f"[{low:g}, {high:g}]",
                source,
            )


def temperature(manifest: ModelManifest, task: str) -> float:
    """The task's temperature (1.0 when the manifest calibrates it not)."""
    entry: Any = manifest.calibration.get(task)
    return float(entry["temperature"]) if isinstance(entry, Mapping) else 1.0


def apply_temperature(probs: np.ndarray, t: float) -> np.ndarray:
    """``softmax(log(probs) / t)`` along the last axis, float32 (``t == 1`` returns ``probs`` unchanged)."""
    p = np.asarray(probs)
    if t == 1.0:
        return p
    logits = np.log(np.maximum(p.astype(np.float64), _TINY)) / t
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    out: np.ndarray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return out


def calibrate_outputs(manifest: ModelManifest, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The session's outputs with each calibrated task's probabilities temperature-scaled."""
    return {k: apply_temperature(v, temperature(manifest, k)) if k in manifest.calibration else v
            for k, v in outputs.items()}
