"""Named layers: delete one (admin). Listing lives beside the other read routes (`/layers`)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from api.auth import require_role
from api.deps import EngineDep, SettingsDep
from geo.ingest.layers import delete_named_layer

router = APIRouter(prefix="/api/v1/layers", tags=["layers"])

LayerKind = Literal["hazard", "population", "events", "institutions"]


@router.delete(
    "/{kind}/{name}",
    summary="Delete a named layer and everything it holds",
    responses={
        401: {"description": "No API key"},
        403: {"description": "Key without the admin role"},
        404: {"description": "No layer of that kind and name"},
        409: {"description": "A score run is going, or the layer is being uploaded"},
    },
)
async def delete_layer(
    engine: EngineDep,
    settings: SettingsDep,
    kind: LayerKind = PathParam(..., description="hazard, population, events or institutions"),
    name: str = PathParam(..., max_length=200, description="The layer's name"),
    _: str = Depends(require_role("admin")),
) -> dict[str, Any]:
    """Delete the layer in one transaction (its raster files after it); 409 while a run goes."""
    return await run_in_threadpool(delete_named_layer, engine, settings, kind, name)
