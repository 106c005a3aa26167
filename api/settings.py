"""Settings of the HTTP layer."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Where the HTTP server listens and how it describes itself."""

    model_config = SettingsConfigDict(env_prefix="RISKATLAS_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    title: str = "riskatlas"
    job_workers: int = Field(default=2, ge=1, le=32)
    # Bad API keys one client address may present per minute before it gets 429.
    key_failures_per_minute: int = Field(default=20, ge=1)
