"""The project's shared file formats, with a reader and a writer for each (docs/formats.md).

- the image key (:func:`image_key`),
- the model manifest (:class:`ModelManifest`, JSON beside the .onnx),
- the label manifest (:class:`LabelRow`, CSV + JSON) that training reads and the app exports,
- the embeddings file (:class:`Embeddings`, .npz) written by the CLI.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.csvsafe import SafeDictWriter, restore_row
from inference.errors import FormatError, ManifestError

__all__ = [
    "TASKS",
    "TASK_CLASSES",
    "INTENDED_USE",
    "image_key",
    "file_sha256",
    "ModelManifest",
    "read_model_manifest",
    "write_model_manifest",
    "SCORING_SUFFIX",
    "SCORING_OUTPUTS",
    "scoring_path_for",
    "is_scoring_graph",
    "TaskLabel",
    "LabelRow",
    "LABEL_COLUMNS",
    "read_label_manifest",
    "LABEL_TEXT_COLUMNS",
    "write_label_manifest",
    "Embeddings",
    "read_embeddings",
    "write_embeddings",
]

#: The four classification tasks, primary first, and their class names (order = model output order).
TASKS: tuple[str, ...] = ("malignancy", "acr", "density", "view")
TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "malignancy": ("benign", "malignant"),
    "acr": ("1", "2", "3", "4", "5", "6"),
    "density": ("A", "B", "C", "D"),
    "view": ("CC", "MLO"),
}
INTENDED_USE = "Research use only. Not for diagnosis or any clinical decision."

MODEL_FORMAT = "mammo-review-model/1"
LABEL_FORMAT = "mammo-review-labels/1"
EMBEDDINGS_FORMAT = "mammo-review-embeddings/1"


# --------------------------------------------------------------------------- image key
def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def image_key(path: str | Path, sop_instance_uid: str | None = None) -> str:
    """The key of an image everywhere: its SOPInstanceUID, else ``sha256:<digest of the file>``."""
    uid = (sop_instance_uid or "").strip()
    if uid:
        return uid
    return "sha256:" + file_sha256(path)


# --------------------------------------------------------------------------- model manifest
@dataclass(frozen=True)
class ModelManifest:
    """What a model is, what it takes and gives, and what it may be used for."""

    name: str
    version: str
    input_height: int
    outputs: dict[str, list[int | None]]
    tasks: dict[str, list[str]]
    latent_dim: int = 496
    width_multiple: int = 64
    input_name: str = "image"
    input_range: tuple[float, float] = (0.0, 1.0)
    dropout: float = 0.5
    heads: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    onnx_sha256: str = ""
    created: str = ""
    training_data: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    operating_points: dict[str, Any] = field(default_factory=dict)
    #: task -> {"method": "temperature", "temperature": T, ...} (checked by inference.model.calibration)
    calibration: dict[str, Any] = field(default_factory=dict)
    intended_use: str = INTENDED_USE
    card: str = ""
    format: str = MODEL_FORMAT
    #: the scoring graph beside the model (:func:`scoring_path_for`): {"sha256": ..., "outputs": [...]},
    #: the same network cut after the task heads and ``z``; empty when the model has none
    scoring: dict[str, Any] = field(default_factory=dict)

    # -- helpers
    def head(self, task: str) -> tuple[np.ndarray, np.ndarray]:
        """(weight [classes, latent], bias [classes]) of a task head, as float32 arrays."""
        if task not in self.heads:
            raise ManifestError(f"the manifest of model {self.name!r} carries no '{task}' head")
        h = self.heads[task]
        return np.asarray(h["weight"], np.float32), np.asarray(h["bias"], np.float32)

    def threshold(self, name: str = "default") -> float:
        """A malignancy operating point by name (``default`` is 0.5 when none is given)."""
        points = self.operating_points.get("malignancy", self.operating_points)
        value = points.get(name) if isinstance(points, Mapping) else None
        if isinstance(value, Mapping):
            value = value.get("threshold")
        if value is None:
            if name == "default":
                return 0.5
            raise ManifestError(f"model {self.name!r} has no operating point {name!r}")
        return float(value)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "onnx_sha256": self.onnx_sha256,
            "intended_use": self.intended_use,
            "input": {
                "name": self.input_name,
                "height": self.input_height,
                "width_multiple": self.width_multiple,
                "range": list(self.input_range),
                "shape": [None, 1, self.input_height, None],
                "dtype": "float32",
            },
            "outputs": {k: list(v) for k, v in self.outputs.items()},
            "tasks": {k: list(v) for k, v in self.tasks.items()},
            "latent_dim": self.latent_dim,
            "dropout": self.dropout,
            "training_data": list(self.training_data),
            "metrics": self.metrics,
            "operating_points": self.operating_points,
            **({"calibration": self.calibration} if self.calibration else {}),
            "card": self.card,
            **({"scoring": self.scoring} if self.scoring else {}),
            "heads": self.heads,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str | Path | None = None) -> ModelManifest:
        try:
            fmt = data.get("format", "")
            if fmt != MODEL_FORMAT:
                raise ManifestError(f"unknown manifest format {fmt!r} (expected {MODEL_FORMAT!r})", source)
            inp = data["input"]
            rng = inp.get("range", [0.0, 1.0])
            manifest = cls(
                format=fmt,
                name=str(data["name"]),
                version=str(data["version"]),
                created=str(data.get("created", "")),
                onnx_sha256=str(data.get("onnx_sha256", "")),
                intended_use=str(data.get("intended_use", INTENDED_USE)),
                input_name=str(inp.get("name", "image")),
                input_height=int(inp["height"]),
                width_multiple=int(inp.get("width_multiple", 64)),
                input_range=(float(rng[0]), float(rng[1])),
                outputs={str(k): list(v) for k, v in data["outputs"].items()},
                tasks={str(k): [str(c) for c in v] for k, v in data["tasks"].items()},
                latent_dim=int(data.get("latent_dim", 496)),
                dropout=float(data.get("dropout", 0.5)),
                training_data=[str(s) for s in data.get("training_data", [])],
                metrics=dict(data.get("metrics", {})),
                operating_points=dict(data.get("operating_points", {})),
                calibration=dict(data.get("calibration", {})),
                card=str(data.get("card", "")),
                heads=dict(data.get("heads", {})),
                scoring=dict(data.get("scoring", {})),
            )
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"malformed model manifest ({type(exc).__name__}: {exc})", source) from exc
        manifest.validate(source)
        return manifest

    def validate(self, source: str | Path | None = None) -> None:
        """Raise :class:`ManifestError` when the manifest contradicts itself."""
        if self.input_height <= 0 or self.input_height % 64:
            raise ManifestError(f"input height {self.input_height} is not a positive multiple of 64", source)
        for task, classes in self.tasks.items():
            if task not in TASK_CLASSES:
                raise ManifestError(f"unknown task {task!r}", source)
            if task not in self.outputs:
                raise ManifestError(f"task {task!r} has no output", source)
            shape = self.outputs[task]
            if shape[-1] != len(classes):
                raise ManifestError(f"output {task!r} has {shape[-1]} classes, manifest names {len(classes)}", source)
        for task, head in self.heads.items():
            w = np.asarray(head.get("weight", []))
            b = np.asarray(head.get("bias", []))
            n = len(self.tasks.get(task, ()))
            if w.shape != (n, self.latent_dim) or b.shape != (n,):
                raise ManifestError(
                    f"head {task!r} has weight {w.shape} and bias {b.shape}, "
                    f"expected ({n}, {self.latent_dim}) and ({n},)",
                    source,
                )
        if "research" not in self.intended_use.lower():
            raise ManifestError("intended_use must state research use, not diagnosis", source)
        if self.scoring:
            outs, digest = self.scoring.get("outputs"), self.scoring.get("sha256")
            if not isinstance(digest, str) or not isinstance(outs, list) or not outs:
                raise ManifestError("the scoring graph needs a sha256 and a list of outputs", source)
            if not set(outs) <= set(self.outputs):
                raise ManifestError(f"the scoring graph's outputs {outs} are not all among the model's", source)


def manifest_path_for(model_path: str | Path) -> Path:
    """The manifest that belongs to ``model.onnx`` is ``model.json`` beside it."""
    return Path(model_path).with_suffix(".json")


#: The scoring graph of ``model.onnx`` is ``model.scoring.onnx`` beside it: the same network without
#: the decoder and maps (ONNX Runtime runs a whole graph whichever outputs are asked for), for callers
#: that want the tasks and ``z`` only. Not a model of its own: model lists skip it.
SCORING_SUFFIX = ".scoring.onnx"
#: What a scoring graph computes (those of them the model has, in this order): the tasks and ``z``.
SCORING_OUTPUTS: tuple[str, ...] = (*TASKS, "z")


def scoring_path_for(model_path: str | Path) -> Path:
    """Where the scoring graph of ``model_path`` lives (``model.onnx`` -> ``model.scoring.onnx``)."""
    path = Path(model_path)
    return path.with_name(path.with_suffix("").name + SCORING_SUFFIX)


def is_scoring_graph(path: str | Path) -> bool:
    """True for a model's scoring graph (a file named ``*.scoring.onnx``), which is not a model."""
    return Path(path).name.lower().endswith(SCORING_SUFFIX)


