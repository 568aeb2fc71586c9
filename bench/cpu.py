"""CPU accounting from ``/proc``: who spent the machine's cores during a measured window.

``CpuMeter`` snapshots the CPU seconds (user + system) of named processes, of every
PostgreSQL process and of the whole machine at ``start``; ``stop`` returns the differences.

- Named processes (the workers, the broker, the bench itself): their own time plus that of
  their children already reaped (``cutime``/``cstime``); a process started after ``start``
  counts from zero. Read them before the processes exit (a dead process's time is gone).
- PostgreSQL: every ``postgres`` process, classified by its process title
  (``update_process_title`` is on): the backends of the measured database, the backends of
  other databases (other sessions on a shared machine: reported apart, not ours), each with
  the parallel query workers helping it, and the server's own processes (checkpointer, WAL
  and background writers, autovacuum: shared, but on a quiet server mostly the measured
  database's writes). Backends that exit during the window are sampled while they live (see
  ``CpuMeter``).
- The machine: the busy time of every core from ``/proc/stat`` (all processes, the other
  helpers' included), against the capacity ``wall × cores``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
# "postgres: 15/main: postgres closedloop_bench_x 127.0.0.1(5432) idle": user, database, client.
_BACKEND = re.compile(r"^postgres: (?:[^:]+: )?(\S+) (\S+) (\S+\(\d+\)|\[local\])")
_PARALLEL = re.compile(r"parallel worker for PID (\d+)")


@dataclass(frozen=True)
class ProcTimes:
    """A process's CPU seconds: its own, and its reaped children's."""

    own: float
    children: float
    parent: int


def proc_times(pid: int) -> ProcTimes | None:
    """Return a process's CPU times from ``/proc/<pid>/stat``, or None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ProcTimes((utime + stime) * TICK_S, (cutime + cstime) * TICK_S, int(fields[1]))


def machine_busy_s() -> float:
    """Return the CPU seconds every core spent busy since boot (all but idle and iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) * TICK_S


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def postgres_processes() -> dict[int, str]:
    """Return every PostgreSQL server process: pid → its process title."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
        except OSError:
            continue
        if comm == "postgres":
            found[int(entry.name)] = _cmdline(int(entry.name))
    return found


def postgres_role(title: str, database: str) -> str:
    """Classify a PostgreSQL process: ``ours``, ``other_dbs``, ``postmaster`` or ``server``."""
    match = _BACKEND.match(title)
    if match:
        return "ours" if match.group(2) == database else "other_dbs"
    return "server" if title.startswith("postgres:") else "postmaster"


def _named(groups: dict[str, list[int]]) -> dict[str, dict[int, ProcTimes]]:
    return {
        name: {pid: t for pid in pids if (t := proc_times(pid)) is not None}
        for name, pids in groups.items()
    }


def postgres_roles(titles: dict[int, str], database: str) -> dict[int, str]:
    """Classify PostgreSQL processes by title; a parallel query's helper takes its leader's."""
    roles = {pid: postgres_role(title, database) for pid, title in titles.items()}
    for pid, title in titles.items():
        if (leader := _PARALLEL.search(title)) and int(leader.group(1)) in roles:
            roles[pid] = roles[int(leader.group(1))]
    return roles


def _postgres(database: str) -> dict[int, tuple[str, ProcTimes]]:
    roles = postgres_roles(postgres_processes(), database)
    return {pid: (role, t) for pid, role in roles.items() if (t := proc_times(pid)) is not None}


_ZERO = ProcTimes(0.0, 0.0, 0)


class CpuMeter:
    """Measure CPU seconds over a window; ``groups`` name process ids (added to at any time).

    A thread samples the PostgreSQL processes every ``every_s`` seconds, so a backend that
    exits during the window keeps the time it had at its last sample, under the role its
    title gave it. What the postmaster's reaped-children time holds beyond those samples
    (backends too short-lived to be sampled, and the tails after a last sample) is
    ``postgres_unattributed``: reported, not counted as ours, since other sessions on a shared
    machine open and close connections too.
    """

    def __init__(
        self, database: str, groups: dict[str, list[int]], *, every_s: float = 0.25
    ) -> None:
        self.database, self.groups, self.every_s = database, groups, every_s
        self._began_at = self._machine = 0.0
        self._named: dict[str, dict[int, ProcTimes]] = {}
        self._first: dict[int, tuple[str, ProcTimes]] = {}
        self._last: dict[int, tuple[str, ProcTimes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name="cpu-meter", daemon=True)

    def _sample(self) -> dict[int, tuple[str, ProcTimes]]:
        now = _postgres(self.database)
        self._last.update(now)
        for pid, (role, _) in now.items():
            # A process first seen after the start counts from zero (it started meanwhile).
            self._first.setdefault(pid, (role, _ZERO))
        return now

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def start(self) -> None:
        """Take the starting snapshot and start sampling PostgreSQL's processes."""
        self._began_at, self._machine = time.perf_counter(), machine_busy_s()
        self._named = _named(self.groups)
        self._first = _postgres(self.database)
        self._last = dict(self._first)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """Return CPU seconds per group, per PostgreSQL role, in total, and the machine's."""
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self._began_at
        machine = machine_busy_s() - self._machine
        alive = self._sample()
        out: dict[str, float] = {"wall_s": wall}
        for name, now in _named(self.groups).items():
            before = self._named.get(name, {})
            out[name] = sum(_delta(t, before.get(pid)) for pid, t in now.items())
        roles = {"ours": 0.0, "other_dbs": 0.0, "server": 0.0}
        reaped = sampled_gone = 0.0
        for pid, (role, last) in self._last.items():
            first = self._first[pid][1]
            if role == "postmaster":
                roles["server"] += last.own - first.own
                reaped += last.children - first.children
                continue
            roles[role] += _delta(last, first)
            if pid not in alive:
                sampled_gone += _delta(last, first)
        out["postgres"] = roles["ours"] + roles["server"]
        out |= {f"postgres_{role}": seconds for role, seconds in roles.items()}
        out["postgres_unattributed"] = max(0.0, reaped - sampled_gone)
        out["ours_total"] = sum(out[name] for name in self.groups) + out["postgres"]
        out["machine_busy"] = machine
        out["capacity"] = wall * CORES
        return {k: round(v, 2) for k, v in out.items()}


def _delta(now: ProcTimes, before: ProcTimes | None) -> float:
    before = before or _ZERO
    return now.own + now.children - before.own - before.children


def load_average() -> list[float]:
    """Return the 1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]
