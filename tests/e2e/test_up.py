"""``closedloop up`` as a newcomer runs it: a short, readable terminal, and Ctrl-C stops it all.

The process is started in its own session and stopped the way a terminal does it (SIGINT to
the whole foreground process group), so the bundled broker must outlive the services while they
commit and leave their consumer group.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.support.infra import free_port
from tests.support.up import start_up, up_env

pytestmark = pytest.mark.e2e


def _wait_for(log: Path, pattern: str, *, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        time.sleep(0.3)
    raise AssertionError(f"{pattern!r} never appeared; output so far:\n{log.read_text()}")


def test_up_prints_urls_key_progress_and_one_line_per_event(tmp_path: Path) -> None:
    ingest_port, api_port = free_port(), free_port()
    env = up_env(
        tmp_path,
        ingest_port=ingest_port,
        api_port=api_port,
        COLUMNS="80",  # a narrow terminal must not break the URLs or the key
    )
    log = tmp_path / "up.log"
    proc = start_up(tmp_path, env, demo_deals=40, log=log)
    try:
        _wait_for(log, r"fitted shapley[^\n]*\n[^\n]*recomputed", timeout_s=120)
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        code = proc.wait(60)
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]

    assert code == 0, text
    assert f"http://127.0.0.1:{ingest_port}/v1/events" in text
    assert f"http://127.0.0.1:{api_port}/v1/reports/roi" in text
    key = re.search(r"^\s*(cl_[A-Za-z0-9_-]{43})$", text, re.MULTILINE)
    assert key, text
    # The ready-to-open dashboard link hands that same dev key over in the fragment.
    link = rf"^\s*http://127\.0\.0\.1:{api_port}/#key={key[1]}$"
    assert re.search(link, text, re.MULTILINE), text
    assert "Posting events" in text and "demo: posted" in text
    assert re.search(r"worker\s+INFO\s+applied \d+ batch", text), text
    assert re.search(r"fitted markov \(snapshot \d+\)", text), text
    # Nothing of the plumbing: no library logs, access logs, warnings or errors, even while
    # everything shuts down.
    for noise in ("kafka", "RuntimeWarning", "Traceback", "ERROR", "HTTP/1.1", "Uvicorn"):
        assert noise not in text, f"{noise!r} in the terminal:\n{text}"
    assert len(lines) < 30, text
    assert lines[-1].strip() == "stopping…", text
