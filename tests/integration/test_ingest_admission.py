"""Ingest under overload and large bodies (issue 14, found by the overload and hostile scenarios).

The real ingest app is served by uvicorn (as ``closedloop ingest`` serves it) on a real broker
and PostgreSQL; requests are held in flight by sending their head and only part of their body
over a plain socket, so the tests control exactly what the server is busy with.
- Beyond ``max_in_flight`` requests, a request is refused at once: 503 with ``Retry-After``,
  nothing of it published (before: it queued, and 400 clients saw p99 15 s and timeouts).
- Large bodies are read and parsed one at a time; a small request never waits for them; a
  large one that cannot get its turn soon is refused 503 with ``Retry-After``.
- A refused large webhook body leaves nothing parsed alive (before: its traceback, in a
  reference cycle, kept hundreds of MB until a full garbage collection).
"""

from __future__ import annotations

import gc
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.core.auth import create_key
from services.core.broker import free_port, wait_for_port
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.events import decode_record
from services.core.serving import uvicorn_limits
from services.core.settings import Settings
from services.ingest.admission import LARGE_BODY_BYTES, LARGE_WAIT_S
from services.ingest.app import create_app
from tests.conftest import make_settings
from tests.integration.test_ingest import read_topic
from tests.support.signers.generic import standard_headers

pytestmark = pytest.mark.integration

SECRET = "whsec_YWRtaXNzaW9uLXRlc3Qtc2VjcmV0"


@pytest.fixture(scope="module")
def key(pg_url: str) -> str:
    engine = make_engine(pg_url)
    with make_sessionmaker(engine)() as session, session.begin():
        made = create_key(session, name=f"admission-{uuid.uuid4().hex[:6]}", scopes=["ingest"])
    engine.dispose()
    return made


@pytest.fixture()
def settings(pg_url: str, broker: str) -> Settings:
    return make_settings(
        database_url=pg_url,
        bootstrap=broker,
        webhook_secret_generic=SECRET,
        salesforce_org_ids="00D5w000004qGTO",
    )


@contextmanager
def served(app: FastAPI) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free loopback port, as the ingest service is served."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", **uvicorn_limits()
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port, timeout_s=30)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)


def touch(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "touch",
        "occurred_at": "2026-11-01T10:00:00Z",
        "campaign_id": "c1",
        "contact_id": "p1",
    }


@contextmanager
def half_sent(
    port: int, path: str, headers: dict[str, str], body: bytes
) -> Iterator[socket.socket]:
    """Send a request's head and all but the last byte of its body; the caller finishes it."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[:-1])
        yield sock
    finally:
        sock.close()


def finish(sock: socket.socket, body: bytes) -> int:
    """Send the last byte of a half-sent request; return the answer's status."""
    sock.sendall(body[-1:])
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    return int(answer.split(b" ", 2)[1])


