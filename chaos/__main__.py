"""Run the reliability scenarios: ``python -m chaos [--quick] [--only NAME ...]``.

Each name is a module ``chaos.scenarios.NAME`` with ``run(*, quick: bool, workdir: Path) ->
Outcome``. Every scenario starts its own processes on loopback, is bounded in time and traffic,
and stops them by itself. The figures print as JSON and as the Markdown table of
``RELIABILITY.md``; the exit status is 1 if any scenario failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from chaos.result import Outcome, table

# In the order RELIABILITY.md lists them.
SCENARIOS = (
    "soak",
    "broker_outage",
    "database_outage",
    "worker_crashes",
    "ingest_crash",
    "hostile_input",
    "backlog",
    "overload",
)


def run_scenario(name: str, *, quick: bool) -> Outcome:
    """Run one scenario in a fresh working directory; a crash of the scenario is a failure."""
    module = importlib.import_module(f"chaos.scenarios.{name}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as workdir:
        outcome: Outcome = module.run(quick=quick, workdir=Path(workdir))
    outcome.duration_s = time.monotonic() - started
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short bounded runs (CI)")
    parser.add_argument("--only", choices=SCENARIOS, action="append")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its reconnect chatter is the point
    outcomes = []
    for name in args.only or SCENARIOS:
        outcome = run_scenario(name, quick=args.quick)
        outcomes.append(outcome)
        print(name, json.dumps(outcome.as_dict(), indent=2, default=str), flush=True)
    print(table(outcomes), flush=True)
    sys.exit(0 if all(o.passed for o in outcomes) else 1)


if __name__ == "__main__":
    main()
