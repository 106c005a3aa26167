"""HTTP caching for what derives from immutable runs: ETag, If-None-Match, Cache-Control."""

from __future__ import annotations

import hashlib

from fastapi import Request, Response

from geo.read.disclosure import may_see_subgroups


def etag_of(run_id: int, path: str, query: list[tuple[str, str]], role: str) -> str:
    """Return a strong ETag for a run-derived response at path?query as this role sees it."""
    audience = "full" if may_see_subgroups(role) else "public"
    joined = "&".join(sorted(f"{k}={v}" for k, v in query))
    digest = hashlib.sha256(f"{run_id}|{path}|{joined}|{audience}".encode())
    return f'"r{run_id}-{digest.hexdigest()[:20]}"'


def run_etag(request: Request, run_id: int, role: str) -> str:
    """Return a strong ETag for a run-derived response as this role sees it."""
    return etag_of(run_id, request.url.path, request.query_params.multi_items(), role)


def cache_headers(run_param: str, role: str) -> dict[str, str]:
    """Return Cache-Control: immutable for an explicit run, short for `latest`, private for keys."""
    scope = "public" if role == "public" else "private"
    if run_param != "latest":
        return {"Cache-Control": f"{scope}, max-age=31536000, immutable", "Vary": "Authorization"}
    # `latest` moves when a new run completes; let caches revalidate with the ETag.
    return {"Cache-Control": f"{scope}, max-age=60, must-revalidate", "Vary": "Authorization"}


def not_modified(request: Request, etag: str, headers: dict[str, str]) -> Response | None:
    """Return a 304 when the client already holds this representation."""
    return not_modified_for(request.headers.get("if-none-match", ""), etag, headers)


def not_modified_for(if_none_match: str, etag: str, headers: dict[str, str]) -> Response | None:
    """Return a 304 when an If-None-Match header value names this representation."""
    candidates = {tag.strip() for tag in if_none_match.split(",")}
    if etag in candidates or "*" in candidates:
        return Response(status_code=304, headers={"ETag": etag, **headers})
    return None
