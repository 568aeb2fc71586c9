"""Liveness and readiness (``/metrics`` is installed by ``HttpMetrics``)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from services.core.http import unavailable
from services.ingest.deps import SessionsDep, SettingsDep
from services.ingest.publisher import broker_answers

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Answer 200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(settings: SettingsDep, sessions: SessionsDep) -> dict[str, str]:
    """Answer 200 when the broker answers metadata within ~2 s and the key database answers."""
    failures = []
    if not broker_answers(settings, timeout_s=2.0):
        failures.append(f"the broker at {settings.kafka_bootstrap_servers} does not answer")
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        failures.append("the API key database does not answer")
    if failures:
        raise unavailable("; ".join(failures))
    return {"status": "ready"}
