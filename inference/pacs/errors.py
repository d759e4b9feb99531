"""The errors of the network code: each names the server and what went wrong, so it can be shown
to a user as is (never a traceback, never fatal to the app)."""

from __future__ import annotations

from inference.errors import MammoReviewError

__all__ = [
    "PacsError",
    "PacsConnectionError",
    "PacsAuthError",
    "PacsTimeoutError",
    "AssociationRejectedError",
    "PacsCancelled",
]


class PacsError(MammoReviewError):
    """A query, retrieve or send to a PACS failed."""


class PacsConnectionError(PacsError):
    """The server could not be reached (connection refused, unknown host, network down)."""


class PacsAuthError(PacsError):
    """The server refused our credentials (HTTP 401 / 403)."""


class PacsTimeoutError(PacsError):
    """The server did not answer in time."""


class AssociationRejectedError(PacsError):
    """A DICOM peer rejected or aborted the association (unknown AE title, no such service)."""


class PacsCancelled(PacsError):
    """A retrieve was stopped because the user cancelled it."""
