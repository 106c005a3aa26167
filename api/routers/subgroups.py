"""Groups in compounded stress: the subgroup x locality cells deprived in several dimensions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from api.auth import require_role
from api.caching import cache_headers, not_modified, run_etag
from api.deps import EngineDep, SettingsDep
from geo.read import profiles
from geo.read.subgroups import MAX_ITEMS, compounded_groups

router = APIRouter(prefix="/api/v1/subgroups", tags=["subgroups"])


@router.get("/compounded", summary="Subgroups deprived in several dimensions at once (analyst)")
def compounded(
    request: Request, engine: EngineDep, settings: SettingsDep,
    role: str = Depends(require_role("analyst")),
    run: str = Query("latest", max_length=12, description="Run id, or `latest`"),
    level: int | None = Query(None, ge=0, le=10,
                              description="Admin level [default: the finest]"),
    limit: int = Query(500, ge=1, le=MAX_ITEMS, description="Most cells returned"),
) -> Response:
    """Return the subgroup x locality cells in compounded stress, worst first.

    With household microdata (`method: alkire_foster`): the group's headcount H (share of its
    people deprived in at least k of the weighted indicators), intensity A and adjusted
    headcount M0, each with an interval. Without: subgroup indicator values against their
    cutoffs (`method: indicator_cutoffs`, deprived in at least k dimensions; not
    Alkire-Foster).
    """
    with engine.connect() as conn:
        resolved = profiles.resolve_run(conn, run)
        items = compounded_groups(conn, resolved, level, role, settings.privacy.k_min, limit)
    etag = run_etag(request, resolved["id"], role)
    headers = cache_headers(run, role)
    return not_modified(request, etag, headers) or JSONResponse(
        {"run": resolved, "level": level, "items": items}, headers={"ETag": etag, **headers})
