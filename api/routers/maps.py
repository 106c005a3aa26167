"""What a map needs beyond tiles: the scores it can show and their class breaks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import Engine

from api.caching import cache_headers
from api.deps import EngineDep
from geo.read import map_scores
from geo.read.map_classes import METHODS, PALETTES
from geo.read.run_cache import RunCache

router = APIRouter(prefix="/api/v1/map", tags=["map"])

RUN = Query("latest", description="Score run id, or `latest`: the newest succeeded run")
LEVEL = Query(None, ge=0, le=10, description="Only localities of this admin level (default all)")


CACHE = RunCache()


def _run_key(engine: Engine, run: dict[str, Any]) -> tuple[str, int, str | None]:
    return (engine.url.render_as_string(hide_password=True), run["id"], run["completed_at"])


@router.get("/options", summary="Scores, levels and indicators the map can show for a run")
def options(engine: EngineDep, response: Response, run: str = RUN) -> dict[str, Any]:
    """Return the run, admin levels, choosable scores and trend indicators."""
    with engine.connect() as conn:
        found = map_scores.resolve_run(conn, run)
        body = CACHE.get(("options", *_run_key(engine, found)),
                         lambda: map_scores.map_options(conn, found["id"]))
    response.headers.update(cache_headers(run, "public"))
    return {"run": found, **body}


@router.get("/classes", summary="Class breaks of a score (mapclassify) with a palette")
def classes(
    engine: EngineDep,
    response: Response,
    score: str = Query("composite", description="composite, hazard_exposure, vulnerability, "
                       "lack_of_coping_capacity, stressed_dimensions, dimension:<id> or "
                       "trend:<indicator>:baseline|followup|change"),
    method: str = Query("quantiles", description=f"One of {', '.join(METHODS)}"),
    k: int = Query(5, ge=2, le=9, description="Number of classes"),
    palette: str | None = Query(None, description=f"One of {', '.join(PALETTES)} "
                                "(default YlOrRd, PuOr for a change)"),
    run: str = RUN,
    level: int | None = LEVEL,
) -> dict[str, Any]:
    """Return breaks, colours and counts; scores not in the tiles also get {code: value}."""
    choice = map_scores.parse_score(score)
    chosen = palette or ("PuOr" if choice.diverging else "YlOrRd")
    with engine.connect() as conn:
        found = map_scores.resolve_run(conn, run)
        key = ("classes", *_run_key(engine, found), score, method, k, chosen, level)
        body = CACHE.get(key, lambda: map_scores.classes_of(
            conn, found["id"], choice, level, method, k, chosen))
    response.headers.update(cache_headers(run, "public"))
    return {"score": score, "run": found, "level": level, **body}
