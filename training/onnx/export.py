"""Export a :class:`~training.model.MammoNet` to ONNX + manifest, verified against torch.

The ONNX interface is the one of docs/architecture.md: input ``image`` ``[N, 1, H, W]``
(dynamic ``N`` and ``W``), outputs ``malignancy``/``acr``/``density``/``view`` (softmax
probabilities), ``z``, ``reconstruction``, ``evidence`` and ``lesion`` (the segmentation
branch's per-cell lesion probability, sigmoid, ``[N, 1, H/4, W/4]``); what the model's config
switches off is absent. Initializers keep the torch ``state_dict`` names (prefixed ``model.``) and the
config travels in the ONNX metadata, so :mod:`training.onnx.weights` can rebuild the network
from the ``.onnx`` alone (names and keys: :mod:`training.onnx.layout`). The command line,
``python -m training export-onnx``, is :mod:`training.onnx.command`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from inference.errors import ModelError
from inference.formats import (
    INTENDED_USE,
    TASK_CLASSES,
    ModelManifest,
    file_sha256,
    write_model_manifest,
)
from training.model import EVIDENCE_STRIDE, LESION_STRIDE, SIZE_MULTIPLE, MammoNet, ModelConfig
from training.onnx.layout import META_CONFIG, META_HEIGHT, META_PREFIX, META_VERSION, OPSET, OUTPUT_ORDER, STATE_PREFIX
from training.onnx.scoring import write_scoring_graph

__all__ = [
    "TOLERANCE",
    "RECONSTRUCTION_TOLERANCE",
    "OnnxExportResult",
    "OnnxWrapper",
    "onnx_output_shapes",
    "export_onnx",
    "verify_onnx",
]

#: Largest |ONNX Runtime - torch| accepted for the probabilities, ``z`` and the evidence map.
TOLERANCE = 1e-4
#: ... and for the reconstruction and the lesion map, images in [0, 1] shown at 8 bits (a grey
#: level is 3.9e-3); both come out of the decoder's instance norms.
#: The two runtimes sum float32 instance-norm statistics over millions of pixels in different
#: orders; at height 2048 that moves the reconstruction of a random network by about 2e-4.
RECONSTRUCTION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class OnnxExportResult:
    """What an export wrote and how closely ONNX Runtime matched torch."""

    onnx_path: Path
    manifest_path: Path
    card_path: Path
    manifest: ModelManifest
    max_abs_diff: dict[str, float]
    size_bytes: int


class OnnxWrapper(nn.Module):
    """The exported graph: the model's outputs in :data:`OUTPUT_ORDER`, task logits as softmax,
    lesion logits as sigmoid."""

    def __init__(self, model: MammoNet) -> None:
        super().__init__()
        self.model = model
        cfg = model.config
        self.names = tuple(n for n in OUTPUT_ORDER if _has_output(cfg, n))

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = self.model(image, evidence="evidence" in self.names)
        return tuple(
            out[n].softmax(dim=1) if n in TASK_CLASSES else out[n].sigmoid() if n == "lesion" else out[n]
            for n in self.names
        )


def _has_output(cfg: ModelConfig, name: str) -> bool:
    if name in TASK_CLASSES:
        return name in cfg.tasks
    if name == "reconstruction":
        return cfg.reconstruction
    if name == "evidence":
        return "malignancy" in cfg.tasks
    if name == "lesion":
        return cfg.segmentation
    return name == "z"


def onnx_output_shapes(config: ModelConfig, height: int) -> dict[str, list[int | None]]:
    """Manifest output shapes (``None`` for the dynamic batch and width)."""
    shapes: dict[str, list[int | None]] = {t: [None, len(TASK_CLASSES[t])] for t in config.tasks}
    shapes["z"] = [None, config.latent_dim]
    if config.reconstruction:
        shapes["reconstruction"] = [None, 1, height, None]
    if "malignancy" in config.tasks:
        shapes["evidence"] = [None, 1, height // EVIDENCE_STRIDE, None]
    if config.segmentation:
        shapes["lesion"] = [None, 1, height // LESION_STRIDE, None]
    return {n: shapes[n] for n in OUTPUT_ORDER if n in shapes}


def _check_height(height: int) -> None:
    if height <= 0 or height % SIZE_MULTIPLE:
        raise ValueError(f"height {height} is not a positive multiple of {SIZE_MULTIPLE}")


def _sample_width(height: int) -> int:
    """A mammogram-like width: about 3/4 of the height, a multiple of 64."""
    return max(SIZE_MULTIPLE, round(0.75 * height / SIZE_MULTIPLE) * SIZE_MULTIPLE)


def _torch_export(wrapper: OnnxWrapper, path: Path, height: int) -> None:
    """Run the TorchScript-based exporter with the settings the weight mapping relies on.

    The legacy exporter is used (torch is pinned): it exports this network in a fraction of a
    second where the dynamo one takes seconds. ``do_constant_folding=False`` keeps every
    parameter as its own initializer under its ``state_dict`` name. The exporter merges
    initializers with equal *values* when the top module is in eval mode (fresh instance-norm
    weights are all ones), so the wrapper alone is flagged ``training`` and the mode is
    PRESERVE: the merge then only joins tensors that are the same object, while every module
    that computes (dropout, norms) is in eval mode.
    """
    names = list(wrapper.names)
    dynamic: dict[str, dict[int, str]] = {"image": {0: "N", 3: "W"}}
    for n in names:
        dynamic[n] = {0: "N"}
    if "reconstruction" in names:
        dynamic["reconstruction"][3] = "W"
    if "evidence" in names:
        dynamic["evidence"][3] = "W_16"
    if "lesion" in names:
        dynamic["lesion"][3] = "W_4"
    sample = torch.rand(2, 1, height, _sample_width(height), generator=torch.Generator().manual_seed(0))
    wrapper.model.eval()
    wrapper.training = True  # see docstring: only steers initializer de-duplication
    try:
        with warnings.catch_warnings():
            # Known, understood warnings of the pinned legacy exporter; anything else stays an error.
            warnings.filterwarnings(
                "ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning
            )
            warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
            # instance norm's own spatial-size sanity checks read shapes while tracing; harmless
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.")  # type: ignore[attr-defined]  # not in torch.jit.__all__
            torch.onnx.export(
                wrapper,
                (sample,),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=["image"],
                output_names=names,
                dynamic_axes=dynamic,
                export_params=True,
                do_constant_folding=False,
                training=torch.onnx.TrainingMode.PRESERVE,
            )
    finally:
        wrapper.training = False


def _finish_graph(path: Path, config: ModelConfig, height: int, version: str) -> None:
    """Write exact declared shapes on input/outputs, and the config into the metadata."""
    proto = onnx.load(str(path))
    shapes = onnx_output_shapes(config, height)
    width_names = {"reconstruction": "W", "evidence": "W_16", "lesion": "W_4"}

    def set_shape(value: onnx.ValueInfoProto, dims: Sequence[int | None], wname: str) -> None:
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        for i, d in enumerate(dims):
            dim = shape.dim.add()
            if d is None:
                dim.dim_param = "N" if i == 0 else wname
            else:
                dim.dim_value = d

    set_shape(proto.graph.input[0], [None, 1, height, None], "W")
    for out in proto.graph.output:
        set_shape(out, shapes[out.name], width_names.get(out.name, "W"))
    del proto.metadata_props[:]
    meta = {META_CONFIG: json.dumps(config.to_dict(), sort_keys=True), META_PREFIX: STATE_PREFIX,
            META_VERSION: version, META_HEIGHT: str(height)}
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"mammo-review multi-task network {version}. {INTENDED_USE}"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def verify_onnx(
    model: MammoNet,
    path: str | Path,
    height: int,
    tolerance: float = TOLERANCE,
    reconstruction_tolerance: float = RECONSTRUCTION_TOLERANCE,
) -> dict[str, float]:
    """Max |ONNX Runtime - torch| per output over two batches of different widths.

    Raises :class:`ModelError` when an output differs by more than ``tolerance``
    (``reconstruction_tolerance`` for the reconstruction).
    """
    path = Path(path)
    wrapper = OnnxWrapper(model).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got_names = [o.name for o in session.get_outputs()]
    if got_names != list(wrapper.names):
        raise ModelError(f"ONNX outputs {got_names} differ from the model's {list(wrapper.names)}", path)
    gen = torch.Generator().manual_seed(1)
    width = _sample_width(height)
    diffs = dict.fromkeys(wrapper.names, 0.0)
    for batch, w in ((2, width), (1, width + 2 * SIZE_MULTIPLE)):
        x = torch.rand(batch, 1, height, w, generator=gen)
        with torch.no_grad():
            expected = wrapper(x)
        got = session.run(None, {"image": x.numpy()})
        for name, e, g in zip(wrapper.names, expected, got, strict=True):
            if tuple(g.shape) != tuple(e.shape):
                raise ModelError(
                    f"output {name!r} has shape {g.shape} in ONNX Runtime, {tuple(e.shape)} in torch", path
                )
            diffs[name] = max(diffs[name], float(np.max(np.abs(g - e.numpy()))))
    limits = {n: reconstruction_tolerance if n in ("reconstruction", "lesion") else tolerance for n in diffs}
    bad = {n: d for n, d in diffs.items() if not d <= limits[n]}
    if bad:
        listing = ", ".join(f"{n} {d:.3g} (> {limits[n]:g})" for n, d in bad.items())
        raise ModelError(f"ONNX Runtime differs from torch: {listing}", path)
    return diffs


def _heads(model: MammoNet) -> dict[str, dict[str, list[Any]]]:
    heads = {t: model.head(t) for t in model.heads}
    return {
        t: {"weight": head.weight.detach().double().tolist(), "bias": head.bias.detach().double().tolist()}
        for t, head in heads.items()
    }


def export_onnx(
    model: MammoNet,
    path: str | Path,
    *,
    height: int,
    version: str,
    name: str | None = None,
    training_data: Sequence[str] = (),
    metrics: Mapping[str, Any] | None = None,
    operating_points: Mapping[str, Any] | None = None,
    card: str = "",
    intended_use: str = INTENDED_USE,
    tolerance: float = TOLERANCE,
    reconstruction_tolerance: float = RECONSTRUCTION_TOLERANCE,
) -> OnnxExportResult:
    """Export ``model`` to ``path`` (``.onnx``), verify it, and write the manifest and card beside it.

    ``card`` is free text (what the model is, how it was trained, its limits) for the model card
    ``<name>.md``; the manifest's ``card`` field names that file (docs/formats.md).
    """
    _check_height(height)
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: the model file must end in .onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")  # only a verified model takes the real name
    was_training = model.training
    model.eval()
    try:
        _torch_export(OnnxWrapper(model), partial, height)
        _finish_graph(partial, model.config, height, version)
        diffs = verify_onnx(model, partial, height, tolerance, reconstruction_tolerance)
        os.replace(partial, path)
        scoring = write_scoring_graph(path, height)
    finally:
        model.train(was_training)
        partial.unlink(missing_ok=True)
    manifest = ModelManifest(
        name=name or path.stem,
        version=version,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        onnx_sha256=file_sha256(path),
        input_height=height,
        width_multiple=SIZE_MULTIPLE,
        outputs=onnx_output_shapes(model.config, height),
        tasks={t: list(TASK_CLASSES[t]) for t in model.config.tasks},
        latent_dim=model.config.latent_dim,
        dropout=model.config.dropout,
        heads=_heads(model),
        training_data=list(training_data),
        metrics=dict(metrics or {}),
        operating_points=dict(operating_points or {}),
        intended_use=intended_use,
        card=path.with_suffix(".md").name,
        scoring=scoring,
    )
    manifest.validate(path)
    card_path = _write_card(path.with_suffix(".md"), manifest, card, model)
    manifest_path = write_model_manifest(path, manifest)
    return OnnxExportResult(path, manifest_path, card_path, manifest, diffs, path.stat().st_size)


def _shape_text(shape: Sequence[int | None]) -> str:
    dims = ["N" if i == 0 and d is None else "W" if d is None else str(d) for i, d in enumerate(shape)]
    return "[" + ", ".join(dims) + "]"


def _write_card(path: Path, manifest: ModelManifest, notes: str, model: MammoNet) -> Path:
    """The model card: identity, intended use, interface, data, metrics, and the given notes."""
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    ablations = [s for s, on in (("no reconstruction", not cfg.reconstruction),
                                 ("last level only in z", not cfg.multi_level),
                                 ("plus lesion segmentation", cfg.segmentation)) if on]
    lines = [
        f"# Model card: {manifest.name} {manifest.version}",
        "",
        f"**{manifest.intended_use}**",
        "",
        notes.strip() or "(no notes)",
        "",
        "## Model",
        f"- Multi-task network of Tardy & Mateus (2022): {n_params:,} parameters; tasks "
        f"{', '.join(cfg.tasks)}{'; ' + ', '.join(ablations) if ablations else ''}.",
        f"- Input `{manifest.input_name}` float32 [N, 1, {manifest.input_height}, W], values in [0, 1], "
        f"W a multiple of {manifest.width_multiple}.",
        "- Outputs: " + ", ".join(f"`{k}` {_shape_text(v)}" for k, v in manifest.outputs.items()) + ".",
        f"- Latent z: {manifest.latent_dim}-d; dropout {manifest.dropout} before the heads.",
        f"- Created {manifest.created}; ONNX SHA-256 `{manifest.onnx_sha256}`.",
        "",
        "## Training data",
        *([f"- {d}" for d in manifest.training_data] or ["- none"]),
        "",
        "## Metrics",
        "```json",
        json.dumps({"metrics": manifest.metrics, "operating_points": manifest.operating_points}, indent=1),
        "```",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