def read_model_manifest(path: str | Path) -> ModelManifest:
    """Read a model manifest (the .json itself, or the .onnx it sits beside)."""
    path = Path(path)
    if path.suffix == ".onnx":
        path = manifest_path_for(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError("model manifest not found", path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read model manifest ({exc})", path) from exc
    if not isinstance(data, dict):
        raise ManifestError("model manifest is not a JSON object", path)
    return ModelManifest.from_json(data, path)


def write_model_manifest(path: str | Path, manifest: ModelManifest) -> Path:
    path = Path(path)
    if path.suffix == ".onnx":
        path = manifest_path_for(path)
    path.write_text(json.dumps(manifest.to_json(), indent=1) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- label manifest
@dataclass(frozen=True)
class TaskLabel:
    """One task's label: a class name (or ``None`` when missing) and its uncertainty in [0, 1]."""

    value: str | None
    uncertainty: float = 0.0
    #: who made it: ``"person"`` (people's labels), ``"suggested"`` (nobody confirmed it: e.g. a data
    #: set's own label), or empty when the manifest does not say.
    by: str = ""

    @property
    def weight(self) -> float:
        """The loss weight of the paper: 0 when missing, else 1 - u."""
        return 0.0 if self.value is None else 1.0 - self.uncertainty


@dataclass(frozen=True)
class LabelRow:
    """One image of a label manifest."""

    key: str
    image: str
    labels: dict[str, TaskLabel]
    laterality: str = ""
    patient: str = ""
    study: str = ""
    source: str = ""
    split: str = ""

    def label(self, task: str) -> TaskLabel:
        return self.labels.get(task, TaskLabel(None, 0.0))

    def index(self, task: str) -> int | None:
        """The class index of the task's label, or None."""
        value = self.label(task).value
        return None if value is None else TASK_CLASSES[task].index(value)


LABEL_COLUMNS: tuple[str, ...] = (
    "key",
    "image",
    *[c for t in TASKS for c in (t, f"{t}_u", f"{t}_by")],
    "laterality",
    "patient",
    "study",
    "source",
    "split",
)

#: The text columns of a label manifest: neutralised against spreadsheet formulas when written and
#: restored when read (:mod:`inference.csvsafe`); the ``*_u`` columns are numbers.
LABEL_TEXT_COLUMNS: tuple[str, ...] = tuple(c for c in LABEL_COLUMNS if not c.endswith("_u"))


def _parse_label(task: str, raw: str, raw_u: str, where: str, by: str = "") -> TaskLabel:
    raw = (raw or "").strip()
    if not raw:
        return TaskLabel(None, 0.0)
    aliases = {"0": "benign", "1": "malignant"} if task == "malignancy" else {}
    if task == "view" and raw.upper() in ("ML", "LM", "XCCL", "XCCM"):
        raw = "CC"
    value = aliases.get(raw, raw.upper() if task in ("density", "view") else raw)
    if value not in TASK_CLASSES[task]:
        raise FormatError(f"{where}: {task} label {raw!r} is not one of {', '.join(TASK_CLASSES[task])}")
    try:
        u = float(raw_u) if (raw_u or "").strip() else 0.0
    except ValueError as exc:
        raise FormatError(f"{where}: {task}_u {raw_u!r} is not a number") from exc
    if not (0.0 <= u <= 1.0) or math.isnan(u):
        raise FormatError(f"{where}: {task}_u {u} is outside [0, 1]")
    return TaskLabel(value, u, (by or "").strip().lower())


def read_label_manifest(path: str | Path) -> list[LabelRow]:
    """Read a label manifest CSV. Image paths are returned as written (relative to the CSV's folder);
    text cells that :func:`write_label_manifest` neutralised (a leading ``'``) are restored."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # a quoted CR stays a CR
            text = f.read()
    except OSError as exc:
        raise FormatError(f"cannot read label manifest ({exc.strerror or exc})", path) from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = {"key", "image"} - set(reader.fieldnames or ())
    if missing:
        raise FormatError(f"label manifest lacks column(s) {', '.join(sorted(missing))}", path)
    rows: list[LabelRow] = []
    seen: set[str] = set()
    for n, raw in enumerate(reader, start=2):
        where = f"{path.name} line {n}"
        # trimmed as written, then un-neutralised: a value that starts with a tab comes back whole
        rec = restore_row({k: (v or "").strip() for k, v in raw.items() if isinstance(k, str)}, LABEL_TEXT_COLUMNS)
        key = rec.get("key", "")
        if not key:
            raise FormatError(f"{where}: empty key")
        if key in seen:
            raise FormatError(f"{where}: key {key!r} appears twice")
        seen.add(key)
        labels = {
            t: _parse_label(t, rec.get(t, ""), rec.get(f"{t}_u", ""), where, rec.get(f"{t}_by", "")) for t in TASKS
        }
        rows.append(
            LabelRow(
                key=key,
                image=rec.get("image", ""),
                labels=labels,
                laterality=rec.get("laterality", "").upper(),
                patient=rec.get("patient", ""),
                study=rec.get("study", ""),
                source=rec.get("source", ""),
                split=rec.get("split", ""),
            )
        )
    return rows


def _row_record(row: LabelRow) -> dict[str, str]:
    rec = {"key": row.key, "image": row.image}
    for t in TASKS:
        lab = row.label(t)
        rec[t] = "" if lab.value is None else lab.value
        rec[f"{t}_u"] = "" if lab.value is None else f"{lab.uncertainty:.4g}"
        rec[f"{t}_by"] = "" if lab.value is None else lab.by
    rec.update(laterality=row.laterality, patient=row.patient, study=row.study, source=row.source, split=row.split)
    return rec


def write_label_manifest(path: str | Path, rows: Iterable[LabelRow], *, json_copy: bool = True) -> Path:
    """Write a label manifest CSV (and the same rows as ``.json`` beside it). Text cells that a
    spreadsheet would run as a formula (``= + - @``, tab, CR first) get a leading ``'`` in the CSV
    (:mod:`inference.csvsafe`); the JSON copy holds the values as they are."""
    path = Path(path)
    records = [_row_record(r) for r in rows]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = SafeDictWriter(f, LABEL_COLUMNS, LABEL_TEXT_COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    if json_copy:
        payload = {"format": LABEL_FORMAT, "tasks": {t: list(c) for t, c in TASK_CLASSES.items()}, "rows": records}
        path.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- embeddings
@dataclass(frozen=True)
class Embeddings:
    """Latent vectors of many images: ``z[i]`` belongs to ``keys[i]``."""

    keys: tuple[str, ...]
    z: np.ndarray
    model_version: str = ""
    paths: tuple[str, ...] = ()
    meta: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.z.ndim != 2 or self.z.shape[0] != len(self.keys):
            raise FormatError(f"embeddings: {len(self.keys)} keys but z has shape {self.z.shape}")
        if self.paths and len(self.paths) != len(self.keys):
            raise FormatError("embeddings: paths and keys differ in length")


def write_embeddings(path: str | Path, emb: Embeddings) -> Path:
    """Write an embeddings ``.npz`` (keys, z float32, model version, optional paths and metadata columns)."""
    path = Path(path)
    # Any: numpy's stub reads a ** of arrays as if it could hold its allow_pickle= flag.
    extra: dict[str, Any] = {f"meta_{k}": np.asarray(list(v), dtype=str) for k, v in emb.meta.items()}
    with open(path, "wb") as f:
        np.savez_compressed(
            f,
            format=np.asarray(EMBEDDINGS_FORMAT),
            keys=np.asarray(emb.keys, dtype=str),
            z=np.asarray(emb.z, np.float32),
            model_version=np.asarray(emb.model_version),
            paths=np.asarray(emb.paths, dtype=str),
            **extra,
        )
    return path


def read_embeddings(path: str | Path) -> Embeddings:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != EMBEDDINGS_FORMAT:
                raise FormatError(f"not an embeddings file (format {str(data['format'])!r})", path)
            meta = {k[5:]: tuple(str(s) for s in data[k]) for k in data.files if k.startswith("meta_")}
            return Embeddings(
                keys=tuple(str(k) for k in data["keys"]),
                z=np.asarray(data["z"], np.float32),
                model_version=str(data["model_version"]),
                paths=tuple(str(p) for p in data["paths"]),
                meta=meta,
            )
    except FormatError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise FormatError(f"cannot read embeddings ({exc})", path) from exc


def replace(obj: Any, **changes: Any) -> Any:
    """dataclasses.replace, re-exported for callers that build manifests."""
    return dataclasses.replace(obj, **changes)
