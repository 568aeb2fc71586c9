"""Run Closed Loop's services as real processes, the way ``closedloop up`` and compose do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.core.broker import wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def service_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a service process: the caller's plus Closed Loop settings."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")}
    full.update(env)
    return full


def start_service(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``closedloop <command>`` with its output in ``log``."""
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services", command],
        env=service_env(env),
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes], *, kill: bool = False, timeout_s: float = 15) -> None:
    """Stop a service: SIGTERM (graceful) or SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def services(
    env: dict[str, str],
    logs: Path,
    *,
    ingest_port: int,
    api_port: int,
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Run worker, ingest and API; wait for both HTTP ports; stop them all afterwards."""
    procs = {
        name: start_service(name, env, logs / f"{name}.log") for name in ("worker", "ingest", "api")
    }
    try:
        for port in (ingest_port, api_port):
            wait_for_port(port, timeout_s=60)
        yield procs
    finally:
        for proc in procs.values():
            stop(proc)


@contextmanager
def services_ingest_only(
    env: dict[str, str],
    logs: Path,
    *,
    port: int,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run only the ingest service (benchmarks); stop it afterwards."""
    proc = start_service("ingest", env, logs / "ingest.log")
    try:
        wait_for_port(port, timeout_s=60)
        yield proc
    finally:
        stop(proc)
