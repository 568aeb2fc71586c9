"""Run the ingest service under uvicorn (``closedloop ingest`` calls ``run``)."""

from __future__ import annotations

import uvicorn

from services.core.settings import Settings
from services.ingest.app import create_app


def run(settings: Settings) -> None:
    """Serve the ingest API on ``settings.ingest_host:ingest_port`` until interrupted."""
    uvicorn.run(
        create_app(settings),
        host=settings.ingest_host,
        port=settings.ingest_port,
        log_level="info",
        timeout_graceful_shutdown=max(int(settings.publish_timeout_s) + 1, 5),
    )
