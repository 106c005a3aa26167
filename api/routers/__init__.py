"""Every router of the API, collected in one place."""

from api.routers import (
    health,
    jobs,
    keys,
    layers,
    localities,
    maps,
    ogc,
    runs,
    subgroups,
    tiles,
    uploads,
)

ROUTERS = [
    health.router, jobs.router, uploads.router, layers.router, runs.router, localities.router,
    ogc.router, tiles.router, maps.router, subgroups.router, keys.router,
]
