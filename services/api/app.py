"""The read API (contract §6): reports over the attribution projection, read-only but for admin.

``create_app(settings)`` wires everything explicitly: the lifespan creates the engines, the
session factories, the API key store and the publisher on ``app.state`` and closes them on
shutdown; routes reach them through ``services.api.deps``. Every request reads one snapshot and
rolls back. Every route but the health probes, ``/metrics`` and the dashboard's static files
needs a bearer key: ``read`` for the reports, ``admin`` for ``/v1/admin`` (dead letters, the
audit log) and the model writes.

The exceptions to "the API is read-only" are admin writes: ``POST
/v1/admin/dead-letters/{id}/retry`` re-publishes a dead letter and marks its ``retried_at``;
``POST /v1/models/{id}/fit``, ``PUT`` and ``DELETE /v1/models/{id}`` queue fits and define or
delete custom models. Each records itself in the audit log (``services.core.audit``) in its
own transaction. They go through a separate, writable engine used by nothing else, so
every report keeps its read-only engine. The retry's producer connects lazily, on the first
retry (most API processes never retry anything).

The web dashboard (``services.api.dashboard``) is served at ``/`` with no key: its pages are
static and call the read API with the user's key, like any client.

Rendered reports are kept in ``app.state.reports`` under the projection version they were
built from (``services.api.cache``), one cache per app start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from services.api.cache import CachedReports, ReportCache
from services.api.conflicts import ConflictGauges
from services.api.consumer_lag import ConsumerLagGauges
from services.api.dashboard import router as dashboard_router
from services.api.db import make_read_engine, make_statement_engine
from services.api.errors import install_errors
from services.api.routes import (
    accounts,
    audit,
    backtest,
    conflicts,
    dead_letters,
    deals,
    funnel,
    health,
    influence,
    lead_definitions,
    models,
    mqls,
    pipeline,
    reports,
)
from services.api.sla_windows import SlaWindows
from services.api.work_queue import WorkQueueGauges
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.http import HttpMetrics, KeyStore
from services.core.openapi import install_openapi
from services.core.publisher import Publisher
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
        statements = make_statement_engine(settings.database_url)
        app.state.reports = CachedReports(statements, sessions, ReportCache())
        # Neither connects here: the engine on first use, the producer on the first retry.
        admin_engine = make_engine(settings.database_url)
        app.state.admin_sessions = make_sessionmaker(admin_engine)
        publisher = Publisher(settings, client_id="closedloop-api")
        app.state.publisher = publisher
        try:
            yield
        finally:
            await run_in_threadpool(publisher.close)
            consumer_lag.close()
            admin_engine.dispose()
            statements.dispose()
            engine.dispose()

    app = FastAPI(
        title="Closed Loop read API",
        version="1.0",
        description="Revenue attribution reports: every closed-won deal's revenue "
        "credited, to the cent, to the campaigns that touched it.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sla_windows = SlaWindows()  # how long each SLA answer stays true, per version
    install_errors(app)
    metrics = HttpMetrics("api")
    metrics.registry.register(ConflictGauges(lambda: app.state.sessions))
    metrics.registry.register(WorkQueueGauges(lambda: app.state.sessions))
    # Its Kafka client connects on the first scrape (no consumer group; see the module).
    consumer_lag = ConsumerLagGauges(settings, lambda: app.state.sessions)
    metrics.registry.register(consumer_lag)
    metrics.install(app)
    for router in (
        health.router,
        models.router,
        reports.router,
        influence.router,
        pipeline.router,
        funnel.router,
        deals.router,
        accounts.router,
        lead_definitions.router,
        backtest.router,
        mqls.router,
        dead_letters.router,
        audit.router,
        conflicts.router,
        dashboard_router,
    ):
        app.include_router(router)
    install_openapi(app)
    return app
