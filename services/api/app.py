"""The read API (contract §6): reports over the attribution projection, read-only.

``create_app(settings)`` wires everything explicitly: the lifespan creates the engine, the
session factory and the API key store on ``app.state`` and disposes of the engine on shutdown;
routes reach them through ``services.api.deps``. The API never commits: every request reads one
snapshot and rolls back. Every route but the health probes and ``/metrics`` needs a bearer key
with the ``read`` scope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.api.db import make_read_engine
from services.api.errors import install_errors
from services.api.routes import deals, health, models, reports
from services.core.db.engine import make_sessionmaker
from services.core.http import HttpMetrics, KeyStore
from services.core.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """Build the read API for ``settings`` (no connection is opened before start-up)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_read_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        app.state.engine = engine
        app.state.sessions = sessions
        app.state.keys = KeyStore(sessions, ttl_s=settings.api_key_cache_s)
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="Closed Loop read API",
        version="1.0",
        description="Revenue attribution reports: every closed-won deal's revenue "
        "credited, to the cent, to the campaigns that touched it.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_errors(app)
    HttpMetrics("api").install(app)
    for router in (health.router, models.router, reports.router, deals.router):
        app.include_router(router)
    return app
