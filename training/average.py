"""Weight averaging: one network whose weights are the mean of several.

Two uses, both of one forward pass at run time (unlike an ensemble):

- within a run (``train --average-from E``): the mean of the weights after each epoch from E on
  (stochastic weight averaging, Izmailov et al. 2018), kept as ``average.pt`` beside ``best.pt``.
  With a tuning split of a few dozen malignant images the tuning AUC moves by several points from
  epoch to epoch, so the best epoch is partly luck; the average is not chosen by that noise;
- across runs (``python -m training average A.pt B.pt ... --out soup.pt``): the mean of runs
  fine-tuned from the same weights ("model soup", Wortsman et al. 2022).

The network has instance norm only (no running statistics), so averaged weights need no
re-estimation pass. Integer tensors (none today) would be taken from the first network.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from inference.errors import ModelError
from training.model import MammoNet
from training.onnx.checkpoint import load_checkpoint, save_checkpoint
from training.onnx.source import load_checkpoint_or_onnx

__all__ = ["RunningAverage", "average_models", "add_arguments", "run"]


class RunningAverage:
    """The running mean of a network's weights over the epochs given to :meth:`update`."""

    def __init__(self, state: dict[str, torch.Tensor] | None = None, epochs: Sequence[int] = ()) -> None:
        self.state = state
        self.epochs: list[int] = list(epochs)

    def update(self, model: torch.nn.Module, epoch: int) -> bool:
        """Add ``model``'s weights as of ``epoch``; an epoch already in the mean is not added twice
        (a run resumed after ``average.pt`` was written but before ``last.pt`` repeats an epoch)."""
        if epoch in self.epochs:
            return False
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if self.state is None:
            self.state = weights
        else:
            n = len(self.epochs)
            for k, v in weights.items():
                if v.is_floating_point():
                    self.state[k].mul_(n / (n + 1)).add_(v, alpha=1 / (n + 1))
        self.epochs.append(epoch)
        return True

    def model(self, like: MammoNet) -> MammoNet:
        """A network of ``like``'s configuration holding the averaged weights."""
        if self.state is None:
            raise ValueError("no epoch has been averaged yet")
        net = MammoNet(like.config)
        net.load_state_dict(self.state, strict=True)
        net.eval()
        return net

    def save(self, path: str | Path, averaged: MammoNet, extra: dict[str, Any]) -> None:
        """Write ``averaged`` (the network :meth:`model` built) as a checkpoint with the epochs it averages."""
        save_checkpoint(
            path, averaged, epoch=max(self.epochs), extra={**extra, "averaged_epochs": list(self.epochs)}
        )

    @classmethod
    def load(cls, path: str | Path) -> RunningAverage:
        ckpt = load_checkpoint(path)
        epochs = ckpt.extra.get("averaged_epochs")
        if not isinstance(epochs, list) or not epochs:
            raise ModelError("not a running average (no averaged_epochs)", path)
        return cls({k: v.clone() for k, v in ckpt.state_dict.items()}, [int(e) for e in epochs])


def average_models(sources: Sequence[str | Path]) -> tuple[MammoNet, dict[str, Any]]:
    """The uniform mean of checkpoints or ``.onnx`` models of one architecture; the first's extras."""
    if not sources:
        raise ValueError("nothing to average")
    first, extra = load_checkpoint_or_onnx(sources[0])
    mean = RunningAverage()
    mean.update(first, 0)
    for i, src in enumerate(sources[1:], start=1):
        net, _ = load_checkpoint_or_onnx(src)
        if net.config != first.config:
            raise ModelError(f"another architecture than {sources[0]} (tasks, levels or heads differ)", src)
        mean.update(net, i)
    return mean.model(first), extra


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", type=Path, help="checkpoints (.pt) or .onnx models, same network")
    parser.add_argument("--out", required=True, type=Path, help="the averaged checkpoint (.pt)")


def run(args: argparse.Namespace) -> int:
    model, extra = average_models(args.sources)
    extra = {k: v for k, v in extra.items() if k in ("height", "train_config", "version")}
    extra["averaged_from"] = [str(s) for s in args.sources]
    save_checkpoint(args.out, model, epoch=0, extra=extra)
    print(f"wrote {args.out}: the mean of {len(args.sources)} networks")
    return 0
