"""Domain exceptions; `api/errors.py` maps each class to an HTTP status."""

from __future__ import annotations

from typing import Any


class RiskAtlasError(Exception):
    """Base of every error riskatlas raises on purpose."""

    code = "error"

    def __init__(self, message: str, details: Any | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationError(RiskAtlasError):
    """Input (file, parameter, document) is not acceptable; details name where and why."""

    code = "invalid_input"


class NotFoundError(RiskAtlasError):
    """A referenced object does not exist."""

    code = "not_found"


class ConflictError(RiskAtlasError):
    """The request collides with existing state (duplicate, concurrent upload)."""

    code = "conflict"


class TooLargeError(ValidationError):
    """Input exceeds a configured size limit."""

    code = "too_large"


class SetupError(RiskAtlasError):
    """The machine lacks something riskatlas needs; the message says what to install."""

    code = "setup"


class DatabaseUnavailableError(RiskAtlasError):
    """The database cannot be reached or refused the credentials."""

    code = "database_unavailable"


class StorageFullError(RiskAtlasError):
    """A disk (staging, raster directory or the database's) is full; the message says which."""

    code = "storage_full"
