"""Training checkpoints: save and load the network with its config, epoch and optimizer state.

A checkpoint is ``torch.save`` of a dict::

    {"format": "mammo-review-checkpoint/1", "config": ModelConfig.to_dict(),
     "state_dict": ..., "epoch": int, "optimizer": state_dict or None, "extra": {...}}

``extra`` holds plain values (str, int, float, bool, lists, dicts) that ``export-onnx``
(:mod:`training.onnx.command`) reads when present: ``height``, ``version``, ``card``, ``training_data``, ``metrics``,
``operating_points``. Loading uses ``weights_only=True``: nothing in a checkpoint runs code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference.errors import ModelError
from training.model import MammoNet, ModelConfig

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "mammo-review-checkpoint/1"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint; :meth:`model` builds the network with its weights."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    epoch: int
    optimizer: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def model(self) -> MammoNet:
        net = MammoNet(self.config)
        net.load_state_dict(self.state_dict, strict=True)
        return net


def save_checkpoint(
    path: str | Path,
    model: MammoNet,
    *,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (a temporary file renamed over ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": int(epoch),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "extra": dict(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; :class:`ModelError` when it is not one."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelError("checkpoint not found", path) from exc
    except Exception as exc:  # torch raises pickle/zip/runtime errors for anything not a checkpoint
        raise ModelError(f"cannot read checkpoint ({type(exc).__name__}: {exc})", path) from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"not a mammo-review checkpoint (expected format {CHECKPOINT_FORMAT!r})", path)
    try:
        config = ModelConfig.from_dict(data["config"])
        ckpt = Checkpoint(
            config=config,
            state_dict=dict(data["state_dict"]),
            epoch=int(data["epoch"]),
            optimizer=data.get("optimizer"),
            extra=dict(data.get("extra") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"malformed checkpoint ({type(exc).__name__}: {exc})", path) from exc
    return ckpt
