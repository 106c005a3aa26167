"""The installed riskatlas version, for the OpenAPI document and /healthz."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def app_version() -> str:
    """Return the installed distribution's version."""
    try:
        return version("riskatlas")
    except PackageNotFoundError:
        return "0+unknown"
