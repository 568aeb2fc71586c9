"""The hostile-input scenario, quick: every hostile request a clear 4xx, nothing else hurt."""

from __future__ import annotations

import pytest

from chaos.__main__ import run_scenario

pytestmark = pytest.mark.e2e

CATEGORIES = {
    "malformed_json", "wrong_types", "float_money", "huge_body", "amplification", "deep_nesting",
    "invalid_utf8", "naive_timestamp", "unknown_type", "xml_bomb", "oversized_headers",
    "bad_auth", "media_type",
}  # fmt: skip
ENDPOINTS = {"events", "generic", "hubspot", "pipedrive", "salesforce", "segment"}


def test_hostile_input_quick() -> None:
    outcome = run_scenario("hostile_input", quick=True)
    figures = outcome.figures
    assert outcome.passed, (outcome.checks, outcome.notes)
    sent = {category for category, n in figures["hostile_by_category"].items() if n > 0}
    assert sent >= CATEGORIES
    assert set(figures["hostile_by_endpoint"]) == ENDPOINTS
    statuses = {int(s): n for s, n in figures["hostile_statuses"].items()}
    # Only the provider events each contract says to acknowledge and ignore are 2xx.
    ignored = figures["hostile_ignored_as_documented"]
    assert sum(n for s, n in statuses.items() if s < 400) == ignored > 0
    assert all(400 <= s < 500 for s in statuses if s >= 300)
    assert figures["canary_connections"] == 0
    # The control stream: every valid event acknowledged and stored once; nothing else stored.
    assert outcome.sent == outcome.acknowledged == outcome.counted > 100
    assert figures["events_rows"] == outcome.counted and figures["dead_letters"] == 0
    assert outcome.lost == 0 and outcome.duplicated == 0
