"""Run the benchmarks and print their figures: ``python -m bench [--quick] [--only NAME]``.

``--workers 1,2,3`` (worker; freshness; reports: the live workers, first count), ``--events
100k,300k,1M`` (worker), ``--deals 100k`` (reports) and ``--runs N`` (worker, reports) go to
the benchmarks that take them. Each benchmark prints its figures as JSON; those
with a ``table(figures)`` function then print it as Markdown.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
from typing import Any

from bench.common import parse_counts

# Each name is a module of this package with ``run(*, quick: bool, ...) -> dict``; in order.
BENCHES = ("ingest", "webhooks", "worker", "freshness", "fit", "reports", "recompute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (CI)")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    parser.add_argument(
        "--workers", type=parse_counts, help="worker processes, e.g. 1,2,3 (freshness: 1,3)"
    )
    parser.add_argument("--events", type=parse_counts, help="worker sizes, e.g. 100k,300k,1M")
    parser.add_argument("--deals", type=parse_counts, help="reports sizes (won deals), e.g. 100k")
    parser.add_argument("--runs", type=int, help="worker, reports: runs per configuration (median)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)  # its slow-task warnings are noise here
    options = {
        "workers": args.workers,
        "events": args.events,
        "deals": args.deals,
        "runs": args.runs,
    }
    results = {}
    for name in args.only or list(BENCHES):
        module = importlib.import_module(f"bench.{name}")
        accepted = inspect.signature(module.run).parameters
        given: dict[str, Any] = {k: v for k, v in options.items() if v and k in accepted}
        results[name] = module.run(quick=args.quick, **given)
        print(name, json.dumps(results[name], indent=2, default=str), flush=True)
        if hasattr(module, "table"):
            print(module.table(results[name]), flush=True)


if __name__ == "__main__":
    main()
