"""Liveness and readiness (``/metrics`` is installed by ``HttpMetrics``).

Both run on the event loop and never wait on publishing: a broker outage leaves the request
threadpool busy with clients' requests, and a liveness probe queued behind them would have
the orchestrator kill a healthy process. Readiness reads the publisher's breaker (never a
broker round trip) and checks the key database on threads of its own, within a bound.
"""

from __future__ import annotations

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from services.core.http import unavailable
from services.ingest.deps import PublisherDep, SessionsDep

router = APIRouter(tags=["health"])

DATABASE_CHECK_S = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answer 200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(
    request: Request, publisher: PublisherDep, sessions: SessionsDep
) -> dict[str, str]:
    """Answer 200 when the broker takes events and the key database answers within ~2 s."""
    publisher.check_soon()  # refreshes the broker's state in the background
    failures = []
    broker = publisher.broker_problem()
    if broker is not None:
        failures.append(broker)
    if not await _database_answers(sessions, _check_threads(request)):
        failures.append("the API key database does not answer")
    if failures:
        raise unavailable("; ".join(failures))
    return {"status": "ready"}


def _check_threads(request: Request) -> anyio.CapacityLimiter:
    """Return the app's own threads for readiness checks (never queued behind requests)."""
    state = request.app.state
    if getattr(state, "check_threads", None) is None:
        state.check_threads = anyio.CapacityLimiter(2)  # made on the app's event loop
    limiter: anyio.CapacityLimiter = state.check_threads
    return limiter


async def _database_answers(
    sessions: sessionmaker[Session], limiter: anyio.CapacityLimiter
) -> bool:
    def select_one() -> None:
        with sessions() as session:
            session.execute(text("SELECT 1"))

    with anyio.move_on_after(DATABASE_CHECK_S):
        try:
            await anyio.to_thread.run_sync(select_one, abandon_on_cancel=True, limiter=limiter)
        except SQLAlchemyError:
            return False
        return True
    return False
