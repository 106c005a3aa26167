"""API keys for admins: list them, create one (its secret shown once), revoke one."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Path
from pydantic import AwareDatetime, BaseModel, Field

from api.auth import require_role
from api.deps import EngineDep
from geo.keys import create_key, list_keys, revoke_key

router = APIRouter(prefix="/api/v1/keys", tags=["keys"],
                   dependencies=[Depends(require_role("admin"))],
                   responses={401: {"description": "No API key, or one that does not work"},
                              403: {"description": "Key without the admin role"},
                              429: {"description": "Too many failed key attempts"}})


class KeyOut(BaseModel):
    """A key as an admin sees it: never its secret or hash."""

    id: int
    prefix: str = Field(description="The public part of the key: ra_<prefix>_...")
    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Last successful use, to the minute")
    revoked_at: datetime | None
    state: Literal["active", "expired", "revoked"]


class KeyCreate(BaseModel):
    """A key to create."""

    name: str = Field(min_length=1, max_length=200, description="Who or what the key is for")
    role: Literal["public", "analyst", "uploader", "admin"]
    expires_at: AwareDatetime | None = Field(
        None, description="When the key stops working (with a time zone); never by default")


class KeyCreated(KeyOut):
    """The created key, with its secret: shown this once, stored only as a hash."""

    secret: str


@router.get("", response_model=list[KeyOut], summary="Every API key and its state")
def get_keys(engine: EngineDep) -> list[dict[str, object]]:
    """Return every key, oldest first: role, expiry, last use, whether revoked."""
    return [asdict(key) for key in list_keys(engine)]


@router.post("", response_model=KeyCreated, status_code=201, summary="Create an API key",
             responses={422: {"description": "Unknown role or an expiry in the past"}})
def post_key(body: KeyCreate, engine: EngineDep) -> dict[str, object]:
    """Create a key; the answer holds its secret, which is never shown again."""
    created = create_key(engine, body.name, body.role, body.expires_at)
    info = next(key for key in list_keys(engine) if key.prefix == created.prefix)
    return {**asdict(info), "secret": created.secret}


@router.post("/{prefix}/revoke", response_model=KeyOut, summary="Revoke an API key",
             responses={404: {"description": "No key with this prefix"}})
def post_revoke(engine: EngineDep,
                prefix: str = Path(pattern="^[0-9a-f]{8}$",
                                   description="The key's prefix, as listed")) -> dict[str, object]:
    """Revoke the key: it is refused (401) from now on; revoking twice changes nothing."""
    return asdict(revoke_key(engine, prefix))
