"""Single-event webhooks: requests/s of ``POST /v1/webhooks/generic`` under wrk, against a no-op.

Every request carries one canonical event, HMAC-signed like a real sender's; a 202 means the
broker acknowledged it (acks=all). The anchor is a FastAPI app that only reads the body and
answers 202 (``bench/noop_app.py``), served by the same uvicorn options, hit by the same wrk
load with the same bodies, in the same run: the ratio is what ingest's route costs.

wrk cannot sign (HMAC in Lua is impractical), so the bodies are signed up front: a pool of
simulated events, one per body, each with its signature, cycled by ``bench/webhooks.lua``
(each wrk thread takes its own share, so a pass over the pool sends distinct event_ids; later
passes resend them, which the idempotent pipeline absorbs). Runs of the two servers alternate,
so background noise on the shared machine hits both alike. The ingest process's memory
(VmRSS sampled, VmHWM at the end) is reported too.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from bench.common import memory_kib, simulated_events
from services.core.broker import free_port, wait_for_port
from services.core.db.migrate import upgrade
from services.ingest.providers.generic import LEGACY_HEADER as SIGNATURE_HEADER
from services.ingest.providers.generic import legacy_signature as sign
from tests.support.infra import running_broker
from tests.support.processes import ROOT, service_env, services_ingest_only, stop

LUA = Path(__file__).with_name("webhooks.lua")
SECRET = "bench-webhook-secret"
WRK_THREADS = 2
CONNECTIONS = 32


def wrk_binary() -> str:
    """Return the wrk executable, or raise with how to install it."""
    found = shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else None)
    if found is None:
        raise RuntimeError("the webhook benchmark needs wrk: apt-get install wrk")
    return found


def signed_pool(path: Path, size: int) -> int:
    """Write ``size`` single-event bodies as ``<signature>\\t<body>`` lines; return the bytes."""
    events = simulated_events(size, seed=7)[:size]
    total = 0
    with path.open("wb") as out:
        for event in events:
            body = orjson.dumps(event)
            total += len(body)
            out.write(sign(SECRET, body).encode() + b"\t" + body + b"\n")
    return total // len(events)


class MemoryWatch:
    """Sample a process's VmRSS in a thread; report the peak sampled and the kernel's VmHWM."""

    def __init__(self, pid: int, *, every_s: float = 0.2) -> None:
        self.pid, self.every_s = pid, every_s
        self.rss_max_kib = 0
        self.hwm_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def status(self) -> dict[str, int]:
        """Return VmRSS and VmHWM of the process now (KiB); empty once it is gone."""
        return memory_kib(self.pid)

    def sample(self) -> None:
        """Take one sample now."""
        now = self.status()
        self.rss_max_kib = max(self.rss_max_kib, now.get("VmRSS", 0))
        self.hwm_kib = max(self.hwm_kib, now.get("VmHWM", 0))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def __enter__(self) -> MemoryWatch:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def figures(self) -> dict[str, float]:
        """Return the peaks in MiB."""
        return {"rss_max_mib": self.rss_max_kib / 1024, "hwm_mib": self.hwm_kib / 1024}


def run_wrk(url: str, bodies: Path, *, seconds: int) -> dict[str, Any]:
    """Run wrk against ``url`` with the signed bodies; return its figures (requests/s added)."""
    done = subprocess.run(
        [
            wrk_binary(),
            f"-t{WRK_THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
            "--",
            str(WRK_THREADS),
        ],
        env={**os.environ, "WEBHOOK_BODIES": str(bodies)},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    failed = sum(
        figures[k]
        for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_2xx_3xx")
    )
    if failed:
        raise RuntimeError(f"wrk saw {failed} failed requests against {url}: {done.stdout}")
    figures["requests_per_s"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


@contextmanager
def noop_server(env: dict[str, str], log: Path, *, port: int) -> Iterator[None]:
    """Run the no-op anchor with ingest's uvicorn options on ``port``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.noop_app"],
        env=service_env({**env, "CLOSEDLOOP_INGEST_PORT": str(port)}),
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout_s=60)
        yield
    finally:
        stop(proc)


def run(*, quick: bool) -> dict[str, Any]:
    """Measure webhook and no-op requests/s (alternating runs; medians) and ingest's memory."""
    wrk_binary()
    seconds, runs, pool = (2, 1, 5_000) if quick else (10, 3, 20_000)
    with running_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        bodies = tmp_path / "bodies.tsv"
        mean_body = signed_pool(bodies, pool)
        db = f"sqlite:///{tmp_path / 'keys.db'}"
        upgrade(db)  # ingest opens its key database at start-up, though webhooks need no key
        port, noop_port = free_port(), free_port()
        env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLOSEDLOOP_EVENTS_TOPIC": f"bench-wh-{uuid.uuid4().hex[:6]}",
            "CLOSEDLOOP_INGEST_PORT": str(port),
            "CLOSEDLOOP_WEBHOOK_SECRET_GENERIC": SECRET,
        }
        webhook_url = f"http://127.0.0.1:{port}/v1/webhooks/generic"
        noop_url = f"http://127.0.0.1:{noop_port}/v1/webhooks/generic"
        hook: list[dict[str, Any]] = []
        noop: list[dict[str, Any]] = []
        with (
            services_ingest_only(env, tmp_path, port=port) as ingest,
            noop_server(env, tmp_path / "noop.log", port=noop_port),
            MemoryWatch(ingest.pid) as memory,
        ):
            # Warm-up: the producer's connection and metadata, both servers' first requests.
            run_wrk(webhook_url, bodies, seconds=2)
            run_wrk(noop_url, bodies, seconds=1)
            for _ in range(runs):
                noop.append(run_wrk(noop_url, bodies, seconds=seconds))
                hook.append(run_wrk(webhook_url, bodies, seconds=seconds))
    webhook_rate = statistics.median(r["requests_per_s"] for r in hook)
    noop_rate = statistics.median(r["requests_per_s"] for r in noop)
    middle = sorted(hook, key=lambda r: r["requests_per_s"])[len(hook) // 2]
    return {
        "signature_header": SIGNATURE_HEADER,
        "wrk_threads": WRK_THREADS,
        "connections": CONNECTIONS,
        "seconds_per_run": seconds,
        "pool_bodies": pool,
        "mean_body_bytes": mean_body,
        "webhook_requests_per_s": webhook_rate,
        "webhook_runs": [r["requests_per_s"] for r in hook],
        "webhook_latency_ms": {
            "p50": middle["latency_p50_us"] / 1000,
            "p99": middle["latency_p99_us"] / 1000,
            "max": middle["latency_max_us"] / 1000,
        },
        "noop_requests_per_s": noop_rate,
        "noop_runs": [r["requests_per_s"] for r in noop],
        "ratio": webhook_rate / noop_rate,
        "ingest_memory": memory.figures(),
    }
