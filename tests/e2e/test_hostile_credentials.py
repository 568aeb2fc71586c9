"""Hostile credentials cannot grow the services (issue 9, item 6).

Both HTTP services run as real processes (uvicorn, as ``closedloop ingest`` / ``closedloop
api`` serve them). A client with no valid key sends 200 requests with a 1 MB bearer token,
each different, then 200 with a token just under the server's header cap (so it reaches the
app and its key check); the process's resident memory, read from ``/proc``, must stay flat.
Before the fix each unknown token was cached by its raw text: +1 MB per request.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.broker import free_port, wait_for_port
from tests.support.infra import sqlite_database
from tests.support.processes import start_service, stop

pytestmark = pytest.mark.e2e

REQUESTS = 200
HUGE_TOKEN = 1024 * 1024
JUST_UNDER_CAP = 48 * 1024  # the services refuse a request head beyond 64 KiB
MAX_GROWTH_KIB = 16 * 1024


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def raw_request(port: int, path: str, token: bytes) -> int:
    """Send one request with ``Authorization: Bearer <token>``; return the status (0: reset)."""
    return int(raw_answer(port, path, token).split(b" ", 2)[1] or 0)


def raw_answer(port: int, path: str, token: bytes) -> bytes:
    """Send one request with ``Authorization: Bearer <token>``; return the raw answer."""
    method = "POST" if path == "/v1/events" else "GET"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\nConnection: close\r\nAuthorization: Bearer "
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head + token + b"\r\n\r\n{}")
            answer = b""
            while chunk := sock.recv(65536):  # the services close after answering
                answer += chunk
        except (ConnectionResetError, BrokenPipeError):
            return b"reset  "
    return answer if answer.startswith(b"HTTP/1.1 ") else b"nothing  "


def token(size: int) -> bytes:
    """A different printable token of ``size`` bytes each time."""
    return secrets.token_urlsafe(size)[:size].encode()


@pytest.fixture(params=["ingest", "api"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, str, int]]:
    """One service as a process on a fresh SQLite key database: (pid, path to post to, port)."""
    with sqlite_database(tmp_path) as url:
        port = free_port()
        env = {
            "CLOSEDLOOP_DATABASE_URL": url,
            # No broker: nothing here gets past authentication.
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "CLOSEDLOOP_INGEST_PORT": str(port),
            "CLOSEDLOOP_API_PORT": str(port),
        }
        proc: subprocess.Popen[bytes] = start_service(
            request.param, env, tmp_path / f"{request.param}.log"
        )
        try:
            wait_for_port(port, timeout_s=60)
            path = "/v1/events" if request.param == "ingest" else "/v1/reports/roi"
            yield proc.pid, path, port
        finally:
            stop(proc)


def test_huge_bearer_tokens_leave_memory_flat(service: tuple[int, str, int]) -> None:
    pid, path, port = service
    for _ in range(20):  # warm up: first requests allocate the app's lasting structures
        raw_request(port, path, token(40))
    before = rss_kib(pid)
    huge = [raw_request(port, path, token(HUGE_TOKEN)) for _ in range(REQUESTS)]
    after_huge = rss_kib(pid)
    under_cap = [raw_request(port, path, token(JUST_UNDER_CAP)) for _ in range(REQUESTS)]
    after = rss_kib(pid)
    print(f"RSS KiB: before {before}, after 1 MB tokens {after_huge}, after 48 KB tokens {after}")
    assert after_huge - before < MAX_GROWTH_KIB, (before, after_huge)
    assert after - before < MAX_GROWTH_KIB, (before, after_huge, after)
    # Refused at the server (head too large) or, under the cap, by the key check: never a 5xx.
    assert set(huge) <= {431, 0} and huge.count(431) >= REQUESTS // 2, huge
    assert set(under_cap) == {401}, under_cap
    # Just over the cap, in one piece: refused by the server with a problem body.
    answer = raw_answer(port, path, token(70 * 1024))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), head
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["status"] == 431
