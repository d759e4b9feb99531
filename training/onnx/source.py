"""A torch model from either kind of saved model: a training checkpoint or an exported ``.onnx``.

Used to warm-start, fine-tune and re-export. Sits above :mod:`training.onnx.checkpoint` and
:mod:`training.onnx.weights`, which know nothing of each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inference.errors import ModelError
from inference.formats import manifest_path_for, read_model_manifest
from training.model import MammoNet
from training.onnx.checkpoint import load_checkpoint
from training.onnx.layout import META_HEIGHT
from training.onnx.weights import model_from_onnx, read_onnx_metadata

__all__ = ["load_checkpoint_or_onnx"]


def load_checkpoint_or_onnx(path: str | Path) -> tuple[MammoNet, dict[str, Any]]:
    """A model and the plain values an export reads (the checkpoint's ``extra``; for an ``.onnx``
    its input height and, when its manifest lies beside it, version, training data, metrics and
    operating points, so that a re-export keeps what the manifest says of the weights)."""
    path = Path(path)
    if path.suffix == ".onnx":
        meta = read_onnx_metadata(path)
        extra: dict[str, Any] = {}
        if META_HEIGHT in meta:
            extra["height"] = int(meta[META_HEIGHT])
        manifest_file = manifest_path_for(path)
        if manifest_file.exists():
            manifest = read_model_manifest(manifest_file)
            extra.update(
                version=manifest.version,
                training_data=list(manifest.training_data),
                metrics=dict(manifest.metrics),
                operating_points=dict(manifest.operating_points),
            )
        return model_from_onnx(path), extra
    ckpt = load_checkpoint(path)
    try:
        model = ckpt.model()
    except RuntimeError as exc:
        raise ModelError(f"checkpoint weights do not fit its config ({exc})", path) from exc
    return model, ckpt.extra
