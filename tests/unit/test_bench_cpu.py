"""The benchmarks' CPU accounting reads /proc correctly, and their size options parse."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.common import parse_counts
from bench.cpu import CpuMeter, postgres_role, postgres_roles, proc_times


def test_sizes_and_counts_parse_with_suffixes() -> None:
    assert parse_counts("1,2,3") == [1, 2, 3]
    assert parse_counts("100k, 300k,1M") == [100_000, 300_000, 1_000_000]
    assert parse_counts("2.5k,1_000") == [2_500, 1_000]
    with pytest.raises(ValueError):
        parse_counts("0")


@pytest.mark.parametrize(
    ("title", "role"),
    [
        ("postgres: 15/main: postgres closedloop_bench_ab 127.0.0.1(40112) idle", "ours"),
        ("postgres: 15/main: postgres closedloop_bench_ab [local] SELECT", "ours"),
        ("postgres: postgres closedloop_bench_ab 127.0.0.1(40112) COPY", "ours"),
        ("postgres: 15/main: postgres closedloop_test_cd 127.0.0.1(40113) idle", "other_dbs"),
        ("postgres: 15/main: checkpointer", "server"),
        ("postgres: 15/main: autovacuum worker closedloop_bench_ab", "server"),
        ("/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main", "postmaster"),
    ],
)
def test_postgres_processes_are_told_apart_by_title(title: str, role: str) -> None:
    assert postgres_role(title, "closedloop_bench_ab") == role


def test_parallel_query_workers_count_for_their_leaders_database() -> None:
    titles = {
        10: "postgres: 15/main: postgres closedloop_bench_ab 127.0.0.1(40112) SELECT",
        11: "postgres: 15/main: parallel worker for PID 10",
        20: "postgres: 15/main: postgres closedloop_test_cd 127.0.0.1(40113) SELECT",
        21: "postgres: 15/main: parallel worker for PID 20",
        31: "postgres: 15/main: parallel worker for PID 30",  # its leader has just gone
    }
    roles = postgres_roles(titles, "closedloop_bench_ab")
    assert roles == {10: "ours", 11: "ours", 20: "other_dbs", 21: "other_dbs", 31: "server"}


def test_a_busy_child_is_charged_about_its_cpu_time() -> None:
    """A child spinning for ~0.6 s of CPU is charged that much (ticks of 10 ms, some start-up)."""
    spin = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", f"{spin}\nimport time; time.sleep(30)"])
    try:
        meter = CpuMeter("no_such_database", {"child": [child.pid]}, every_s=0.05)
        meter.start()
        deadline = time.monotonic() + 20
        while (t := proc_times(child.pid)) is not None and t.own < 0.6:
            assert time.monotonic() < deadline, "the child never used its CPU time"
            time.sleep(0.05)
        figures = meter.stop()
    finally:
        child.kill()
        child.wait()
    # From the start snapshot, taken while the child was starting (up to a tick or two in).
    assert 0.5 <= figures["child"] < 2.0
    assert figures["ours_total"] >= figures["child"]
    assert figures["capacity"] == pytest.approx(figures["wall_s"] * (os.cpu_count() or 1), 0.05)
    assert proc_times(child.pid) is None  # gone once reaped
