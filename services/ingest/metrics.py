"""Ingest counters, registered in the app's own registry (so test apps never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class IngestMetrics:
    """Business counters of the ingest service, served on ``/metrics`` with the HTTP ones."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "closedloop_ingest_events_accepted_total",
            "Events acknowledged by the broker and answered 202",
            ["endpoint"],
            registry=registry,
        )
        self.publish_failures = Counter(
            "closedloop_ingest_publish_failures_total",
            "Requests answered 503 because the broker failed",
            ["endpoint"],
            registry=registry,
        )
        self.refused = Counter(
            "closedloop_ingest_requests_refused_total",
            "Requests refused before publishing, by endpoint and status (401, 413, 422, 429, …; "
            "503: ingest at capacity, see admission.py)",
            ["endpoint", "status"],
            registry=registry,
        )
        self.ignored = Counter(
            "closedloop_ingest_webhook_events_ignored_total",
            "Provider events that map to nothing for attribution (deletions, other properties)",
            ["endpoint"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "closedloop_ingest_requests_in_flight",
            "Requests to the ingest routes being handled now (bounded by admission.py)",
            registry=registry,
        )
        self.admission_limit = Gauge(
            "closedloop_ingest_admission_limit",
            "Requests the ingest routes admit at once now (steered by service time, admission.py)",
            registry=registry,
        )
