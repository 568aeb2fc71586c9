"""Dependencies: what routes may use, reached through ``Annotated`` aliases.

Resources (key store, publisher, sessions) are created by the app's lifespan and kept on
``app.state``; nothing here is built at import time. The accessors are ``async`` because they
do no I/O: FastAPI runs a plain ``def`` dependency in its threadpool, and a thread hop per
accessor per request was a large share of a single-event webhook's cost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from services.core.auth import Principal
from services.core.http import KeyStore, Problem, authorize
from services.core.settings import Settings
from services.ingest.admission import large_body_turn
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher

_bearer = HTTPBearer(auto_error=False, description="An API key with the `ingest` scope")

# How fast a body must arrive (``read_body``): Apache's mod_reqtimeout rule, body=10,MinRate.
BODY_GRACE_S = 10.0
BODY_MIN_BYTES_PER_S = 256 * 1024


async def get_settings(request: Request) -> Settings:
    """Return the app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_publisher(request: Request) -> Publisher:
    """Return the app's publisher."""
    publisher: Publisher = request.app.state.publisher
    return publisher


async def get_keystore(request: Request) -> KeyStore:
    """Return the app's API key store."""
    keystore: KeyStore = request.app.state.keystore
    return keystore


async def get_sessions(request: Request) -> sessionmaker[Session]:
    """Return the app's session factory (the key database)."""
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


async def get_metrics(request: Request) -> IngestMetrics:
    """Return the app's ingest counters."""
    metrics: IngestMetrics = request.app.state.ingest_metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
KeyStoreDep = Annotated[KeyStore, Depends(get_keystore)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
MetricsDep = Annotated[IngestMetrics, Depends(get_metrics)]


async def ingest_principal(
    keystore: KeyStoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Return the caller's principal if its bearer key holds the ``ingest`` scope, else raise."""
    header = f"Bearer {credentials.credentials}" if credentials else None
    return await authorize(keystore, header, "ingest")


IngestPrincipal = Annotated[Principal, Depends(ingest_principal)]


async def json_body(request: Request, settings: SettingsDep) -> AsyncIterator[bytes]:
    """Yield the raw JSON body: 415 unless JSON, 413 beyond ``max_body_bytes`` (never buffered).

    A large body is read, and the route that takes it runs, holding the process's large-body
    turn (``admission.large_body_turn``).
    """
    async with large_body_turn(request, limit=settings.max_body_bytes):
        yield await read_json_body(request, limit=settings.max_body_bytes)


_JSON = frozenset({"application/json"})


async def read_json_body(request: Request, *, limit: int) -> bytes:
    """Read a JSON body of at most ``limit`` bytes (415 unless JSON, 413 beyond, 400 bad length)."""
    return await read_body(request, limit=limit, media_types=_JSON)


async def read_body(request: Request, *, limit: int, media_types: frozenset[str]) -> bytes:
    """Read a body of one of ``media_types`` and at most ``limit`` bytes (415, 413, 400).

    408 for a body slower than ``BODY_GRACE_S`` plus a second per ``BODY_MIN_BYTES_PER_S``
    bytes received: a client trickling a body would otherwise hold its connection, and for a
    large body the process's large-body turn, for as long as it likes.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in media_types:
        wanted = " or ".join(sorted(media_types))
        raise Problem(
            415,
            "Unsupported Media Type",
            f"send Content-Type: {wanted} (got {media_type or 'none'!r})",
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "Bad Request", "Content-Length must be a number of bytes")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    started = time.monotonic()
    stream = request.stream()
    while True:
        # The body must keep pace: BODY_GRACE_S, plus a second per BODY_MIN_BYTES_PER_S bytes.
        allowed = started + BODY_GRACE_S + size / BODY_MIN_BYTES_PER_S - time.monotonic()
        try:
            with anyio.fail_after(max(allowed, 0.0)):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return b"".join(chunks)
        except TimeoutError:
            raise _too_slow(size) from None
        size += len(chunk)
        # Counted as read too: a chunked body has no Content-Length to check up front.
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)


def _too_slow(received: int) -> Problem:
    return Problem(
        408,
        "Request Timeout",
        f"the body arrived too slowly ({received} bytes so far): a body may take "
        f"{BODY_GRACE_S:g} s plus a second per {BODY_MIN_BYTES_PER_S // 1024} KiB",
        headers={"Connection": "close"},
    )


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "Payload Too Large",
        f"the body exceeds {limit} bytes; split the events into smaller batches",
    )


JsonBody = Annotated[bytes, Depends(json_body)]
