"""Predictions of the model for loaded images: class probabilities, Monte-Carlo uncertainty, maps.

``predict(session, images)`` preprocesses each image (:func:`inference.model.preprocess.preprocess`), runs
images of the same padded width together, and returns one :class:`Prediction` per image. The
malignancy uncertainty is Monte-Carlo dropout on the latent ``z`` with the head weights from the
manifest (no second forward pass); the maps are kept in model space and drawn back on the original
pixels only when asked (:meth:`Prediction.evidence_original` ...). A model with the segmentation
task adds the ``lesion`` map (per-cell lesion probability on an ``H/4`` grid); models without it
(1.0.1) give ``None`` there. :meth:`Prediction.without_maps`
gives the :class:`PredictionSummary` that outlives the maps (summaries, review queue, latent space).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from inference.formats import SCORING_OUTPUTS, TASKS, ModelManifest
from inference.model.calibration import temperature
from inference.model.preprocess import Geometry, preprocess

if TYPE_CHECKING:
    from inference.imaging.decode import LoadedImage
    from inference.model.session import ModelSession

__all__ = [
    "MC_SAMPLES",
    "ERROR_SMOOTHING",
    "ModelInput",
    "Prediction",
    "PredictionSummary",
    "prepare",
    "predict",
    "predict_inputs",
    "mc_dropout",
    "mc_seed",
    "smooth_evidence",
]

#: Monte-Carlo dropout samples per image.
MC_SAMPLES = 64
#: Gaussian sigma (model pixels) that smooths the reconstruction-error map a little.
ERROR_SMOOTHING = 1.5
_CLASSIFIERS = TASKS


@dataclass(frozen=True, eq=False)
class ModelInput:
    """One preprocessed image, ready to batch: ``array`` is ``[H, W]`` float32 in [0, 1]."""

    key: str
    array: np.ndarray
    geometry: Geometry


@dataclass(frozen=True, eq=False)
class PredictionSummary:
    """What the model says about one image, without its maps: the numbers, ``z`` and the geometry.

    This is what the breast and exam summaries, the review queue and the latent space need; a full
    :class:`Prediction` is a summary with its model-space maps (:meth:`Prediction.without_maps`)."""

    key: str
    model_version: str
    probabilities: dict[str, tuple[float, ...]]  # task -> class probabilities, manifest class order
    p_malignant: float  # the model's malignancy output (dropout off); NaN when the model has none
    p_malignant_mc_mean: float  # mean over Monte-Carlo dropout samples
    p_malignant_std: float  # their standard deviation: the model's uncertainty
    z: np.ndarray  # (latent_dim,) float32
    geometry: Geometry


@dataclass(frozen=True, eq=False)
class Prediction(PredictionSummary):
    """A prediction with its model-space maps (see the ``*_original`` methods)."""

    model_input: np.ndarray  # [H, W] float32, what the network saw
    reconstruction: np.ndarray | None  # [H, W] float32 in [0, 1], None when the model has no decoder
    evidence: np.ndarray | None  # [H/16, W/16] contributions to logit(malignant) - logit(benign)
    lesion: np.ndarray | None = None  # [H/4, W/4] lesion probability in [0, 1]; None without the output

    def without_maps(self) -> PredictionSummary:
        """The numbers, ``z`` and geometry without the maps (about 1.6 MB less at height 512)."""
        return PredictionSummary(
            key=self.key,
            model_version=self.model_version,
            probabilities=self.probabilities,
            p_malignant=self.p_malignant,
            p_malignant_mc_mean=self.p_malignant_mc_mean,
            p_malignant_std=self.p_malignant_std,
            z=self.z,
            geometry=self.geometry,
        )

    def error_map(self) -> np.ndarray | None:
        """|input - reconstruction| in model space, smoothed a little, zero on the padding."""
        if self.reconstruction is None:
            return None
        err = np.abs(self.model_input - self.reconstruction)
        err = ndimage.gaussian_filter(err, ERROR_SMOOTHING, mode="nearest")
        err[:, self.geometry.content_shape[1] :] = 0.0
        out: np.ndarray = err.astype(np.float32, copy=False)
        return out

    def reconstruction_original(self) -> np.ndarray | None:
        """The reconstruction on the original image's pixel grid (0 outside the breast's box)."""
        return None if self.reconstruction is None else self.geometry.to_original(self.reconstruction)

    def error_map_original(self) -> np.ndarray | None:
        """The reconstruction-error map on the original image's pixel grid."""
        err = self.error_map()
        return None if err is None else self.geometry.to_original(err)

    def evidence_original(self, smooth: float = 0.0) -> np.ndarray | None:
        """The malignancy evidence map on the original pixel grid (bilinear from the ``H/16`` grid).

        ``smooth`` > 0 first blurs the grid with a Gaussian of that many cells (for display: the
        deepest level's contributions are spread evenly over 4 x 4 cells, which reads as blocks)."""
        return None if self.evidence is None else self.geometry.to_original(smooth_evidence(self.evidence, smooth))


    def lesion_original(self) -> np.ndarray | None:
        """The lesion probability on the original pixel grid (bilinear from the ``H/4`` grid; 0
        outside the breast's crop box), or None when the model has no segmentation output."""
        return None if self.lesion is None else self.geometry.to_original(self.lesion)


