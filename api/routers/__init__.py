"""Every router of the API, collected in one place."""

from api.routers import health, jobs, keys, localities, maps, ogc, runs, tiles, uploads

ROUTERS = [
    health.router, jobs.router, uploads.router, runs.router, localities.router, ogc.router,
    tiles.router, maps.router, keys.router,
]
