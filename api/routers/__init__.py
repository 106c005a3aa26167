"""Every router of the API, collected in one place."""

from api.routers import health, jobs, localities, ogc, runs, tiles, uploads

ROUTERS = [
    health.router, jobs.router, uploads.router, runs.router, localities.router, ogc.router,
    tiles.router,
]

from api.routers import pages_api  # noqa: E402 - the map page's helpers, kept apart

ROUTERS.append(pages_api.router)
