"""Run the read API with uvicorn (``closedloop api``)."""

from __future__ import annotations

import uvicorn

from services.api.app import create_app
from services.core.logs import configure_logging, uvicorn_log_options
from services.core.serving import uvicorn_limits
from services.core.settings import Settings


def run(settings: Settings) -> None:
    """Serve the read API on ``settings.api_host:settings.api_port`` until stopped."""
    configure_logging(verbose=settings.verbose, process="api")
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        proxy_headers=False,
        **uvicorn_log_options(verbose=settings.verbose),  # type: ignore[arg-type]
        **uvicorn_limits(),
    )
