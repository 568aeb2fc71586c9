"""Both services, as processes, fuzzed from their own OpenAPI documents with schemathesis.

The API reads a real projection (a simulated history applied by the worker's own code, with a
markov fit); ingest publishes to the real bundled broker. Every answer must be documented:
no server error, every status code, content type and body as the document says, and no
operation that needs a key answering without one. Bounded (a fixed number of examples per
operation, a fixed seed) so the run takes well under a minute per service.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.attribution.fitting import request_fit, run_requested_fits
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.broker import free_port
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.events import EVENT_LIST_ADAPTER
from services.simulate import generate
from tests.conftest import make_settings
from tests.e2e.test_pipeline import START
from tests.support.infra import postgres_database
from tests.support.processes import start_service, stop, wait_for_port

pytestmark = pytest.mark.e2e

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "ignored_auth",
    )
)
EXAMPLES = 25
SEED = 9
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def services(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """API and ingest processes on a PostgreSQL projection and the bundled broker."""
    logs = tmp_path_factory.mktemp("logs")
    with postgres_database("closedloop_openapi") as db:
        settings = make_settings(database_url=db, bootstrap=broker)
        sessions = make_sessionmaker(make_engine(db))
        history = generate(seed=4, deals=40, start=START, days=60)
        with sessions.begin() as session:
            sync_builtin_models(session, settings)
            now = datetime.now(UTC)
            apply_events(
                session, EVENT_LIST_ADAPTER.validate_python(history), settings=settings, now=now
            )
            request_fit(session, "markov", now=now)
            key = create_key(session, name="fuzzer", scopes=["ingest", "read", "admin"])
        run_requested_fits(sessions, settings)
        sessions.kw["bind"].dispose()
        ports = {"api": free_port(), "ingest": free_port()}
        env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": broker,
            "CLOSEDLOOP_EVENTS_TOPIC": settings.events_topic,
            "CLOSEDLOOP_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
            "CLOSEDLOOP_API_PORT": str(ports["api"]),
            "CLOSEDLOOP_INGEST_PORT": str(ports["ingest"]),
            "CLOSEDLOOP_WEBHOOK_SECRET_GENERIC": "fuzz-secret",
        }
        procs = [start_service(name, env, logs / f"{name}.log") for name in ports]
        try:
            for port in ports.values():
                wait_for_port(port, timeout_s=60)
            yield {"key": key, "ports": ports, "logs": logs}
        finally:
            for proc in procs:
                stop(proc)


def fuzz(services: dict[str, Any], name: str, tmp_path: Path, *, phases: str) -> dict[str, Any]:
    """Run schemathesis against one service; return its JSON run report."""
    url = f"http://127.0.0.1:{services['ports'][name]}/openapi.json"
    done = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            url,
            "--header",
            f"Authorization: Bearer {services['key']}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--phases",
            phases,
            "--no-shrink",
            "--workers",
            "2",
            "--report",
            "json",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,  # its cache directory (.schemathesis) goes there, not into the checkout
    )
    reports = list(tmp_path.glob("*.json"))
    assert reports, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(reports[0].read_text())
    print(f"{name}: operations {report['operations']}, test cases {report['test_cases']}")
    assert done.returncode == 0 and not report["failures"] and not report["errors"], done.stdout
    assert report["operations"]["tested"] == report["operations"]["total"] > 0
    return report


def test_read_api_answers_as_documented(services: dict[str, Any], tmp_path: Path) -> None:
    report = fuzz(services, "api", tmp_path, phases="coverage,fuzzing,stateful")
    assert report["operations"]["total"] >= 17
    assert report["test_cases"]["generated"] >= 17 * EXAMPLES


def test_ingest_answers_as_documented(services: dict[str, Any], tmp_path: Path) -> None:
    # No stateful phase: it only posts more events, which the coverage phase already varies.
    report = fuzz(services, "ingest", tmp_path, phases="coverage,fuzzing")
    assert report["operations"]["total"] >= 4
    assert report["test_cases"]["generated"] >= 4 * EXAMPLES
