"""``python -m training export-onnx``: a checkpoint, an ``.onnx`` or a random network -> a verified
``.onnx`` + manifest + card (:func:`training.onnx.export.export_onnx`).

Not to be confused with the app's label export (``inference.labels.exchange``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from training.model import ModelConfig, build_model
from training.onnx.export import export_onnx
from training.onnx.source import load_checkpoint_or_onnx

__all__ = ["RANDOM_VERSION", "add_arguments", "run"]

RANDOM_VERSION = "0.0.0-random"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m training export-onnx``."""
    parser.add_argument("--out", required=True, type=Path, help="DIR/NAME.onnx; NAME.json is written beside it")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a training checkpoint (.pt) or an exported .onnx")
    src.add_argument("--random", action="store_true", help="a randomly initialised, untrained network")
    parser.add_argument("--height", type=int, help="input height (multiple of 64; default: the checkpoint's, else 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation (--random)")
    parser.add_argument("--name", help="model name (default: NAME of --out)")
    parser.add_argument(
        "--version", help=f"model version (default: {RANDOM_VERSION} with --random, else the checkpoint's)"
    )
    parser.add_argument(
        "--card", help="notes for the model card NAME.md (default: the checkpoint's, or an 'untrained' note)"
    )
    parser.add_argument(
        "--metrics", type=Path,
        help="JSON file with 'metrics' and/or 'operating_points' objects (e.g. from `evaluate`)",
    )
    parser.add_argument("--training-data", action="append", default=None, metavar="TEXT",
                        help="a training data description (repeatable; default: the checkpoint's)")


def _random_card(seed: int) -> str:
    return (
        f"UNTRAINED: randomly initialised weights (seed {seed}). Its predictions, latent vectors and maps "
        "carry no information; it only lets the runtime and the app run until a trained model is "
        "bundled. Research use only, not for diagnosis."
    )


def run(args: argparse.Namespace) -> int:
    """Body of ``python -m training export-onnx``."""
    extra: dict[str, Any] = {}
    if args.random:
        model = build_model(ModelConfig(), seed=args.seed)
        extra = {"version": RANDOM_VERSION, "card": _random_card(args.seed), "training_data": []}
    else:
        model, extra = load_checkpoint_or_onnx(args.checkpoint)
    metrics = dict(extra.get("metrics", {}))
    points = dict(extra.get("operating_points", {}))
    if args.metrics is not None:
        loaded = json.loads(args.metrics.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict) or not {"metrics", "operating_points"} & set(loaded):
            raise ValueError(f"{args.metrics}: expected a JSON object with 'metrics' and/or 'operating_points'")
        metrics = dict(loaded.get("metrics", metrics))
        points = dict(loaded.get("operating_points", points))
    height = args.height or int(extra.get("height", 512))
    result = export_onnx(
        model,
        args.out,
        height=height,
        version=args.version or str(extra.get("version", "0.1.0")),
        name=args.name,
        training_data=args.training_data if args.training_data is not None else list(extra.get("training_data", [])),
        metrics=metrics,
        operating_points=points,
        card=args.card if args.card is not None else str(extra.get("card", "")),
    )
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {result.onnx_path} ({result.size_bytes / 1e6:.2f} MB, {params} parameters, height {height})")
    print(f"wrote {result.manifest_path} and {result.card_path.name}")
    for name, diff in result.max_abs_diff.items():
        print(f"  max |onnxruntime - torch| {name:15s} {diff:.3g}")
    return 0
