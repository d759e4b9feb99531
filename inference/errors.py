"""Every exception the runtime raises, in one place.

Messages name the file (when there is one) and the reason, so they can be shown to a user as is.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "MammoReviewError",
    "ImageReadError",
    "NotAnImageError",
    "UnsupportedImageError",
    "LimitExceededError",
    "PreprocessError",
    "ModelError",
    "ManifestError",
    "FormatError",
    "LabelStoreError",
    "ProjectionError",
    "ProjectionCancelled",
]


class MammoReviewError(Exception):
    """Base class of every error the project raises on purpose."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class ImageReadError(MammoReviewError):
    """A file that should hold an image could not be read (empty, truncated, corrupt)."""


class NotAnImageError(ImageReadError):
    """A DICOM file that holds no image (structured report, presentation state, ...)."""


class UnsupportedImageError(ImageReadError):
    """An image in a form we cannot decode (unknown transfer syntax, colour, 3-D ...)."""


class LimitExceededError(ImageReadError):
    """A file over one of the limits checked before decoding (:mod:`inference.imaging.limits`); the
    message names the limit and how to raise it."""


class PreprocessError(MammoReviewError):
    """Preprocessing could not find a breast in the image."""


class ModelError(MammoReviewError):
    """The ONNX model is missing, corrupt, or does not match its manifest."""


class ManifestError(ModelError):
    """A model manifest is missing a field or has a wrong value."""


class FormatError(MammoReviewError):
    """A project file (label manifest, embeddings file, maps folder) is malformed."""


class LabelStoreError(MammoReviewError):
    """The label store cannot be opened or written (read-only, full disk, locked, newer schema)."""


class ProjectionError(MammoReviewError):
    """A 2-D projection of embeddings cannot be made (too few images, bad parameters)."""


class ProjectionCancelled(ProjectionError):
    """A projection was stopped because the user cancelled it."""
