"""The paper's loss, equations (1)-(3): reconstruction MSE plus uncertainty-weighted cross-entropy.

For each classification task ``t`` and image ``i`` the label has a weight ``w_ti = 0`` when the
label is missing and ``1 - u_ti`` otherwise (``u`` the label's uncertainty in [0, 1]). The task
loss is the batch mean of the weighted cross-entropies,

    L_t = (1 / N) * sum_i w_ti * c_t[y_ti] * CE(p_ti, y_ti)

where ``c_t`` are optional per-class weights (the paper's x20 for ACR 4-5 when fine-tuning).

Normalisation: we divide by the batch size ``N``, not by ``sum_i w_ti``. Dividing by the weight sum
would give a single low-confidence label in a batch the same pull as a full batch of certain ones,
undoing the down-weighting the uncertainty is meant to do; with ``1 / N`` a label at ``u = 0.5``
always counts half as much as a certain one, and a task whose labels are mostly missing pulls
proportionally less. The total is ``lambda_rec * MSE + sum_t lambda_t * L_t (+ lambda_seg * L_seg)``.

Lesion segmentation applies the same missing-label weighting per pixel: each cell ``j`` of image
``i``'s ``H/4`` grid has a target ``y_ij`` in [0, 1] (the lesion's share of the cell) and a weight
``w_ij`` (0 where the image says nothing, ``1 - u`` otherwise; training/lesions.py). The term is

    L_seg = (1 / N) * sum_i [ mean_j w_ij BCE(p_ij, y_ij) + D_i ]

with ``D_i`` the weighted soft Dice loss ``1 - (2 sum_j w p y + 1) / (sum_j w p + sum_j w y + 1)``
of images that hold any lesion (0 for the others): lesions cover a few per cent of a mammogram,
and the BCE alone would be content with an empty map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from inference.formats import TASK_CLASSES

__all__ = [
    "TaskTargets",
    "LesionTargets",
    "LossConfig",
    "weighted_cross_entropy",
    "reconstruction_loss",
    "lesion_loss",
    "multitask_loss",
]


@dataclass(frozen=True)
class TaskTargets:
    """A batch of one task's labels: class indices (any value where missing) and weights ``w``."""

    index: Tensor  # int64 [N]
    weight: Tensor  # float32 [N]; 0 = missing, else 1 - u


@dataclass(frozen=True)
class LesionTargets:
    """A batch of lesion targets on the lesion grid: share of lesion per cell and per-cell weights."""

    target: Tensor  # float32 [N, 1, h, w] in [0, 1]
    weight: Tensor  # float32 [N, 1, h, w]; 0 = nothing known, else 1 - u


@dataclass(frozen=True)
class LossConfig:
    """Task multipliers and optional per-class weights (task -> one weight per class)."""

    reconstruction: float = 1.0
    segmentation: float = 1.0
    tasks: Mapping[str, float] = field(default_factory=dict)  # task -> lambda (default 1)
    class_weights: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for task, cw in self.class_weights.items():
            if task not in TASK_CLASSES:
                raise ValueError(f"class weights for unknown task {task!r}")
            if len(cw) != len(TASK_CLASSES[task]):
                raise ValueError(f"{task}: {len(cw)} class weights for {len(TASK_CLASSES[task])} classes")
            if any(c < 0 for c in cw):
                raise ValueError(f"{task}: class weights must be non-negative")


def weighted_cross_entropy(logits: Tensor, targets: TaskTargets, class_weights: Tensor | None = None) -> Tensor:
    """``(1/N) sum_i w_i c[y_i] CE_i``; rows with ``w_i = 0`` send no gradient at all."""
    n = logits.shape[0]
    if n == 0:
        return logits.sum() * 0.0
    weight = targets.weight.to(logits.dtype)
    index = torch.where(weight > 0, targets.index, torch.zeros_like(targets.index))
    ce = F.cross_entropy(logits, index, reduction="none")
    if class_weights is not None:
        weight = weight * class_weights.to(logits.dtype)[index]
    # where() rather than a product so a missing label's (possibly non-finite) term cannot leak
    return torch.where(weight > 0, weight * ce, torch.zeros_like(ce)).sum() / n


def reconstruction_loss(reconstruction: Tensor, image: Tensor) -> Tensor:
    """Mean squared error between the reconstruction and the (augmented) input."""
    return F.mse_loss(reconstruction, image)


def lesion_loss(logits: Tensor, targets: LesionTargets) -> Tensor:
    """``(1/N) sum_i [mean_j w_ij BCE_ij + D_i]`` (module docstring); cells of weight 0 send no gradient."""
    n = logits.shape[0]
    if n == 0:
        return logits.sum() * 0.0
    if logits.shape != targets.target.shape or logits.shape != targets.weight.shape:
        raise ValueError(
            f"lesion logits {tuple(logits.shape)} and targets {tuple(targets.target.shape)} / "
            f"weights {tuple(targets.weight.shape)} differ in shape"
        )
    w = targets.weight.to(logits.dtype)
    y = targets.target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    bce = torch.where(w > 0, w * bce, torch.zeros_like(bce)).mean(dim=(1, 2, 3))
    p = torch.sigmoid(logits)
    wy = (w * y).sum(dim=(1, 2, 3))
    inter = (w * p * y).sum(dim=(1, 2, 3))
    dice = 1.0 - (2.0 * inter + 1.0) / ((w * p).sum(dim=(1, 2, 3)) + wy + 1.0)
    dice = torch.where(wy > 0, dice, torch.zeros_like(dice))
    return (bce + dice).sum() / n


def multitask_loss(
    outputs: Mapping[str, Tensor],
    image: Tensor,
    targets: Mapping[str, TaskTargets],
    config: LossConfig | None = None,
    lesion: LesionTargets | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The total loss and each term's value (for logging) over the tasks the model outputs
    (the lesion term when the model outputs ``lesion`` and ``lesion`` targets are given)."""
    config = config or LossConfig()
    total = image.new_zeros(())
    parts: dict[str, float] = {}
    if "reconstruction" in outputs and config.reconstruction > 0:
        rec = reconstruction_loss(outputs["reconstruction"], image)
        total = total + config.reconstruction * rec
        parts["recon"] = float(rec.detach())
    for task in TASK_CLASSES:
        if task not in outputs or task not in targets:
            continue
        cw = config.class_weights.get(task)
        cw_t = None if cw is None else torch.tensor(cw, dtype=outputs[task].dtype)
        term = weighted_cross_entropy(outputs[task], targets[task], cw_t)
        total = total + float(config.tasks.get(task, 1.0)) * term
        parts[task] = float(term.detach())
    if "lesion" in outputs and config.segmentation > 0:
        # a batch where no image says anything about lesions: weight 0 everywhere, the term is 0
        seg = lesion_loss(outputs["lesion"], lesion) if lesion is not None else None
        if seg is not None:
            total = total + config.segmentation * seg
        parts["seg"] = 0.0 if seg is None else float(seg.detach())
    parts["total"] = float(total.detach())
    return total, parts
