"""Worker crashes: three workers share the stream; one, chosen at random, is SIGKILLed again and
again and started again at once (as a supervisor would); then (full mode) one is stopped
gracefully (SIGTERM) and started again, and all three are restarted one after the other with
SIGTERM (a rolling restart, as a deploy does; in quick mode only this).

The kills land at random moments (1-3 s apart in quick mode, 2-6 s in full), so at arbitrary
points of a worker's loop: during a poll, inside the batch transaction, between the database
commit and the Kafka offset commit, in the recomputes after the commit, or during start-up.
The load keeps flowing through ingest throughout and stops at the last fault.

Pass: the ledger finds nothing lost and nothing counted twice, reports to the cent; a SIGTERMed
worker exits 0 (it finishes its batch and commits); the pipeline settles, and ``recover_s`` is
the time from the last fault to settled.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from chaos.common import settle_and_reconcile, traffic_checks
from chaos.ledger import Ledger
from chaos.observe import ProgressWatch
from chaos.pipeline import Pipeline
from chaos.result import Outcome
from chaos.traffic import Traffic

WORKERS = 3
RATE = 300
# How long a rolling restart waits for the group to be stable before the next SIGTERM: the
# bundled broker's group coordinator can take up to the rebalance timeout (120 s) to drop a
# member that left during a rebalance (see RELIABILITY.md).
STABLE_TIMEOUT_S = 150.0


def run(*, quick: bool, workdir: Path) -> Outcome:
    outcome = Outcome("worker_crashes")
    kills, gap = (5, (1.0, 3.0)) if quick else (20, (2.0, 6.0))
    rng = random.Random()  # noqa: S311 - fault timing, not secrecy
    ledger = Ledger()
    with Pipeline(workdir, workers=WORKERS) as pipe:
        outcome.figures["pipeline_start_s"] = pipe.start_s
        progress = ProgressWatch(lambda: ledger.acknowledged_count, pipe.stored)
        with progress, Traffic(pipe.ingest_url, pipe.key, ledger, rate=RATE) as traffic:
            time.sleep(3.0)  # the group formed, batches in flight
            victims = _kill_repeatedly(pipe, rng, kills=kills, gap=gap)
            codes, waits = _graceful_and_rolling(pipe, rng, quick=quick)
            last_fault = time.monotonic()
        settled_at = settle_and_reconcile(outcome, pipe, ledger, timeout_s=240 if quick else 900)
        traffic_checks(outcome, traffic)
    outcome.recover_s = None if settled_at is None else round(settled_at - last_fault, 1)
    outcome.figures["longest_stall_s"] = round(progress.longest_stall_s, 1)
    outcome.figures["kills"] = len(victims)
    outcome.figures["killed_workers"] = victims
    outcome.figures["graceful_exit_codes"] = codes
    outcome.figures["waits_for_stable_group_s"] = waits
    outcome.check("all_kills_done", len(victims) == kills)
    outcome.check("sigterm_exits_0", all(c == 0 for c in codes), f"exit codes {codes}")
    return outcome


def _kill_repeatedly(
    pipe: Pipeline, rng: random.Random, *, kills: int, gap: tuple[float, float]
) -> list[int]:
    """SIGKILL a random worker ``kills`` times, starting it again each time; return victims."""
    victims = []
    for _ in range(kills):
        time.sleep(rng.uniform(*gap))
        victim = rng.randrange(WORKERS)
        pipe.stop_worker(victim, kill=True)
        pipe.start_worker(victim)
        victims.append(victim)
    return victims


def _graceful_and_rolling(
    pipe: Pipeline, rng: random.Random, *, quick: bool
) -> tuple[list[int | None], list[float | None]]:
    """SIGTERM one worker and start it again (full mode), then restart all three one by one.

    As a deploy waits for a new instance to be up before stopping the next, each SIGTERM waits
    (bounded) until the group is stable: every worker has applied a batch since the latest
    start. Returns the exit status of every SIGTERMed worker (0: it finished its batch,
    committed and left) and how long each wait for a stable group took.
    """
    codes: list[int | None] = []
    waits: list[float | None] = []
    order = list(range(WORKERS)) if quick else [rng.randrange(WORKERS), *range(WORKERS)]
    for n in order:
        waited = pipe.wait_group_stable(timeout_s=STABLE_TIMEOUT_S)
        waits.append(None if waited is None else round(waited, 1))
        pipe.stop_worker(n, kill=False)
        proc = pipe.workers[n]
        codes.append(None if proc is None else proc.returncode)
        pipe.start_worker(n)
    return codes, waits