def wait_in_flight(port: int, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        if f"closedloop_ingest_requests_in_flight {count}.0" in metrics:
            return
        time.sleep(0.05)
    raise AssertionError(f"never {count} requests in flight")


def test_requests_beyond_capacity_are_refused_at_once_and_publish_nothing(
    settings: Settings, key: str
) -> None:
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    held = [orjson.dumps(touch(f"held-{n}-{uuid.uuid4().hex}")) for n in range(2)]
    refused_id = f"refused-{uuid.uuid4().hex}"
    with served(create_app(settings, max_in_flight=2)) as port:
        url = f"http://127.0.0.1:{port}"
        with (
            half_sent(port, "/v1/events", auth, held[0]) as a,
            half_sent(port, "/v1/events", auth, held[1]) as b,
        ):
            wait_in_flight(port, 2)
            started = time.perf_counter()
            refused = httpx.post(f"{url}/v1/events", content=orjson.dumps(touch(refused_id)),
                                 headers=auth)  # fmt: skip
            elapsed = time.perf_counter() - started
            soap = httpx.post(f"{url}/v1/webhooks/salesforce", content=b"<x/>",
                              headers={"Content-Type": "text/xml"})  # fmt: skip
            assert httpx.get(f"{url}/healthz").status_code == 200  # never refused
            assert [finish(a, held[0]), finish(b, held[1])] == [202, 202]
        assert refused.status_code == 503 and elapsed < 1.0
        assert refused.headers["retry-after"] == "5"
        assert refused.headers["content-type"] == "application/problem+json"
        assert "capacity" in refused.json()["detail"]
        assert soap.status_code == 503 and soap.headers["retry-after"] == "5"
        assert b"<faultcode>soapenv:Server</faultcode>" in soap.content
        again = httpx.post(f"{url}/v1/events", content=orjson.dumps(touch(f"again-{refused_id}")),
                           headers=auth)  # fmt: skip
        assert again.status_code == 202
        metrics = httpx.get(f"{url}/metrics").text
    assert 'closedloop_ingest_requests_refused_total{endpoint="events",status="503"} 1.0' in metrics
    published = {
        e.event_id
        for r in read_topic(settings.kafka_bootstrap_servers, settings.events_topic)
        for e in decode_record(r.value).events
    }
    assert refused_id not in published and f"again-{refused_id}" in published
    assert {orjson.loads(h)["event_id"] for h in held} <= published


def test_large_bodies_take_turns_and_small_ones_never_wait(settings: Settings, key: str) -> None:
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    large = b'{"events": ["' + b"x" * (LARGE_BODY_BYTES + 10) + b'"]}'
    with served(create_app(settings)) as port, ThreadPoolExecutor(2) as pool:
        url = f"http://127.0.0.1:{port}"

        def post(body: bytes) -> tuple[int, float, str | None]:
            started = time.perf_counter()
            r = httpx.post(f"{url}/v1/events", content=body, headers=auth, timeout=30)
            return r.status_code, time.perf_counter() - started, r.headers.get("retry-after")

        with half_sent(port, "/v1/events", auth, large) as holder:
            wait_in_flight(port, 1)
            waiting = pool.submit(post, large)
            small = post(orjson.dumps(touch(f"small-{uuid.uuid4().hex}")))
            assert small[0] == 202 and small[1] < 2.0, small
            status, waited, retry_after = waiting.result(timeout=30)
            assert status == 503 and retry_after == "5"
            assert LARGE_WAIT_S - 0.5 < waited < LARGE_WAIT_S + 5
            assert finish(holder, large) == 422  # its turn: read and parsed (a string is no event)
        assert post(large)[0] == 422  # the turn was handed back


def test_a_refused_large_webhook_body_leaves_nothing_parsed_alive(settings: Settings) -> None:
    body = b'{"events": [' + b",".join([b"{}"] * 300_000) + b"]}"  # 900 kB: parsed in a thread
    headers = {"Content-Type": "application/json"}
    headers.update(standard_headers(body, secret=SECRET, now=datetime.now(UTC)))
    with TestClient(create_app(settings)) as client:
        gc.collect()
        gc.disable()  # what remains must be unreachable by reference counts alone
        try:
            response = client.post("/v1/webhooks/generic", content=body, headers=headers)
            alive = [o for o in gc.get_objects() if type(o) is list and len(o) >= 300_000]
        finally:
            gc.enable()
    assert response.status_code == 422 and "5000" in response.json()["detail"]
    assert alive == []


@pytest.mark.parametrize("provider", ["hubspot", "pipedrive", "segment"])
def test_small_delivery_providers_refuse_bodies_over_one_mib(
    pg_url: str, broker: str, provider: str
) -> None:
    settings = make_settings(
        database_url=pg_url,
        bootstrap=broker,
        webhook_secret_hubspot="s",
        webhook_basic_pipedrive="u:p",
        webhook_secret_segment="s",
    )
    headers = {"Content-Type": "application/json"}
    with TestClient(create_app(settings)) as client:
        over = client.post(f"/v1/webhooks/{provider}", content=b" " * ((1 << 20) + 1),
                           headers=headers)  # fmt: skip
        under = client.post(f"/v1/webhooks/{provider}", content=b" " * (1 << 20), headers=headers)
    assert over.status_code == 413 and str(1 << 20) in over.json()["detail"]
    assert under.status_code == 401  # within the bound: on to authentication