def smooth_evidence(evidence: np.ndarray, sigma: float) -> np.ndarray:
    """The evidence grid blurred by a Gaussian of ``sigma`` cells; its sum is kept inside the image."""
    if sigma <= 0:
        return evidence
    out: np.ndarray = ndimage.gaussian_filter(np.asarray(evidence, np.float32), sigma, mode="constant")
    return out


def mc_seed(key: str) -> int:
    """The Monte-Carlo seed of an image: derived from its key, so results repeat exactly."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")


def mc_dropout(
    z: np.ndarray, weight: np.ndarray, bias: np.ndarray, rate: float, samples: int = MC_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Mean and std of P(malignant) over ``samples`` inverted-dropout masks on ``z``.

    ``weight`` ``[2, D]`` and ``bias`` ``[2]`` are the malignancy head; masks keep each element
    with probability ``1 - rate`` and scale the kept ones by ``1 / (1 - rate)``.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate {rate} is outside [0, 1)")
    rng = np.random.default_rng(seed)
    keep = 1.0 - rate
    masks = (rng.random((samples, z.shape[-1])) < keep).astype(np.float32) / np.float32(keep)
    logits = (masks * z.astype(np.float32)[None, :]) @ weight.T + bias  # [T, 2]
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    p = e[:, 1] / e.sum(axis=1)
    return float(p.mean()), float(p.std())


def prepare(image: LoadedImage, height: int) -> ModelInput:
    """Preprocess a loaded image for a model of this input height (raises PreprocessError); training
    makes its arrays with this function too.

    The breast the decoder found (:attr:`~inference.imaging.decode.LoadedImage.breast`: on the modality
    values, not on a windowed display) is handed on: the image is cropped to it and flipped by it, and
    an image predicted by several models is searched for its breast once."""
    array, geometry = preprocess(image.pixels, height, mask=image.breast)
    return ModelInput(image.record.key, array, geometry)


def _batches(inputs: Sequence[ModelInput], batch_size: int) -> Iterable[list[int]]:
    """Indices of inputs grouped by padded width, at most ``batch_size`` per group, in first-seen order."""
    groups: dict[int, list[int]] = {}
    for i, item in enumerate(inputs):
        groups.setdefault(item.array.shape[1], []).append(i)
    for idx in groups.values():
        for s in range(0, len(idx), batch_size):
            yield idx[s : s + batch_size]


def _prediction(item: ModelInput, out: dict[str, np.ndarray], j: int, manifest: ModelManifest) -> Prediction:
    probabilities = {t: tuple(float(v) for v in out[t][j]) for t in _CLASSIFIERS if t in out}
    z = np.asarray(out["z"][j], np.float32) if "z" in out else np.zeros(0, np.float32)
    p_mal = probabilities["malignancy"][1] if "malignancy" in probabilities else float("nan")
    mc_mean, mc_std = float("nan"), float("nan")
    if "malignancy" in manifest.heads and z.size:
        weight, bias = manifest.head("malignancy")
        t = temperature(manifest, "malignancy")  # logits / T, as the runtime's calibrated outputs
        weight, bias = weight / np.float32(t), bias / np.float32(t)
        mc_mean, mc_std = mc_dropout(z, weight, bias, manifest.dropout, MC_SAMPLES, mc_seed(item.key))
    rec = out.get("reconstruction")
    ev = out.get("evidence")
    lesion = out.get("lesion")
    return Prediction(
        key=item.key,
        model_version=manifest.version,
        probabilities=probabilities,
        p_malignant=p_mal,
        p_malignant_mc_mean=mc_mean,
        p_malignant_std=mc_std,
        z=z,
        geometry=item.geometry,
        model_input=item.array,
        reconstruction=None if rec is None else np.array(rec[j, 0], np.float32),
        evidence=None if ev is None else np.array(ev[j, 0], np.float32),
        lesion=None if lesion is None else np.array(lesion[j, 0], np.float32),
    )


def predict_inputs(
    session: ModelSession,
    inputs: Sequence[ModelInput],
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    maps: bool = True,
) -> list[Prediction]:
    """Run preprocessed inputs; images of equal width share a batch (``batch_size`` None: the
    session's :attr:`~ModelSession.default_batch_size`). Order follows ``inputs``. ``maps`` False:
    the tasks and ``z`` only (no reconstruction, evidence or lesion map: the network's decoder is
    not run), for a caller that writes none of them."""
    if batch_size is None:
        batch_size = session.default_batch_size
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size} is not positive")
    results: list[Prediction | None] = [None] * len(inputs)
    done = 0
    for idx in _batches(inputs, batch_size):
        batch = np.stack([inputs[i].array for i in idx])[:, None]
        out = session.run(batch, outputs=None if maps else SCORING_OUTPUTS)
        for j, i in enumerate(idx):
            results[i] = _prediction(inputs[i], out, j, session.manifest)
        done += len(idx)
        if progress is not None:
            progress(done, len(inputs))
    return [r for r in results if r is not None]


def predict(session: ModelSession, images: Sequence[LoadedImage], batch_size: int | None = None) -> list[Prediction]:
    """Predictions for loaded images, in their order (raises PreprocessError for an image without a breast)."""
    return predict_inputs(session, [prepare(im, session.height) for im in images], batch_size)
