"""Sending hostile requests and recording what came back, as a client on loopback would.

Credentials are made by the independent signers of ``tests/support/signers`` (written from each
provider's documentation, not from the code under test): an ingest bearer key for
``/v1/events``, each provider's own scheme for its webhook. A request that gets no answer
within ``TIMEOUT_S`` (or whose connection is reset) is recorded with status 0.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

import httpx

from chaos.edge_stack import PROVIDER_SECRETS
from chaos.hostile_corpus import Hostile

TIMEOUT_S = 15.0


@dataclass
class Answer:
    """What one request got: status (0: none), body, seconds, and the client error if any."""

    status: int
    body: bytes
    latency_s: float
    error: str | None = None


def path_of(endpoint: str) -> str:
    """Return the URL path of an endpoint (``events`` or a webhook provider)."""
    return "/v1/events" if endpoint == "events" else f"/v1/webhooks/{endpoint}"


def credentials(endpoint: str, body: bytes, url: str, key: str) -> dict[str, str]:
    """Return the headers that authenticate ``body`` on ``endpoint`` (its own scheme)."""
    if endpoint == "events":
        return {"Authorization": f"Bearer {key}"}
    signer: Any = import_module(f"tests.support.signers.{endpoint}")
    return dict(
        signer.headers(body, secret=PROVIDER_SECRETS[endpoint], url=url, now=datetime.now(UTC))
    )


def _chunks(body: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def send(client: httpx.Client, base_url: str, key: str, hostile: Hostile) -> Answer:
    """Send one hostile request; return what came back."""
    url = base_url + path_of(hostile.endpoint)
    if hostile.category == "oversized_headers":
        return send_raw(url, hostile.headers, hostile.body, hostile.content_type)
    headers = {"Content-Type": hostile.content_type, **hostile.headers}
    if hostile.sign:
        headers.update(credentials(hostile.endpoint, hostile.body, url, key))
    content: Any = _chunks(hostile.body) if hostile.chunked else hostile.body
    started = time.perf_counter()
    try:
        response = client.post(url, content=content, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Answer(0, b"", time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    return Answer(response.status_code, response.content, time.perf_counter() - started)


def send_raw(url: str, headers: dict[str, str], body: bytes, content_type: str) -> Answer:
    """Send a request with an oversized head over a plain socket; return the answer.

    Plain sockets, because an HTTP client library may refuse to send such a head at all.
    """
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    started = time.perf_counter()
    answer = b""
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT_S) as sock:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as exc:
        if not answer:
            return Answer(0, b"", time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - started
    head, _, content = answer.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return Answer(0, answer[:200], latency, "no HTTP answer")
    return Answer(status, content, latency)


def verdict(hostile: Hostile, answer: Answer) -> str | None:
    """Return why ``answer`` is wrong for ``hostile``, or None when it is what must come back."""
    if answer.status == 0:
        return f"no answer ({answer.error})"
    text = answer.body.decode("latin-1").lower()
    if hostile.expect == "ignored":
        if answer.status not in (200, 202):
            return f"status {answer.status}, expected 2xx (acknowledged and ignored)"
        if '"accepted":0' not in text.replace(" ", "") and "<ack>true</ack>" not in text:
            return f"not ignored: {text[:200]}"
        return None
    if answer.status not in hostile.statuses:
        return f"status {answer.status}, expected one of {hostile.statuses}: {text[:300]}"
    if hostile.names and not any(name in text for name in hostile.names):
        return f"the answer names none of {hostile.names}: {text[:300]}"
    return None
