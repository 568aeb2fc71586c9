"""Run the benchmarks and print their figures: ``python -m bench [--quick] [--only NAME]``."""

from __future__ import annotations

import argparse
import importlib
import json
import logging

# Each name is a module of this package with ``run(*, quick: bool) -> dict``; run in this order.
BENCHES = ("ingest", "webhooks", "worker", "freshness", "fit", "reports", "recompute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (CI)")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)  # its slow-task warnings are noise here
    results = {}
    for name in args.only or list(BENCHES):
        results[name] = importlib.import_module(f"bench.{name}").run(quick=args.quick)
        print(name, json.dumps(results[name], indent=2, default=str), flush=True)


if __name__ == "__main__":
    main()
