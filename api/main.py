"""The FastAPI app factory; `app` is the module-level instance uvicorn serves."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.errors import install_error_handlers
from api.profile_cache import ProfileCache, ServeCachedProfiles
from api.routers import ROUTERS
from api.settings import ApiSettings
from api.version import app_version
from frontend.pages import STATIC_DIR
from frontend.pages import router as pages_router
from geo.db import build_engine, check_database, resolve_database_url, session_factory
from geo.ingest.load import remove_orphan_rasters
from geo.jobs import recover_interrupted_jobs
from geo.keys import FailedKeyAttempts
from geo.settings import Settings

log = logging.getLogger(__name__)


class JobExecutor(ThreadPoolExecutor):
    """The app's job threads; every finished job (ingest or run) calls `on_done`."""

    def __init__(self, workers: int, on_done: Callable[[], None]) -> None:
        super().__init__(workers, "riskatlas-job")
        self.on_done = on_done

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue `fn` like ThreadPoolExecutor.submit, and call `on_done` when it ends."""
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _: self.on_done())
        return future


def create_app(
    settings: Settings | None = None, api_settings: ApiSettings | None = None
) -> FastAPI:
    """Return a riskatlas app bound to these settings; the lifespan opens and closes the pool."""
    settings = settings or Settings()
    api_settings = api_settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = build_engine(resolve_database_url(settings), settings)
        check_database(engine)
        recovered = recover_interrupted_jobs(engine, settings.storage.staging_dir)
        orphans = remove_orphan_rasters(engine, settings.storage.raster_dir)
        if recovered or orphans:
            log.warning("cleaned up after an interruption: %d job(s) failed, %d orphan file(s)",
                        recovered, orphans)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        # New data or a new run may change any cached profile.
        app.state.jobs = JobExecutor(api_settings.job_workers, app.state.profiles.clear)
        try:
            yield
        finally:
            app.state.jobs.shutdown(wait=True, cancel_futures=False)
            # Tile services keep connections and open COGs of their own; give them back.
            tiles = getattr(app.state, "tile_service", None)
            if tiles is not None and tiles.connections is not None:
                tiles.connections.close()
            rasters = getattr(app.state, "raster_tile_service", None)
            if rasters is not None:
                rasters.readers.close()
            engine.dispose()

    app = FastAPI(
        title=api_settings.title,
        version=app_version(),
        description=(
            "Geospatial risk mapping for human security: who is left behind, where, and why. "
            "Localities, hazard layers, conflict events, institutions and survey indicators "
            "in PostGIS, overlaid into compounded-stress scores."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_settings = api_settings
    app.state.profiles = ProfileCache()
    app.state.key_attempts = FailedKeyAttempts(api_settings.key_failures_per_minute, 60.0)
    install_error_handlers(app)
    app.add_middleware(ServeCachedProfiles, cache=app.state.profiles)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn api.main:app` gets an app built from the environment, lazily, so importing
    # this module (tests, tools) does not start a database.
    if name == "app":
        return create_app()
    raise AttributeError(name)
