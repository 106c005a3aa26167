"""Every router of the API, collected in one place."""

from api.routers import health, jobs

ROUTERS = [health.router, jobs.router]
