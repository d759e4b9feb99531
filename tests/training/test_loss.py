"""The loss of equations (1)-(3): hand-computed values and where the gradient goes."""

from __future__ import annotations

import math

import pytest
import torch

from training.loss import LossConfig, TaskTargets, multitask_loss, weighted_cross_entropy
from training.model import ModelConfig, build_model


def _targets(index: list[int], weight: list[float]) -> TaskTargets:
    return TaskTargets(torch.tensor(index), torch.tensor(weight))


def test_weighted_cross_entropy_by_hand() -> None:
    # logits (0, 0) -> CE = ln 2 for either class; (ln 3, 0) -> p = (3/4, 1/4), CE of class 1 = ln 4
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]])
    t = _targets([0, 1, 1], [1.0, 0.5, 0.0])  # certain, u = 0.5, missing
    got = weighted_cross_entropy(logits, t)
    expected = (1.0 * math.log(2.0) + 0.5 * math.log(4.0) + 0.0) / 3
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_class_weights_multiply_the_label_class() -> None:
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    t = _targets([0, 1], [1.0, 1.0])
    got = weighted_cross_entropy(logits, t, torch.tensor([1.0, 20.0]))
    assert float(got) == pytest.approx((1.0 + 20.0) * math.log(2.0) / 2, rel=1e-6)


def test_all_missing_gives_zero_and_finite_gradient() -> None:
    logits = torch.tensor([[1e30, -1e30]], requires_grad=True)
    got = weighted_cross_entropy(logits, _targets([1], [0.0]))
    got.backward()
    assert float(got.detach()) == 0.0
    assert torch.all(logits.grad == 0)


def test_total_is_mse_plus_task_terms() -> None:
    image = torch.full((2, 1, 4, 4), 0.5)
    outputs = {
        "reconstruction": torch.zeros(2, 1, 4, 4),
        "view": torch.tensor([[0.0, 0.0], [0.0, 0.0]]),
    }
    total, parts = multitask_loss(
        outputs, image, {"view": _targets([0, 1], [1.0, 1.0])}, LossConfig(tasks={"view": 2.0})
    )
    assert parts["recon"] == pytest.approx(0.25)
    assert parts["view"] == pytest.approx(math.log(2.0))
    assert float(total) == pytest.approx(0.25 + 2.0 * math.log(2.0), rel=1e-6)


def test_masked_task_sends_no_gradient_to_its_head() -> None:
    model = build_model(ModelConfig(tasks=("malignancy", "density")), seed=0)
    model.eval()
    image = torch.rand(2, 1, 128, 128)
    out = model(image)
    targets = {"malignancy": _targets([0, 1], [0.0, 0.0]), "density": _targets([2, 3], [1.0, 0.7])}
    total, _ = multitask_loss(out, image, targets)
    total.backward()
    mal = model.heads["malignancy"]
    assert mal.weight.grad is None or torch.count_nonzero(mal.weight.grad) == 0
    assert mal.bias.grad is None or torch.count_nonzero(mal.bias.grad) == 0
    assert torch.count_nonzero(model.heads["density"].weight.grad) > 0


def test_bad_class_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="class weights"):
        LossConfig(class_weights={"acr": (1.0, 2.0)})
