"""Run the ingest service under uvicorn (``closedloop ingest`` calls ``run``)."""

from __future__ import annotations

from typing import Any

import uvicorn

from services.core.settings import Settings
from services.ingest.app import create_app


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Return how ingest is served (the webhook benchmark serves its no-op anchor the same way)."""
    return {
        "host": settings.ingest_host,
        "port": settings.ingest_port,
        "log_level": "info",
        "timeout_graceful_shutdown": max(int(settings.publish_timeout_s) + 1, 5),
    }


def run(settings: Settings) -> None:
    """Serve the ingest API on ``settings.ingest_host:ingest_port`` until interrupted."""
    uvicorn.run(create_app(settings), **uvicorn_options(settings))
