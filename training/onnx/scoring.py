"""A model's scoring graph: the same network cut after the task heads and ``z``.

ONNX Runtime runs a whole graph whichever outputs a caller asks for, so a caller that wants the tasks
and ``z`` only (``python -m inference predict`` without ``--maps``, the cluster engine) would still
pay for the decoder, the reconstruction and the maps: about half of the forward pass. The scoring
graph (``model.scoring.onnx`` beside ``model.onnx``, :func:`inference.formats.scoring_path_for`) is
the subgraph that computes those outputs, with the same nodes and weights; it is checked against the
whole graph here (identical outputs) and at load by its SHA-256 in the manifest's ``scoring``.

:func:`export_onnx <training.onnx.export.export_onnx>` writes it with every model;
``python -m training scoring-graph MODEL.onnx`` adds it to a model exported before (its manifest
gains ``scoring``, nothing else changes).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx.utils import Extractor

from inference.errors import ModelError
from inference.formats import (
    SCORING_OUTPUTS,
    file_sha256,
    read_model_manifest,
    scoring_path_for,
    write_model_manifest,
)
from training.model import SIZE_MULTIPLE

__all__ = ["write_scoring_graph", "add_scoring_graph", "add_arguments", "run"]

#: Largest |scoring graph - whole graph| accepted: the same operators on the same inputs.
SCORING_TOLERANCE = 1e-6


def _compare(whole: Path, part: Path, outputs: list[str], height: int) -> float:
    """Max |part - whole| over the ``outputs`` for two random batches of different widths."""
    a = ort.InferenceSession(str(whole), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(part), providers=["CPUExecutionProvider"])
    name = a.get_inputs()[0].name
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, width in ((2, 3 * SIZE_MULTIPLE), (1, 5 * SIZE_MULTIPLE)):
        x = rng.random((batch, 1, height, width), dtype=np.float32)
        for p, q in zip(a.run(outputs, {name: x}), b.run(outputs, {name: x}), strict=True):
            worst = max(worst, float(np.max(np.abs(np.asarray(p) - np.asarray(q)))))
    return worst


def write_scoring_graph(model_path: str | Path, height: int) -> dict[str, Any]:
    """Write the scoring graph of ``model_path`` beside it, checked against the whole graph on random
    inputs of ``height`` rows; returns the manifest's ``scoring`` entry (its SHA-256 and outputs)."""
    model_path = Path(model_path)
    proto = onnx.load(str(model_path))
    have = [o.name for o in proto.graph.output]
    outputs = [n for n in SCORING_OUTPUTS if n in have]
    if not outputs:
        raise ModelError("the model has none of the outputs a scoring graph keeps", model_path)
    part = Extractor(proto).extract_model([i.name for i in proto.graph.input], outputs)
    part.doc_string = proto.doc_string + " Scoring graph: the tasks and z, without the decoder."
    for prop in proto.metadata_props:
        part.metadata_props.add(key=prop.key, value=prop.value)
    onnx.checker.check_model(part, full_check=True)
    target = scoring_path_for(model_path)
    partial = target.with_name(target.name + ".partial")
    try:
        onnx.save(part, str(partial))
        diff = _compare(model_path, partial, outputs, height)
        if not diff <= SCORING_TOLERANCE:
            raise ModelError(f"the scoring graph differs from the whole graph by {diff:.3g}", model_path)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return {"sha256": file_sha256(target), "outputs": outputs}


def add_scoring_graph(model_path: str | Path) -> Path:
    """Write the scoring graph of an exported model and record it in the model's manifest; returns
    the scoring graph's path."""
    model_path = Path(model_path)
    manifest = read_model_manifest(model_path)
    scoring = write_scoring_graph(model_path, manifest.input_height)
    # The manifest's own fields are left as they are: only ``scoring`` is added (or replaced).
    write_model_manifest(model_path, dataclasses.replace(manifest, scoring=scoring))
    return scoring_path_for(model_path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the model's .onnx (its manifest .json beside it gains 'scoring')")


def run(args: argparse.Namespace) -> int:
    path = add_scoring_graph(args.model)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and its entry in {Path(args.model).with_suffix('.json')}")
    return 0
