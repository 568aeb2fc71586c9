"""Steps every pipeline scenario shares: settle, reconcile against the ledger, check the load."""

from __future__ import annotations

import time

from chaos.ledger import Ledger
from chaos.pipeline import Pipeline
from chaos.result import Outcome
from chaos.traffic import Traffic


def settle_and_reconcile(
    outcome: Outcome, pipe: Pipeline, ledger: Ledger, *, timeout_s: float
) -> float | None:
    """Wait for the pipeline to settle, then let the ledger check it; return the settled moment.

    ``settle_s`` (figure) is from the call to the moment the last event was stored and the
    last recompute done. The wait ends early only when nothing moved for 150 s. The ledger runs
    even when the wait failed: what is missing is then counted as lost.
    """
    started = time.monotonic()
    settled_at = pipe.wait_settled(ledger.acknowledged_count, timeout_s=timeout_s)
    outcome.figures["settle_s"] = None if settled_at is None else round(settled_at - started, 1)
    outcome.check(
        "settled",
        settled_at is not None,
        f"{pipe.stored()} stored of {ledger.acknowledged_count} acknowledged "
        f"after {time.monotonic() - started:.0f} s",
    )
    ledger.reconcile(outcome, database_url=pipe.database_url, api_url=pipe.api_url, key=pipe.key)
    exited = pipe.exited()
    outcome.check("no_service_exited", not exited, ", ".join(exited))
    return settled_at


def traffic_checks(outcome: Outcome, traffic: Traffic) -> None:
    """The load's figures; every batch must have been acknowledged in the end, no 500 seen."""
    figures = traffic.figures()
    outcome.figures.update(figures)
    outcome.check(
        "every_batch_acknowledged",
        traffic.refused == 0,
        f"{traffic.refused} batches refused or given up",
    )
    errors = figures["requests_by_status"].get("500", 0)
    outcome.check("no_http_500", errors == 0, f"{errors} answers 500")
