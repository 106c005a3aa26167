"""Every router of the API, collected in one place."""

from api.routers import health, jobs, localities, maps, ogc, runs, subgroups, tiles, uploads

ROUTERS = [
    health.router, jobs.router, uploads.router, runs.router, localities.router, ogc.router,
    tiles.router, maps.router, subgroups.router,
]
