"""The real pipeline on loopback, with the faults the scenarios inject.

``Pipeline`` runs the bundled Kafka-protocol broker on a port of its own, a fresh PostgreSQL
database (on the shared cluster, or the URL given, e.g. a ``PrivateCluster``'s), the topics
created with 6 partitions, an API key, and ``closedloop ingest``, N ``closedloop worker`` and
``closedloop api`` as processes, each logging to ``workdir/logs``. Faults: SIGKILL or SIGTERM
a worker or ingest and start it again; stop the broker and start it again on the same port
(the bundled broker is in memory: it comes back empty, and the topics are created again at
once, as an operator's provisioning would). The services are never told about a fault: they
must recover by themselves. Every wait is bounded; everything started is stopped on exit.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.common import make_key
from services.core.broker import free_port, start_bundled_broker, wait_for_port
from services.core.db.engine import make_engine
from services.core.kafka import ensure_topics
from services.core.settings import Settings
from tests.support.infra import postgres_database
from tests.support.processes import start_service, stop
from tests.support.streams import queued_work, stored_events

Proc = subprocess.Popen[bytes]


class Pipeline:
    """Broker, database, ingest, ``workers`` workers and the API, started by ``start``."""

    def __init__(
        self,
        workdir: Path,
        *,
        workers: int = 1,
        partitions: int = 6,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.worker_count, self.partitions = workers, partitions
        self.database_url = database_url or ""
        self.extra_env = env or {}
        self.broker_port, self.ingest_port, self.api_port = free_port(), free_port(), free_port()
        self.broker: Proc | None = None
        self.ingest: Proc | None = None
        self.api: Proc | None = None
        self.workers: list[Proc | None] = [None] * workers
        self._log_from = [0] * workers  # each worker's log size at the latest worker start
        self.key = ""
        self._tag = uuid.uuid4().hex[:8]
        self.start_s = 0.0  # how long ``start`` took
        self._stack = ExitStack()

    # -- set-up ----------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ingest_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        tag = self._tag
        return {
            "CLOSEDLOOP_DATABASE_URL": self.database_url,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CLOSEDLOOP_EVENTS_TOPIC": f"chaos-{tag}",
            "CLOSEDLOOP_DEAD_LETTER_TOPIC": f"chaos-dead-{tag}",
            "CLOSEDLOOP_CONSUMER_GROUP": f"chaos-{tag}",
            "CLOSEDLOOP_TOPIC_PARTITIONS": str(self.partitions),
            "CLOSEDLOOP_INGEST_PORT": str(self.ingest_port),
            "CLOSEDLOOP_API_PORT": str(self.api_port),
            **self.extra_env,
        }

    def settings(self) -> Settings:
        env = self.env()
        return Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=self.database_url,
            kafka_bootstrap_servers=self.bootstrap,
            events_topic=env["CLOSEDLOOP_EVENTS_TOPIC"],
            dead_letter_topic=env["CLOSEDLOOP_DEAD_LETTER_TOPIC"],
            consumer_group=env["CLOSEDLOOP_CONSUMER_GROUP"],
            topic_partitions=self.partitions,
        )

    def start(self) -> Pipeline:
        """Start everything; return once ingest says it is ready (bounded)."""
        began = time.monotonic()
        if not self.database_url:
            self.database_url = self._stack.enter_context(postgres_database("closedloop_chaos"))
        self.key = make_key(self.database_url, ["ingest", "read", "admin"])
        self.engine = make_engine(self.database_url)
        self._stack.callback(self.engine.dispose)
        self._stack.callback(self._stop_all)  # first on exit: services, then the broker
        self.start_broker()
        self.api = start_service("api", self.env(), self.logs / "api.log")
        self.start_ingest()
        for n in range(self.worker_count):
            self.start_worker(n)
        wait_for_port(self.api_port, timeout_s=60)
        self.wait_ready(timeout_s=60)
        self.start_s = round(time.monotonic() - began, 1)
        return self

    def __enter__(self) -> Pipeline:
        try:
            return self.start()
        except BaseException:
            self._stack.close()
            raise

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    def _stop_all(self) -> None:
        procs = [p for p in (self.ingest, self.api, *self.workers) if p is not None]
        for proc in procs:  # all at once: one rebalance, not one per worker leaving
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            stop(proc)
        self.stop_broker()

    # -- faults ----------------------------------------------------------------------------

    def start_worker(self, n: int) -> None:
        """Start worker n; from now on the group is not stable until every worker consumes."""
        for m in range(self.worker_count):
            log = self.logs / f"worker{m}.log"
            self._log_from[m] = log.stat().st_size if log.exists() else 0
        self.workers[n] = start_service("worker", self.env(), self.logs / f"worker{n}.log")

    def _applied_since(self, n: int, offset: int) -> bool:
        with (self.logs / f"worker{n}.log").open("rb") as f:
            f.seek(offset)
            return b" applied " in f.read()

    def wait_group_stable(self, *, timeout_s: float) -> float | None:
        """Wait until every worker logged an applied batch since the latest (re)start of any
        of them: the group has settled its membership and every member consumes. Return the
        seconds it took, or None if not within ``timeout_s``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if all(self._applied_since(n, self._log_from[n]) for n in range(self.worker_count)):
                return time.monotonic() - started
            time.sleep(0.2)
        return None

    def stop_worker(self, n: int, *, kill: bool) -> None:
        """SIGKILL (a crash) or SIGTERM (graceful: finish the batch, commit, leave) worker n."""
        proc = self.workers[n]
        if proc is not None:
            stop(proc, kill=kill, timeout_s=60)

    def start_ingest(self) -> None:
        self.ingest = start_service("ingest", self.env(), self.logs / "ingest.log")
        wait_for_port(self.ingest_port, timeout_s=60)

    def stop_ingest(self, *, kill: bool) -> None:
        if self.ingest is not None:
            stop(self.ingest, kill=kill)

    def start_broker(self) -> None:
        """Start the bundled broker on its port (empty) and create the topics at once."""
        self.broker = start_bundled_broker(self.broker_port)
        ensure_topics(self.settings(), timeout_s=10)

    def stop_broker(self, *, kill: bool = False) -> None:
        if self.broker is not None and self.broker.poll() is None:
            self.broker.kill() if kill else self.broker.terminate()
            try:
                self.broker.wait(10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
                self.broker.wait(5)

    # -- observation -----------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        """The running services' process ids, by name (ingest, api, worker0, ...)."""
        named = {"ingest": self.ingest, "api": self.api}
        named.update({f"worker{n}": p for n, p in enumerate(self.workers)})
        return {name: p.pid for name, p in named.items() if p is not None and p.poll() is None}

    def exited(self) -> list[str]:
        """Services that exited although nothing stopped them (with their exit status)."""
        named = {"ingest": self.ingest, "api": self.api}
        named.update({f"worker{n}": p for n, p in enumerate(self.workers)})
        return [f"{n} ({p.returncode})" for n, p in named.items() if p and p.poll() is not None]

    def wait_ready(self, *, timeout_s: float) -> float:
        """Wait until ingest's ``/readyz`` answers 200 and the API lists the built-in models
        (a worker registers them at its start); return the seconds it took."""
        started = time.monotonic()
        auth = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(timeout=5, headers=auth) as http:
            while True:
                try:
                    ready = http.get(f"{self.ingest_url}/readyz").status_code == 200
                    models = http.get(f"{self.api_url}/v1/models")
                    if ready and models.status_code == 200 and "linear" in models.text:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                if time.monotonic() - started > timeout_s:
                    raise TimeoutError(f"pipeline not ready after {timeout_s} s")
                time.sleep(0.1)

    def stored(self) -> int:
        return stored_events(self.engine)

    def wait_settled(
        self, at_least: int, *, timeout_s: float, stall_s: float = 150.0, quiet_s: float = 2.0
    ) -> float | None:
        """Wait until ``at_least`` events are stored, no recompute is queued, and neither has
        changed for ``quiet_s``; return the moment (monotonic) that state began. None when it
        did not come: nothing changed for ``stall_s`` (longer than the bundled broker's
        120 s rebalance timeout) while it was not reached, or ``timeout_s`` passed.

        ``at_least`` is the number of acknowledged events: with nothing unexpected stored,
        fewer stored means something acknowledged is missing (or still on its way).
        """
        deadline = time.monotonic() + timeout_s
        last, since = (-1, -1), time.monotonic()
        while time.monotonic() < deadline:
            try:
                state = (self.stored(), queued_work(self.engine))
            except Exception:  # noqa: BLE001 - the database may be coming back: keep waiting
                time.sleep(0.5)
                continue
            now = time.monotonic()
            if state != last:
                last, since = state, now
            if state[0] >= at_least and state[1] == 0 and now - since >= quiet_s:
                return since
            if now - since >= stall_s:
                return None
            time.sleep(0.2)
        return None


def rss_kib(pid: int) -> int | None:
    """A process's resident set (``VmRSS``, KiB), or None once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
