"""Who is calling: an API key in `Authorization: Bearer` or `X-API-Key` gives a role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from api.deps import SessionDep
from geo.keys import FailedKeyAttempts, role_for_secret, role_rank


def presented_key(request: Request) -> str | None:
    """Return the key the request carries, if any."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


def current_role(request: Request, session: SessionDep) -> str:
    """Return the caller's role: `public` without a key; 401 for a key that does not work.

    An address that presented too many bad keys gets 429 with Retry-After for any key
    until its failures age out (it learns nothing about the keys it tries meanwhile).
    """
    secret = presented_key(request)
    if secret is None:
        return "public"
    attempts: FailedKeyAttempts = request.app.state.key_attempts
    client = request.client.host if request.client else "unknown"
    wait = attempts.retry_after(client)
    if wait is not None:
        raise HTTPException(429, f"too many failed API key attempts; retry in {wait} s",
                            headers={"Retry-After": str(wait)})
    role = role_for_secret(session, secret)
    if role is None:
        attempts.failed(client)
        raise HTTPException(401, "the API key is unknown, revoked or expired",
                            headers={"WWW-Authenticate": "Bearer"})
    return role


CurrentRole = Annotated[str, Depends(current_role)]


def _role_from_key(request: Request) -> str:
    with request.app.state.sessions() as session:
        return current_role(request, session)


async def caller_role(request: Request) -> str:
    """Return the caller's role; without a key no database round trip is made (hot path)."""
    if presented_key(request) is None:
        return "public"
    return await run_in_threadpool(_role_from_key, request)


FastRole = Annotated[str, Depends(caller_role)]


def require_role(minimum: str) -> Callable[[str], str]:
    """Return a dependency that admits callers at `minimum` or above: 401 without key, 403 weak."""

    def check(request: Request, role: CurrentRole) -> str:
        if role_rank(role) >= role_rank(minimum):
            return role
        if presented_key(request) is None:
            raise HTTPException(401, f"this needs an API key with the {minimum} role",
                                headers={"WWW-Authenticate": "Bearer"})
        raise HTTPException(403, f"this needs the {minimum} role; your key has {role}")

    return check
