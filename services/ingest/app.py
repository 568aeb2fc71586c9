"""The ingest service: canonical events in over HTTP, onto the events topic.

It has no database of its own (the key table is read-only here): its durable state is the
broker's acknowledgement, and a 202 means every event of the request was acknowledged.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from services.core.db.engine import make_engine, make_sessionmaker
from services.core.http import HttpMetrics, KeyStore, install_problem_handlers
from services.core.openapi import add_components, install_openapi
from services.core.ratelimit import RateLimiter
from services.core.settings import Settings
from services.ingest.admission import MAX_IN_FLIGHT, Admission
from services.ingest.errors import install_ingest_handlers
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher
from services.ingest.routes import events, health, webhooks
from services.ingest.schemas import event_body_components


def create_app(settings: Settings, *, max_in_flight: int = MAX_IN_FLIGHT) -> FastAPI:
    """Build the ingest app; the key store and the producer are created in its lifespan.

    ``max_in_flight`` bounds the ingest requests handled at once (``admission.py``).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        publisher = Publisher(settings)
        app.state.sessions = sessions
        app.state.keystore = KeyStore(sessions, ttl_s=settings.api_key_cache_s)
        app.state.publisher = publisher
        # Connect in the background: start-up must not wait for (or fail on) a missing broker.
        threading.Thread(target=publisher.warm_up, name="ingest-warm-up", daemon=True).start()
        try:
            yield
        finally:
            await run_in_threadpool(publisher.close)
            engine.dispose()

    app = FastAPI(
        title="Closed Loop ingest",
        version="0.1.0",
        lifespan=lifespan,
        description="Canonical CRM and marketing events in; the attribution worker "
        "consumes them from the events topic.",
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(
        rate=settings.rate_limit_per_s, burst=settings.rate_limit_burst
    )
    http_metrics = HttpMetrics("ingest")
    ingest_metrics = IngestMetrics(http_metrics.registry)
    app.state.ingest_metrics = ingest_metrics
    install_problem_handlers(app)
    install_ingest_handlers(app)
    # Inside the timing middleware (added after, so outside it): refusals are counted and timed.
    app.add_middleware(Admission, metrics=ingest_metrics, limit=max_in_flight)
    http_metrics.install(app)
    app.include_router(events.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    # The routes read raw bytes, so FastAPI cannot infer the event schemas: add them.
    install_openapi(
        app,
        extra=lambda schema: add_components(
            schema, event_body_components(settings.max_batch_events)
        ),
    )
    return app
