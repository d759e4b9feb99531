"""Rebuild a torch :class:`~training.model.MammoNet` from an exported ``.onnx`` file.

:func:`training.onnx.export.export_onnx` keeps every parameter as an initializer named
``model.<state_dict key>`` and stores the model config in the ONNX metadata, so an ``.onnx`` is
enough to fine-tune from.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper

from inference.errors import ModelError
from training.model import MammoNet, ModelConfig
from training.onnx.layout import META_CONFIG, META_PREFIX

__all__ = ["read_onnx_metadata", "onnx_config", "onnx_state_dict", "model_from_onnx"]


def _load(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except FileNotFoundError as exc:
        raise ModelError("ONNX model not found", path) from exc
    except Exception as exc:  # onnx raises DecodeError and friends for anything not a model
        raise ModelError(f"cannot read ONNX model ({type(exc).__name__}: {exc})", path) from exc


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ONNX file's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in _load(Path(path)).metadata_props}


def _config(proto: onnx.ModelProto, path: Path) -> tuple[ModelConfig, str]:
    meta = {p.key: p.value for p in proto.metadata_props}
    if META_CONFIG not in meta:
        raise ModelError(f"not exported by mammo-review (no {META_CONFIG!r} metadata)", path)
    try:
        config = ModelConfig.from_dict(json.loads(meta[META_CONFIG]))
    except (ValueError, TypeError) as exc:
        raise ModelError(f"bad model config in the ONNX metadata ({exc})", path) from exc
    return config, meta.get(META_PREFIX, "")


def onnx_config(path: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` an exported model was built with."""
    path = Path(path)
    return _config(_load(path), path)[0]


def onnx_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The parameters of an exported model, keyed as in the torch ``state_dict``."""
    path = Path(path)
    proto = _load(path)
    _, prefix = _config(proto, path)
    state = {}
    for init in proto.graph.initializer:
        if init.name.startswith(prefix):
            state[init.name[len(prefix):]] = torch.from_numpy(numpy_helper.to_array(init).copy())
    return state


def model_from_onnx(path: str | Path) -> MammoNet:
    """A torch model with the exported model's config and weights (in training mode)."""
    path = Path(path)
    model = MammoNet(onnx_config(path))
    state = onnx_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ModelError(f"{len(missing)} parameter(s) missing from the ONNX initializers: {shown}", path)
    for key, ref in expected.items():
        if state[key].shape != ref.shape:
            raise ModelError(f"parameter {key} has shape {tuple(state[key].shape)}, expected {tuple(ref.shape)}", path)
    model.load_state_dict({k: state[k] for k in expected}, strict=True)
    return model
