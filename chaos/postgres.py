"""A private PostgreSQL cluster on loopback, for the scenario that stops and starts the database.

The shared cluster on :5432 serves others and must never be stopped, so ``PrivateCluster``
runs the machine's own PostgreSQL binaries (``initdb``, ``pg_ctl``) on a directory and port of
its own (about 1.5 s to create), trust auth on 127.0.0.1 only, its socket in its directory.
As root the binaries run as the ``postgres`` user (PostgreSQL refuses to run as root), in a
directory that user owns. ``stop`` is a real outage: every connection is cut (``immediate``
mode is a crash, recovered from the WAL at the next start) and new ones are refused.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from services.core.broker import free_port
from services.core.db.migrate import upgrade


def _bindir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian layout), or pg_config's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


class PrivateCluster:
    """initdb, start, stop, start again, destroy: a throwaway PostgreSQL of the scenario's own."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout_s: float = 60.0) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout_s)

    def create(self) -> None:
        """initdb (trust auth) and start."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, *, mode: str = "immediate") -> None:
        """Stop the server: ``immediate`` (a crash: connections cut) or ``fast`` (clean)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def database(self, name: str) -> str:
        """Create a database migrated to head; return its URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
        upgrade(url)
        return url

    def destroy(self) -> None:
        """Stop the server if it runs, and delete its directory."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):  # already stopped
            self.stop(mode="fast")
        shutil.rmtree(self.root, ignore_errors=True)
