"""``closedloop up`` as a user runs it from a terminal, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT


def up_env(tmp: Path, *, ingest_port: int, api_port: int, **extra: str) -> dict[str, str]:
    """The environment of a fresh terminal: no ``CLOSEDLOOP_`` settings but the ports (so the
    embedded defaults apply: a SQLite file in ``tmp`` and the bundled broker) and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp / 'closedloop.db'}",
            "CLOSEDLOOP_INGEST_PORT": str(ingest_port),
            "CLOSEDLOOP_API_PORT": str(api_port),
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


def start_up(
    tmp: Path, env: dict[str, str], *, demo_deals: int, log: Path
) -> subprocess.Popen[bytes]:
    """Start ``closedloop up`` with its demo data in ``tmp``, its terminal written to ``log``.

    In a session of its own: stop it with Ctrl-C to its process group
    (``os.killpg(proc.pid, signal.SIGINT)``), as a terminal does.
    """
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services", "up", "--demo-deals", str(demo_deals)],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
