"""Run the ingest service under uvicorn (``closedloop ingest`` calls ``run``)."""

from __future__ import annotations

import os
from typing import Any

import uvicorn
from fastapi import FastAPI

from services.core.logs import configure_logging, uvicorn_log_options
from services.core.serving import uvicorn_limits
from services.core.settings import Settings
from services.ingest.app import create_app


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Return how ingest is served (the webhook benchmark serves its no-op anchor the same way)."""
    return {
        "host": settings.ingest_host,
        "port": settings.ingest_port,
        **uvicorn_log_options(verbose=settings.verbose),
        "timeout_graceful_shutdown": max(int(settings.publish_timeout_s) + 1, 5),
        **uvicorn_limits(),
    }


def run(settings: Settings) -> None:
    """Serve the ingest API on ``settings.ingest_host:ingest_port`` until interrupted.

    With ``ingest_workers`` > 1, uvicorn runs that many processes on the one port, each with
    its own producer: validation and publishing are CPU-bound Python, so one process uses one
    core. The processes rebuild their settings from the environment, so ``settings`` is
    exported to it first.
    """
    configure_logging(verbose=settings.verbose, process="ingest")
    if settings.ingest_workers <= 1:
        uvicorn.run(create_app(settings), **uvicorn_options(settings))
        return
    os.environ.update(
        {
            f"CLOSEDLOOP_{name.upper()}": str(value)
            for name, value in settings.model_dump().items()
            if value is not None
        }
    )
    uvicorn.run(
        "services.ingest.main:app_from_environment",
        factory=True,
        workers=settings.ingest_workers,
        **uvicorn_options(settings),
    )


def app_from_environment() -> FastAPI:
    """Build the ingest app from the environment (each worker process calls this)."""
    settings = Settings()
    configure_logging(verbose=settings.verbose, process="ingest")
    return create_app(settings)
