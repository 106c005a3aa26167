"""API keys: random secrets shown once, stored only as SHA-256 hashes, each granting a role."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from geo.errors import ValidationError
from geo.models import ROLES, ApiKey

KEY_PREFIX = "ra"


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: the secret is shown once and never stored."""

    name: str
    role: str
    secret: str


def role_rank(role: str) -> int:
    """Return the role's place in public < analyst < uploader < admin."""
    return ROLES.index(role)


def _hash(secret: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(engine: Engine, name: str, role: str) -> NewKey:
    """Create a key for `role` and return it with its secret (the only time it is visible)."""
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with Session(engine) as session:
        session.add(ApiKey(name=name, prefix=prefix, key_hash=_hash(secret), role=role))
        session.commit()
    return NewKey(name=name, role=role, secret=secret)


def role_for_secret(session: Session, secret: str) -> str | None:
    """Return the role a presented key grants, or None when it is unknown or revoked."""
    parts = secret.split("_")
    if len(parts) < 3 or parts[0] != KEY_PREFIX:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if key is None or key.revoked_at is not None:
        return None
    return key.role if hmac.compare_digest(key.key_hash, _hash(secret)) else None
