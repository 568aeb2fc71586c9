"""Liveness and readiness (no authentication: probes and load balancers call them)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from services.api.schemas import HealthOut
from services.core.http import unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> HealthOut:
    """Answer while the process serves HTTP."""
    return HealthOut(status="ok")


@router.get("/readyz", responses={503: {"description": "the database does not answer"}})
def readyz(request: Request) -> HealthOut:
    """Answer 200 when the database answers ``SELECT 1``, else 503."""
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise unavailable(f"database not ready: {type(exc).__name__}") from exc
    return HealthOut(status="ready")
