"""API keys: random secrets shown once, stored only as SHA-256 hashes, each granting a role.

A key may expire and may be revoked; either way it stops working at once. The time a key
was last used is kept (to the minute), so an admin can see which keys are still alive.
Failed key attempts are counted per client address by `FailedKeyAttempts`, so that
guessing keys (or hammering the key lookup) from one address is slowed to a trickle.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from geo.errors import NotFoundError, ValidationError
from geo.models import ROLES, ApiKey

KEY_PREFIX = "ra"
# Last-used times are written at most once a minute per key: a request does not pay for a
# write, and "used in the last minute" is as precise as anyone needs.
LAST_USED_RESOLUTION = timedelta(seconds=60)
_DURATION = re.compile(r"(\d+)\s*([hdw])")
_DURATION_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: the secret is shown once and never stored."""

    name: str
    role: str
    secret: str
    prefix: str = ""
    expires_at: datetime | None = None


@dataclass(frozen=True)
class KeyInfo:
    """What an admin may see of a key: never its secret or hash."""

    id: int
    prefix: str
    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    state: str  # active, expired or revoked


def role_rank(role: str) -> int:
    """Return the role's place in public < analyst < uploader < admin."""
    return ROLES.index(role)


def _hash(secret: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """Return when a key given `--expires TEXT` expires: `30d`, `12h`, `2w` or an ISO date/time.

    A bare date means the end of that day (UTC); a time without a zone is taken as UTC.
    A moment that has already passed is refused.
    """
    now = now or _now()
    value = text.strip()
    duration = _DURATION.fullmatch(value.lower())
    if duration:
        moment = now + int(duration.group(1)) * _DURATION_UNITS[duration.group(2)]
    else:
        try:
            if len(value) == 10:
                day = date.fromisoformat(value)
                moment = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
            else:
                moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                f"--expires {text!r} is neither a duration (30d, 12h, 2w) nor an ISO date "
                "such as 2026-12-31", [{"field": "expires", "problem": "not a date or duration"}],
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return check_expiry(moment, now)


def check_expiry(moment: datetime, now: datetime | None = None) -> datetime:
    """Return `moment` (as UTC) when it lies in the future, else raise ValidationError."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment <= (now or _now()):
        raise ValidationError(f"the expiry {moment.isoformat()} has already passed",
                              [{"field": "expires", "problem": "in the past"}])
    return moment.astimezone(UTC)


def create_key(engine: Engine, name: str, role: str,
               expires_at: datetime | None = None) -> NewKey:
    """Create a key for `role` and return it with its secret (the only time it is visible)."""
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if expires_at is not None:
        expires_at = check_expiry(expires_at)
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with Session(engine) as session:
        session.add(ApiKey(name=name, prefix=prefix, key_hash=_hash(secret), role=role,
                           expires_at=expires_at))
        session.commit()
    return NewKey(name=name, role=role, secret=secret, prefix=prefix, expires_at=expires_at)


def _state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def _info(key: ApiKey, now: datetime) -> KeyInfo:
    return KeyInfo(id=key.id, prefix=key.prefix, name=key.name, role=key.role,
                   created_at=key.created_at, expires_at=key.expires_at,
                   last_used_at=key.last_used_at, revoked_at=key.revoked_at,
                   state=_state(key, now))


def list_keys(engine: Engine) -> list[KeyInfo]:
    """Return every key, oldest first, with its state (active, expired, revoked)."""
    now = _now()
    with Session(engine) as session:
        return [_info(key, now) for key in session.scalars(select(ApiKey).order_by(ApiKey.id))]


def revoke_key(engine: Engine, prefix: str) -> KeyInfo:
    """Revoke the key with this prefix (the part after `ra_`); revoking twice changes nothing."""
    wanted = prefix.strip().removeprefix(f"{KEY_PREFIX}_").split("_")[0]
    with Session(engine) as session:
        key = session.scalar(select(ApiKey).where(ApiKey.prefix == wanted))
        if key is None:
            raise NotFoundError(f"no API key with prefix {wanted!r}; `riskatlas keys list` "
                                "shows them")
        if key.revoked_at is None:
            key.revoked_at = _now()
            session.commit()
            session.refresh(key)
        return _info(key, _now())


def role_for_secret(session: Session, secret: str) -> str | None:
    """Return the role a presented key grants, or None when it is unknown, revoked or expired.

    A key that works has its last-used time brought up to date (at most once a minute).
    """
    parts = secret.split("_")
    if len(parts) < 3 or parts[0] != KEY_PREFIX:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if key is None or not hmac.compare_digest(key.key_hash, _hash(secret)):
        return None
    now = _now()
    if _state(key, now) != "active":
        return None
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        _touch(session, key.id, now)
    return key.role


def _touch(session: Session, key_id: int, now: datetime) -> None:
    # Its own short transaction on the engine, so the caller's session is left as it was;
    # the condition keeps several processes from writing the same minute twice.
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with engine.connect() as conn:
        conn.execute(update(ApiKey).where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None),
                ApiKey.last_used_at < now - LAST_USED_RESOLUTION),
        ).values(last_used_at=now))
        conn.commit()


class FailedKeyAttempts:
    """Failed API-key attempts per client address, over a sliding window.

    After `limit` failures within `window_s` seconds an address must wait until the oldest
    of them leaves the window; `retry_after` says how long. Kept in memory, per process
    (each server process counts its own), for at most `max_clients` addresses (the least
    recently failing ones are forgotten first), so a flood of addresses cannot grow it.
    """

    def __init__(self, limit: int = 20, window_s: float = 60.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Return the whole seconds `client` must wait before presenting a key, or None."""
        with self._lock:
            times = self._recent(client)
            if times is None or len(times) < self.limit:
                return None
            return max(1, int(times[0] + self.window_s - self._clock() + 0.999))

    def failed(self, client: str) -> None:
        """Record one failed attempt from `client`."""
        with self._lock:
            times = self._recent(client)
            if times is None:
                times = self._failures[client] = deque(maxlen=self.limit)
            times.append(self._clock())
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def _recent(self, client: str) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        horizon = self._clock() - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times
