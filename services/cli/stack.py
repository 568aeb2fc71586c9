"""``closedloop up``: the whole pipeline as child processes on embedded defaults.

Starts the bundled broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` points elsewhere), migrates the
database (a SQLite file unless ``DATABASE_URL`` says otherwise), creates a dev API key, then
runs ingest, worker and API as separate processes, exactly as in production, and prints the
dashboard link that hands the dev key over in its fragment (``/#key=…``). Ctrl-C stops them
all (SIGTERM first: the worker finishes its batch and commits).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from rich.console import Console

from services.core.broker import free_port, port_open, start_bundled_broker, wait_for_port
from services.core.settings import Settings

_KAFKA_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS")


def _migrate_and_key(settings: Settings) -> str:
    from services.attribution.registry import sync_builtin_models
    from services.core.audit import record_audit
    from services.core.auth import issue_key
    from services.core.db.engine import make_engine, make_sessionmaker
    from services.core.db.migrate import upgrade

    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    name, scopes = "dev (closedloop up)", ["ingest", "read", "admin"]
    with make_sessionmaker(engine)() as session, session.begin():
        sync_builtin_models(session, settings)
        key = issue_key(session, name=name, scopes=scopes)
        detail = {"name": name, "scopes": scopes, "expires_at": "-"}
        record_audit(session, None, "key.create", f"key:{key.key_id}", detail)
    engine.dispose()
    return key.secret


def _request_fits_when_consumed(settings: Settings, *, distinct: int, console: Console) -> None:
    """Once the worker has stored the demo history, ask it to fit markov and shapley."""
    from sqlalchemy import func, select

    from services.attribution.fitting import request_fit
    from services.core.db.engine import make_engine, make_sessionmaker
    from services.core.db.schema import EventRow
    from services.domain.datadriven import DATA_DRIVEN

    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with sessions() as session:  # a new transaction each time: a fresh snapshot
            if (session.scalar(select(func.count()).select_from(EventRow)) or 0) >= distinct:
                break
        time.sleep(0.5)
    with sessions() as session, session.begin():
        for model_id in DATA_DRIVEN:
            request_fit(session, model_id, now=datetime.now(UTC))
    engine.dispose()
    console.print("demo: markov and shapley fits requested (the worker runs them in seconds)")


# The demo's lead definitions (contract §7): one active, one stricter to compare it with.
DEMO_DEFINITIONS = {
    "standard": {
        "mql": {"min_grade": "B", "required_attributes": ["title"]},
        "note": "demo: a good-fit account (grade B or better) with a named contact",
        "active": True,
    },
    "strict": {
        "mql": {"min_score": 0.5, "min_grade": "A", "required_attributes": ["title"]},
        "note": "demo: top-grade accounts already engaged, to compare in the backtest",
    },
}


def _define_demo_leads(api_url: str, key: str, console: Console) -> None:
    """Store the demo lead definitions through the API unless definitions exist already."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        if client.get("/v1/lead-definitions").json().get("definitions"):
            return
        for definition_id, body in DEMO_DEFINITIONS.items():
            client.put(f"/v1/lead-definitions/{definition_id}", json=body).raise_for_status()
    console.print(
        "demo: lead definitions 'standard' (active) and 'strict' stored; the worker emits "
        "MQLs for accounts that meet 'standard'"
    )


def _stop(procs: list[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def run_stack(
    settings: Settings, *, demo: bool, demo_deals: int, console: Console, verbose: bool = False
) -> None:
    """Run broker, ingest, worker and API until Ctrl-C; optionally post a demo history."""
    env = dict(os.environ)
    if verbose:
        env["CLOSEDLOOP_VERBOSE"] = "1"
    procs: list[subprocess.Popen[bytes]] = []
    broker = None
    if not any(env.get(name) for name in _KAFKA_ENV):
        port = int(settings.kafka_bootstrap_servers.rsplit(":", 1)[1])
        if port_open(port):
            port = free_port()
        broker = start_bundled_broker(port)
        env["CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{port}"
        settings = settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{port}"})
        console.print(f"bundled broker (in-memory) on 127.0.0.1:{port}")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        key = _migrate_and_key(settings)
        for command in ("worker", "ingest", "api"):
            procs.append(subprocess.Popen([sys.executable, "-m", "services", command], env=env))
        for port in (settings.ingest_port, settings.api_port):
            wait_for_port(port, timeout_s=60)
        ingest_url = f"http://{settings.ingest_host}:{settings.ingest_port}"
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        # A browser cannot open a wildcard address: the link names this machine's loopback.
        browse_host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
        dashboard = f"http://{browse_host}:{settings.api_port}/#key={key}"
        console.print(
            f"\n[bold green]Closed Loop is up[/bold green]\n"
            f"  ingest  {ingest_url}/v1/events   (docs {ingest_url}/docs)\n"
            f"  api     {api_url}/v1/reports/roi  (docs {api_url}/docs)\n"
            f"  database {settings.database_url}\n"
            f"  dev API key (scopes ingest,read,admin; shown once):\n  {key}\n"
            f"  dashboard (opens with the dev key):\n  {dashboard}\n",
            soft_wrap=True,  # URLs and the key must stay copyable, whatever the terminal width
        )
        if demo:
            from services.simulate import generate, post_events, shuffle_with_duplicates

            start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            events = generate(seed=1, deals=demo_deals, start=start - timedelta(days=120), days=120)
            arrivals = shuffle_with_duplicates(events, seed=1, duplicate_rate=0.05)
            post_events(arrivals, url=ingest_url, api_key=key)
            console.print(f"demo: posted {len(arrivals)} events ({len(events)} distinct)")
            _request_fits_when_consumed(settings, distinct=len(events), console=console)
            _define_demo_leads(api_url, key, console)
        console.print(
            "Press Ctrl-C to stop. The worker logs each batch it applies and each fit"
            + ("." if verbose else " (closedloop up --verbose for everything)."),
            soft_wrap=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [p.args[-1] for p in procs if p.poll() is not None]  # type: ignore[index]
        console.print(f"[red]{', '.join(map(str, dead))} exited; stopping[/red]")
        raise SystemExit(1)
    except KeyboardInterrupt:
        console.print("\nstopping…")
    finally:
        _stop(procs)
        if broker is not None:
            _stop([broker], timeout_s=5)
