"""The reliability suite's ledger (chaos/ledger.py, chaos/reports.py) on hand-worked examples.

The ledger decides whether a scenario lost or doubled anything, so it must be able to fail:
each test below gives it a state where the answer is worked out by hand.
"""

from __future__ import annotations

import copy
from typing import Any

from chaos import reports
from chaos.ledger import Accounting, Ledger, fill
from chaos.result import Outcome


def event(eid: str, kind: str, day: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": eid, "type": kind, "occurred_at": f"2026-03-{day:02d}T12:00:00Z", **fields}


# Two campaigns; contact p1 of account a1 touched by c1, c2, then c1 again (account-level);
# deal d1 of a1 won for 90.00 USD; c1 costs 31.00 USD over March 1-31 (1.00 a day).
HISTORY = [
    event("c1", "campaign.upserted", 1, campaign_id="c1", name="One", channel="email"),
    event("c2", "campaign.upserted", 1, campaign_id="c2", name="Two", channel="paid_search"),
    event("p1", "contact.upserted", 2, contact_id="p1", account_id="a1"),
    event("t1", "touch", 3, campaign_id="c1", contact_id="p1", lead_created=True),
    event("t2", "touch", 5, campaign_id="c2", contact_id="p1"),
    event("t3", "touch", 8, campaign_id="c1", account_id="a1"),
    event(
        "d1-new", "deal.created", 7, deal_id="d1", account_id="a1", amount="90.00", currency="USD"
    ),
    event("d1-won", "deal.closed_won", 10, deal_id="d1", amount="90.00", currency="USD"),
    {
        **event("k1", "campaign.cost", 1, campaign_id="c1", amount="31.00", currency="USD"),
        "period_start": "2026-03-01",
        "period_end": "2026-03-31",
    },
]


def test_accounting_sets() -> None:
    acc = Accounting(
        sent=frozenset("abcde"), acknowledged=frozenset("abc"), stored=frozenset("acdx")
    )
    assert acc.lost == {"b"}  # acknowledged, not stored
    assert acc.unexpected == {"x"}  # stored, never sent
    assert acc.counted == {"a", "c"}
    assert acc.counted_unacknowledged == {"d"}  # a cut-off request that had been published
    assert acc.expected == {"a", "b", "c", "d"}  # e: sent, not acknowledged, not stored


def test_fill_fails_on_loss_and_on_an_unsent_event() -> None:
    ledger = Ledger()
    ledger.record_sent(HISTORY)
    ledger.record_acknowledged(HISTORY[:5])
    outcome = Outcome("x")
    fill(outcome, ledger.account(["c1", "c2", "p1", "t1", "t3", "zz"]))
    assert (outcome.sent, outcome.acknowledged, outcome.counted, outcome.lost) == (9, 5, 4, 1)
    assert outcome.figures["counted_unacknowledged"] == 1  # t3
    assert outcome.checks["nothing_unsent_stored"] is False  # zz
    assert not outcome.passed


def test_resent_event_with_other_content_is_noted() -> None:
    ledger = Ledger()
    ledger.record_sent(HISTORY[:1])
    ledger.record_sent([copy.deepcopy(HISTORY[0])])  # a retry: same content
    assert ledger.conflicts == []
    ledger.record_sent([{**HISTORY[0], "name": "Other"}])
    assert ledger.conflicts == ["c1"]


def test_expected_reports_worked_by_hand() -> None:
    want = reports.expected(HISTORY)
    # Journey t1, t2, t3 (c1, c2, c1): linear 30.00 each; first touch all to c1.
    assert want.revenue["linear"] == {"c1": 6000, "c2": 3000}
    assert want.revenue["first_touch"] == {"c1": 9000, "c2": 0}  # c2 weighs 0
    assert want.revenue["last_touch"] == {"c1": 9000, "c2": 0}
    assert want.deals["linear"] == {"c1": 2 / 3, "c2": 1 / 3}
    assert want.cost == {"c1": 3100}
    assert (want.won_revenue, want.won_deals) == (9000, 1)


def as_api(want: reports.Reports) -> reports.Reports:
    """What a correct API answers for ``want``, in the shape ``reports.fetch`` returns."""
    got = copy.deepcopy(want)
    for model in reports.ROI_MODELS:
        rows = set(want.revenue[model]) | set(want.cost)
        got.revenue[f"roi:{model}"] = {c: want.revenue[model].get(c, 0) for c in rows}
        got.revenue[f"roi-total:{model}"] = {"": sum(want.revenue[model].values())}
        got.roi_cost[model] = dict(want.cost)
        got.statuses[model] = "ready"
    return got


def test_compare_passes_a_correct_api_and_catches_a_double_count() -> None:
    want = reports.expected(HISTORY)
    got = as_api(want)
    diff = reports.compare(want, got)
    assert diff.mismatches == [] and diff.above == 0 and diff.compared > 20

    got.revenue["roi:linear"]["c2"] += 1  # one cent too many
    got.revenue["first_touch"]["c1"] -= 9000  # a credit missing
    got.won_deals = 2  # a deal counted twice
    diff = reports.compare(want, got)
    assert diff.above == 2
    assert len(diff.mismatches) == 3
    assert any("compare first_touch c1" in m for m in diff.mismatches)


def test_compare_refuses_a_pending_model_and_wrong_fractional_deals() -> None:
    want = reports.expected(HISTORY)
    got = as_api(want)
    got.statuses["first_touch"] = "pending"
    got.deals["linear"]["c1"] = 1.0
    diff = reports.compare(want, got)
    assert len(diff.mismatches) == 2
