"""Poison and hostile input through ``POST /v1/events`` and every webhook, beside valid traffic.

The pipeline runs as processes (ingest, worker, API, bundled broker, PostgreSQL). The hostile
corpus (``chaos.hostile_corpus``, ``chaos.hostile_xml``) is sent to every endpoint, correctly
signed wherever the point is to reach the parser: malformed JSON, wrong types, floats and
malformed money, bodies over the limit (declared and chunked), 100,000-level nesting, invalid
UTF-8, timestamps without offsets, unknown event types, XML bombs and external entities on the
Salesforce endpoint, oversized request heads, and more. Interleaved with it: the recorded valid
deliveries of every provider, and a control stream of valid events (``hostile_control``).

Pass criterion (every item checked):
- every hostile request gets the answer it must: a 4xx whose body names the field or the
  problem (never a 5xx, a timeout, a reset or a 202); provider events that mean nothing for
  attribution are acknowledged and ignored, as each provider's contract says;
- ``/healthz`` answers as a liveness probe needs (never two probes in a row failed, i.e.
  slower than 5 s or an error; ``HealthWatch``), the ingest process is alive after the run,
  and its resident memory ends within ``RSS_GROWTH_KIB`` of where it started;
- no XML parser fetched anything (the canary saw no connection);
- every valid request is acknowledged, and every acknowledged event is stored exactly once
  by the worker; the ``events`` table holds nothing else (no hostile event stored) and no
  dead letter was written.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import httpx

from chaos.edge_stack import edge_stack, stored_ids, table_count, wait_stored
from chaos.hostile_client import Answer, credentials, send, verdict
from chaos.hostile_control import (
    Canary,
    ControlStream,
    Delivery,
    HealthWatch,
    Ledger,
    fixture_deliveries,
    interleave,
)
from chaos.hostile_corpus import Hostile
from chaos.hostile_providers import JSON_ENDPOINTS
from chaos.hostile_xml import head_cases, salesforce
from chaos.result import Outcome

ROUNDS = {True: 1, False: 5}  # passes over the corpus (quick, full)
# Quick mode keeps one shape of the slow near-limit bodies (each ~1 s of parsing at 10 MB).
QUICK_SKIPS = {("amplification", "decimals"), ("amplification", "strings")}
RSS_GROWTH_KIB = 256 * 1024
DRAIN_TIMEOUT_S = 60.0


def corpus(canary_url: str, *, quick: bool, seed: int = 14) -> list[Hostile]:
    """Every hostile request (``ROUNDS`` times), shuffled: the same order for a seed."""
    once = [h for build in JSON_ENDPOINTS.values() for h in build()]
    once += salesforce(canary_url)
    once += [h for endpoint in ("events", "generic", "salesforce") for h in head_cases(endpoint)]
    if quick:
        once = [h for h in once if (h.category, h.name) not in QUICK_SKIPS]
    cases = once * ROUNDS[quick]
    random.Random(seed).shuffle(cases)
    return cases


def _deliver(client: httpx.Client, url: str, key: str, delivery: Delivery, ledger: Ledger) -> None:
    target = f"{url}/v1/webhooks/{delivery.provider}"
    headers = {
        "Content-Type": delivery.content_type,
        **credentials(delivery.provider, delivery.body, target, key),
    }
    try:
        response = client.post(target, content=delivery.body, headers=headers, timeout=30)
        status, detail = response.status_code, response.text
    except httpx.HTTPError as exc:
        status, detail = 0, repr(exc)
    ledger.record(delivery.event_ids, status, f"{delivery.provider}/{delivery.name}: {detail}")


def run(*, quick: bool, workdir: Path) -> Outcome:
    """Run the scenario; see the module docstring for what passes."""
    outcome = Outcome("hostile_input")
    ledger = Ledger()
    answers: list[tuple[Hostile, Answer, str | None]] = []
    began = time.monotonic()
    with Canary() as canary, edge_stack(workdir) as stack, httpx.Client() as client:
        started = time.monotonic()
        pid = stack.procs["ingest"].pid
        hostile = corpus(canary.url, quick=quick)
        with HealthWatch(stack.ingest_url, pid) as health:
            time.sleep(1.0)  # a few probes (and the first RSS samples) before anything hostile
            with ControlStream(stack.ingest_url, stack.key, ledger):
                for item in interleave(hostile, fixture_deliveries()):
                    if isinstance(item, Delivery):
                        _deliver(client, stack.ingest_url, stack.key, item, ledger)
                        continue
                    answer = send(client, stack.ingest_url, stack.key, item)
                    answers.append((item, answer, verdict(item, answer)))
            time.sleep(1.0)
        traffic_s = time.monotonic() - started
        alive = stack.alive()
        stored, drain_s = wait_stored(stack.engine, ledger.acknowledged, timeout_s=DRAIN_TIMEOUT_S)
        total_rows = table_count(stack.engine, "events")
        dead_letters = table_count(stack.engine, "dead_letters")
        extra = total_rows - len(stored_ids(stack.engine, ledger.acknowledged))
    _judge(outcome, answers, health, canary, alive, ledger)
    outcome.sent = len(ledger.sent)
    outcome.acknowledged = len(ledger.acknowledged)
    outcome.counted = len(stored)
    outcome.lost = len(ledger.acknowledged - stored)
    outcome.duplicated = extra  # rows beyond the acknowledged ledger (hostile or unknown)
    outcome.check("no_dead_letters", dead_letters == 0, f"{dead_letters} dead letters")
    outcome.figures.update(
        control_requests=ledger.requests,
        control_events_sent=len(ledger.sent),
        control_events_acknowledged=len(ledger.acknowledged),
        control_events_counted=len(stored),
        events_rows=total_rows,
        dead_letters=dead_letters,
        drain_s=round(drain_s, 1),
        pipeline_start_s=round(started - began, 1),
        traffic_s=round(traffic_s, 1),
    )
    return outcome


def _judge(
    outcome: Outcome,
    answers: list[tuple[Hostile, Answer, str | None]],
    health: HealthWatch,
    canary: Canary,
    alive: dict[str, bool],
    ledger: Ledger,
) -> None:
    """Record the checks and figures of the hostile requests, health, memory and control."""
    wrong = [f"{h.endpoint}/{h.category}/{h.name}: {why}" for h, _, why in answers if why]
    outcome.check("every_hostile_answered_as_required", not wrong, "; ".join(wrong[:10]))
    statuses = Counter(a.status for _, a, _ in answers)
    bad_status = {s: n for s, n in statuses.items() if s == 0 or s >= 500}
    outcome.check("no_5xx_timeout_or_reset", not bad_status, f"statuses {bad_status}")
    slowest = max(answers, key=lambda entry: entry[1].latency_s)
    rss = health.rss_kib or [0]
    growth = rss[-1] - rss[0]
    outcome.check(
        "healthz_answered",
        health.alive,
        f"{health.most_in_a_row} probes in a row failed: " + "; ".join(health.failures[:5]),
    )
    outcome.check("ingest_alive", alive.get("ingest", False), f"processes alive: {alive}")
    outcome.check("rss_bounded", growth <= RSS_GROWTH_KIB, f"ingest RSS grew {growth} KiB")
    outcome.check("no_external_fetch", canary.connections == 0, f"{canary.connections} fetches")
    outcome.check(
        "control_all_acknowledged",
        not ledger.refusals and ledger.acknowledged == ledger.sent,
        "; ".join(ledger.refusals[:5]),
    )
    outcome.figures.update(
        hostile_requests=len(answers),
        hostile_by_category=dict(sorted(Counter(h.category for h, _, _ in answers).items())),
        hostile_by_endpoint=dict(sorted(Counter(h.endpoint for h, _, _ in answers).items())),
        hostile_statuses={str(k): v for k, v in sorted(statuses.items())},
        hostile_ignored_as_documented=sum(h.expect == "ignored" for h, _, _ in answers),
        hostile_max_latency_ms=round(slowest[1].latency_s * 1000, 1),
        hostile_seconds_by_category=_seconds_by_category(answers),
        hostile_slowest=f"{slowest[0].endpoint}/{slowest[0].category}/{slowest[0].name}",
        healthz_probes=health.probes,
        healthz_slowest_ms=round(health.slowest_s * 1000, 1),
        healthz_failed_probes=len(health.failures),
        ingest_rss_kib={"before": rss[0], "peak": max(rss), "after": rss[-1]},
        canary_connections=canary.connections,
    )


def _seconds_by_category(answers: list[tuple[Hostile, Answer, str | None]]) -> dict[str, float]:
    """Return the total time the hostile requests of each category took, in seconds."""
    total: Counter[str] = Counter()
    for hostile, answer, _ in answers:
        total[hostile.category] += answer.latency_s
    return {category: round(seconds, 2) for category, seconds in sorted(total.items())}
