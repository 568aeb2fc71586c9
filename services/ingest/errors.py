"""Ingest-specific exception handlers: exception class → status + RFC 9457 body.

Everything that is the broker's or the key database's fault is a 503 with ``Retry-After``
(the client should retry the same request); a 500 is reserved for bugs.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from services.core.http import Problem, problem_response, unavailable
from services.ingest.publisher import BrokerUnavailable, Overloaded, RecordTooLarge

log = logging.getLogger(__name__)


def broker_problem(exc: BrokerUnavailable) -> Problem:
    """Return the 503 for a publish that failed (``Overloaded``: the queue was full)."""
    if isinstance(exc, Overloaded):
        return unavailable(
            "too many events are waiting for the event broker; retry the same request "
            "shortly (nothing of it was published)"
        )
    return unavailable(
        "the event broker did not acknowledge every event; retry the same request "
        "(events already received are recognised by event_id and counted once)"
    )


def install_ingest_handlers(app: FastAPI) -> None:
    """Register the handlers for the ingest service's own exceptions."""

    @app.exception_handler(BrokerUnavailable)
    async def _broker(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        log.debug("answering 503: %s", exc)  # the publisher logs the outage itself, once
        return problem_response(broker_problem(exc))

    @app.exception_handler(RecordTooLarge)
    async def _too_large(_: Request, exc: RecordTooLarge) -> JSONResponse:
        return problem_response(Problem(413, "Payload Too Large", str(exc)))

    @app.exception_handler(SQLAlchemyError)
    async def _database(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.warning("answering 503, key store error: %s", exc)
        return problem_response(unavailable("the API key store is unavailable"))
