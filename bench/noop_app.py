"""The webhook benchmark's anchor: a FastAPI app that reads the body and answers 202.

Served exactly like ingest (``services.ingest.main.uvicorn_options``): same uvicorn, loop,
HTTP parser, logging and host settings, so the difference is the work of the webhook route.
Run with ``python -m bench.noop_app`` (settings from the environment, as for ingest).
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.core.settings import Settings
from services.ingest.main import uvicorn_options


def create_noop_app() -> FastAPI:
    """Return an app whose only route reads the request body and answers 202."""
    app = FastAPI(title="no-op anchor")

    @app.post("/v1/webhooks/{provider}", status_code=202)
    async def accept(provider: str, request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"accepted": 1}, status_code=202)

    return app


if __name__ == "__main__":
    uvicorn.run(create_noop_app(), **uvicorn_options(Settings()))
