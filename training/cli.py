"""``python -m training <command>``: one sub-command per module, dispatched from :data:`COMMANDS`.

A command module defines ``add_arguments(parser)`` and ``run(args) -> int`` (exit status).
Adding one is a two-line change here::

    from training import train
        "train": Command(train.add_arguments, train.run, "train the network from label manifests"),

Project errors (:class:`inference.errors.MammoReviewError`) and bad option values
(``ValueError``) are printed as ``error: ...`` with exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from inference.errors import MammoReviewError
from training import average, calibrate, evaluate, experiment, finetune, readers, train
from training.onnx import command as export_onnx
from training.onnx import scoring

__all__ = ["Command", "COMMANDS", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """A sub-command: how to declare its options, how to run it, one line of help."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    help: str


COMMANDS: Mapping[str, Command] = {
    "export-onnx": Command(export_onnx.add_arguments, export_onnx.run, "export a model to ONNX + manifest, verified"),
    "scoring-graph": Command(
        scoring.add_arguments, scoring.run, "add the scoring graph (tasks and z, no decoder) to an exported model"
    ),
    "train": Command(train.add_arguments, train.run, "train the network from a label manifest"),
    "manifest": Command(
        readers.add_arguments, readers.run, "write a label manifest (split by woman) from public data sets"
    ),
    "average": Command(average.add_arguments, average.run, "average the weights of several runs (model soup)"),
    "finetune": Command(finetune.add_arguments, finetune.run, "fine-tune a model on the app's label export"),
    "evaluate": Command(evaluate.add_arguments, evaluate.run, "score an exported model on a manifest split"),
    "calibrate": Command(
        calibrate.add_arguments, calibrate.run, "fit temperature scaling on the tuning split into the manifest"
    ),
    "experiment": Command(
        experiment.add_arguments, experiment.run, "run one of the paper's ablation tables (resumable)"
    ),
}


def build_parser(commands: Mapping[str, Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, fine-tune, evaluate and export the mammo-review network. Research use only.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in commands.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except (MammoReviewError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
