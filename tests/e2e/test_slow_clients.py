"""Slow clients cannot hold the services' connections (issue 14, hostile input).

Both HTTP services run as real processes. Four clients misbehave at once, each on its own
socket: one connects and sends nothing, one sends a request head a byte every half second
(to each service: "slowloris"), and one declares a 2 MB webhook body (which takes the
process's large-body turn) and sends 1 KiB a second. uvicorn alone would keep all of them
open for ever (its keep-alive timeout runs only between requests). Here each must be
answered or closed within the services' bounds: the head within ``HEAD_TIMEOUT_S`` (408 if
begun, a close if nothing came), the body at the pace ``read_body`` requires (408), while
``/healthz`` keeps answering at once. The bounds are restated here (10 s; 10 s plus a second
per 256 KiB), not imported.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from services.core.broker import free_port, wait_for_port
from tests.support.infra import sqlite_database
from tests.support.processes import start_service, stop

pytestmark = pytest.mark.e2e

HEAD_TIMEOUT_S = 10.0
BODY_GRACE_S = 10.0
SLACK_S = 3.0  # scheduling on a busy 2-core machine


def serve(service: str, url: str, tmp_path: Path, stack: ExitStack) -> int:
    port = free_port()
    env = {
        "CLOSEDLOOP_DATABASE_URL": url,
        "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # none needed
        "CLOSEDLOOP_INGEST_PORT": str(port),
        "CLOSEDLOOP_API_PORT": str(port),
    }
    proc: subprocess.Popen[bytes] = start_service(service, env, tmp_path / f"{service}.log")
    stack.callback(stop, proc)
    wait_for_port(port, timeout_s=60)
    return port


@pytest.fixture()
def ports(tmp_path: Path) -> Iterator[dict[str, int]]:
    with sqlite_database(tmp_path) as url, ExitStack() as stack:
        yield {s: serve(s, url, tmp_path, stack) for s in ("ingest", "api")}


def read_all(sock: socket.socket) -> bytes:
    """Read until the server closes the connection (b"" if it closed without a word)."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def idle(port: int) -> tuple[float, bytes]:
    """Connect, send nothing; return when and how the server ended it."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        answer = read_all(sock)
        return time.monotonic() - started, answer


def trickle(port: int, data: bytes, *, every_s: float, piece: int) -> tuple[float, bytes]:
    """Send ``data`` ``piece`` bytes every ``every_s`` until the server answers or closes."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        for at in range(0, len(data), piece):
            try:
                sock.sendall(data[at : at + piece])
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(every_s)
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue  # nothing yet: the next piece
            sock.settimeout(60)
            return time.monotonic() - started, answer + read_all(sock)
        sock.settimeout(60)
        return time.monotonic() - started, read_all(sock)


def status_and_body(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_slow_clients_are_cut_off_and_health_stays_quick(ports: dict[str, int]) -> None:
    slow_head = b"GET /v1/reports/roi HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    body_head = (
        b"POST /v1/webhooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
    )
    slow_body = body_head + b"[" + b" " * 1_999_999
    jobs: dict[str, Callable[[], tuple[float, bytes]]] = {
        "idle ingest": lambda: idle(ports["ingest"]),
        "slow head ingest": lambda: trickle(ports["ingest"], slow_head, every_s=0.5, piece=1),
        "slow head api": lambda: trickle(ports["api"], slow_head, every_s=0.5, piece=1),
        "slow body ingest": lambda: trickle(
            ports["ingest"], slow_body, every_s=1.0, piece=len(body_head) + 1024
        ),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        health = []
        time.sleep(1.0)  # all four are connected and misbehaving
        while not all(f.done() for f in futures.values()):
            for port in ports.values():
                started = time.monotonic()
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
                health.append(time.monotonic() - started)
            time.sleep(0.5)
        ended = {name: f.result() for name, f in futures.items()}

    took, answer = ended["idle ingest"]
    assert answer == b"" and HEAD_TIMEOUT_S - 1 <= took <= HEAD_TIMEOUT_S + SLACK_S, ended
    for name in ("slow head ingest", "slow head api"):
        took, answer = ended[name]
        assert HEAD_TIMEOUT_S - 1 <= took <= HEAD_TIMEOUT_S + SLACK_S, (name, took)
        status, problem = status_and_body(answer)
        assert status == 408 and problem["status"] == 408, (name, answer[:300])
        assert "did not arrive within 10 s" in str(problem["detail"]), problem
    took, answer = ended["slow body ingest"]
    # About 1 KiB a second: far below the pace, so cut off at the grace period (10 s).
    assert BODY_GRACE_S - 1 <= took <= BODY_GRACE_S + SLACK_S, took
    status, problem = status_and_body(answer)
    assert status == 408, answer[:300]
    assert "arrived too slowly" in str(problem["detail"]), problem
    assert b"connection: close" in answer.partition(b"\r\n\r\n")[0].lower()
    assert max(health) < 1.0, health
    # The slow body held the large-body turn (over 1 MiB); cut off, it gave it back: a large
    # body now is read and judged (401: no generic secret is configured), not refused 503.
    large = httpx.post(
        f"http://127.0.0.1:{ports['ingest']}/v1/webhooks/generic",
        content=b"[" + b" " * 1_999_998 + b"]",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert large.status_code == 401, large.text[:300]
