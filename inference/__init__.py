"""mammo-review's runtime: studies and DICOM, preprocessing, the ONNX session, predictions,
projections, the label store and exports. No Qt, no torch. Research use only, not diagnosis.

The public names below are imported lazily (PEP 562), so ``import inference`` stays cheap and a
tool that needs only the formats does not load ONNX Runtime or scikit-learn.

>>> import inference
>>> study_set = inference.scan(["/path/to/studies"])
>>> session = inference.ModelSession.load(device="auto")
>>> predictions = inference.predict(session, [inference.load_image(r) for r in study_set.images])
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "errors": (
        "MammoReviewError", "ImageReadError", "NotAnImageError", "UnsupportedImageError", "PreprocessError",
        "ModelError", "ManifestError", "FormatError", "LabelStoreError", "ProjectionError", "ProjectionCancelled",
    ),
    "formats": (
        "TASKS", "TASK_CLASSES", "INTENDED_USE", "image_key", "ModelManifest", "read_model_manifest",
        "write_model_manifest", "TaskLabel", "LabelRow", "read_label_manifest", "write_label_manifest",
        "Embeddings", "read_embeddings", "write_embeddings",
    ),
    "model.preprocess": ("Geometry", "Preprocess", "preprocess"),
    "imaging.studies": ("ImageRecord", "Problem", "Study", "StudySet", "scan", "read_record"),
    "imaging.geometry": ("BreastMask",),
    "imaging.decode": ("Window", "LoadedImage", "load_image", "resolve_laterality", "apply_window"),
    "model.session": ("ModelSession", "bundled_model_path", "DEVICES"),
    "model.predict": (
        "Prediction", "PredictionSummary", "ModelInput", "prepare", "predict", "predict_inputs", "mc_dropout",
    ),
    "model.summary": ("BreastSummary", "ExamSummary", "summarise"),
    "labels.store": ("LabelStore", "LabelRecord", "HistoryEntry", "CombinedLabel", "combine", "default_store_path"),
    "labels.review": ("ORDERS", "QueueItem", "ReviewProgress", "review_queue", "progress"),
    "labels.exchange": (
        "export_labels", "import_labels", "import_manifest", "deidentify_dataset", "ExportResult", "ImportResult",
    ),
    "latent.projection": (
        "ProjectionParams", "Projection", "project", "SimilarityIndex", "Neighbour", "pca", "numba_cache_dir",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
