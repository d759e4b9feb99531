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
proportionally less. The total is ``lambda_rec * MSE + sum_t lambda_t * L_t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from inference.formats import TASK_CLASSES

__all__ = ["TaskTargets", "LossConfig", "weighted_cross_entropy", "reconstruction_loss", "multitask_loss"]


@dataclass(frozen=True)
class TaskTargets:
    """A batch of one task's labels: class indices (any value where missing) and weights ``w``."""

    index: Tensor  # int64 [N]
    weight: Tensor  # float32 [N]; 0 = missing, else 1 - u


@dataclass(frozen=True)
class LossConfig:
    """Task multipliers and optional per-class weights (task -> one weight per class)."""

    reconstruction: float = 1.0
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


def multitask_loss(
    outputs: Mapping[str, Tensor],
    image: Tensor,
    targets: Mapping[str, TaskTargets],
    config: LossConfig | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The total loss and each term's value (for logging) over the tasks the model outputs."""
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
    parts["total"] = float(total.detach())
    return total, parts
