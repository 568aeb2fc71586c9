"""``make run`` then the dashboard link it prints: every page shows the demo data, as the API does.

``closedloop up`` runs as ``make run`` runs it (bundled broker, ingest, worker, API and the demo
history posted over HTTP, on a SQLite file), on free ports, with 120 demo deals instead of 300
and a short lead-qualifying interval so the demo's MQLs come within seconds instead of 30. Once
the stack has settled (every model ready, the MQLs published and applied, no consumer lag, no
recompute queued), Chromium opens the printed ``/#key=`` link and visits every page the
navigation lists; each page's headline numbers must equal what the read API answers for the
same question with the same key. Each page's screenshot goes to var/screenshots/demo/, and to
docs/screenshots/ (the README's) when CLOSEDLOOP_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import test_dashboard as dashboard
from tests.e2e.test_dashboard import (
    CHROMIUM,
    DEFAULT_MODELS,
    SCREENSHOTS,
    _funnel_rows,
    _num,
    _sla_row,
    api,
    chart,
    screenshot,
    shown,
    table,
)
from tests.e2e.test_dashboard_leads import (
    _backtest_rows,
    _fixed,
    _last_year,
    _lead_rows,
    _mql_rows,
    _pct,
    _wait_for_rows,
)
from tests.support.infra import free_port
from tests.support.processes import ROOT
from tests.support.up import start_up, up_env

pytestmark = pytest.mark.e2e
driver = dashboard.driver
page = dashboard.page

# Smaller than make run's 300 deals to keep the test short; enough for every page to have data.
DEMO_DEALS = 120
FOLDER = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("CLOSEDLOOP_UPDATE_SCREENSHOTS") == "1"
    else SCREENSHOTS / "demo"
)


def _wait_for(log: Path, pattern: str, *, timeout_s: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"), re.MULTILINE)
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{pattern!r} never appeared; output so far:\n{log.read_text()}")


def _settled(stack: dict[str, Any]) -> bool:
    """Every model ready, MQLs published, no consumer lag and no recompute queued."""
    recon = api(stack, "/v1/reports/reconciliation")
    mqls = api(stack, "/v1/reports/mqls", limit="1000")["rows"]
    metrics = httpx.get(stack["url"] + "/metrics", timeout=10).text
    gauges = re.findall(
        r"^closedloop_(consumer_lag_up|consumer_topic_lag_records|recompute_queued)\S* (\S+)$",
        metrics,
        re.MULTILINE,
    )
    return (
        recon["won_deals"] > 0
        and all(m["status"] == "ready" for m in recon["models"].values())
        and bool(mqls)
        and all(m["published"] for m in mqls)
        and ("consumer_lag_up", "1.0") in gauges
        and all(float(v) == 0 for name, v in gauges if name != "consumer_lag_up")
    )


def _wait_until_settled(stack: dict[str, Any], *, timeout_s: float) -> None:
    """Wait until the stack stays settled for 2 s (the lag gauge is cached for up to 1 s)."""
    deadline, since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if not _settled(stack):
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= 2:
            return
        time.sleep(0.4)
    raise AssertionError(f"the demo never settled; output so far:\n{stack['log'].read_text()}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``closedloop up`` with its demo data, settled; stopped with Ctrl-C afterwards."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run make tools (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("dashboard-stack")
    ingest_port, api_port, broker_port = free_port(), free_port(), free_port()
    # The bundled broker's port from the .env a user may keep next to the database (not the
    # environment, which would mean "an external broker"): not the default 9092, which another
    # closedloop up (test_up, on the other pytest worker) may be taking at the same moment.
    (tmp / ".env").write_text(f"CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{broker_port}\n")
    env = up_env(tmp, ingest_port=ingest_port, api_port=api_port, CLOSEDLOOP_LEAD_INTERVAL_S="2")
    log = tmp / "up.log"
    proc = start_up(tmp, env, demo_deals=DEMO_DEALS, log=log)
    try:
        link = _wait_for(log, rf"^\s*(http://127\.0\.0\.1:{api_port}/#key=(cl_\S+))$", timeout_s=60)
        _wait_for(log, r"^demo: lead definitions", timeout_s=60)
        assert f"bundled broker (in-memory) on 127.0.0.1:{broker_port}" in log.read_text()
        stack = {
            "url": f"http://127.0.0.1:{api_port}",
            "key": link[2],
            "link": link[1],
            "db": tmp / "closedloop.db",
            "log": log,
        }
        _wait_until_settled(stack, timeout_s=60)
        yield stack
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
        proc.wait(60)


def _won_deal(db: Path) -> str:
    """A won deal in another currency than USD, with a journey of a readable length."""
    with closing(sqlite3.connect(db)) as connection:
        row = connection.execute(
            "SELECT deal_id FROM deals WHERE status = 'won' AND currency <> 'USD'"
            " AND reporting_minor IS NOT NULL AND journey_touches BETWEEN 4 AND 6"
            " ORDER BY journey_touches DESC, deal_id LIMIT 1"
        ).fetchone()
    assert row, "the demo history has won deals in EUR and GBP"
    return str(row[0])


def _cards(tab: Any, ids: list[str]) -> list[str]:
    return [tab.inner_text(f"#{card}") for card in ids]


def check_compare(tab: Any, demo: dict[str, Any]) -> None:
    tab.wait_for_function("() => document.getElementById('compare-chart').data !== undefined")
    tab.wait_for_selector("#diff-table tbody tr")
    report = api(demo, "/v1/reports/compare", models=",".join(DEFAULT_MODELS))
    assert all(report["status"][m] == "ready" for m in DEFAULT_MODELS), report["status"]
    assert tab.is_hidden("#compare-status")  # no model is pending
    traces = chart(tab, "compare-chart")
    assert [t["name"] for t in traces] == DEFAULT_MODELS
    assert len(report["rows"]) > 5
    for trace in traces:
        assert trace["text"] == [shown(r["revenue"][trace["name"]]) for r in report["rows"]]
    footer = tab.eval_on_selector_all(
        "#compare-table tfoot td", "cells => cells.map(c => c.textContent.trim())"
    )
    assert footer == ["Total", *(shown(report["totals"]["revenue"][m]) for m in DEFAULT_MODELS)]
    diff = api(demo, "/v1/reports/compare/diff", base="linear", other="markov")
    assert [row[4].lstrip("+") for row in table(tab, "#diff-table")] == [
        shown(r["moved"]) for r in diff["rows"]
    ]
    # Both models credit all won revenue: nothing is lost in total, the gains are what moves.
    moved = [Decimal(r["moved"]) for r in diff["rows"]]
    gains, losses = [m for m in moved if m > 0], [-m for m in moved if m < 0]
    assert diff["totals"]["moved"] == "0.00" and sum(gains) == sum(losses) > 0
    assert tab.inner_text("#diff-summary") == (
        f"Moving from linear to markov: {len(gains)} campaigns gain {shown(str(sum(gains)))} USD,"
        f" {len(losses)} lose {shown(str(sum(losses)))} USD."
    )


def check_roi(tab: Any, demo: dict[str, Any]) -> None:
    tab.wait_for_selector("#roi-table tbody tr")
    report = api(demo, "/v1/reports/roi", model="linear", group_by="campaign")
    totals = report["totals"]
    assert report["status"] == "ready" and float(totals["cost"]) > 0
    assert _cards(tab, ["total-revenue", "total-cost", "total-unattributed", "model-status"]) == [
        f"{shown(totals['revenue'])} USD",
        f"{shown(totals['cost'])} USD",
        f"{shown(totals['unattributed_revenue'])} USD",
        "ready",
    ]
    rows = table(tab, "#roi-table")
    assert [row[2] for row in rows] == [shown(r["revenue"]) for r in report["rows"]]
    assert [row[4] for row in rows] == [shown(r["cost"]) for r in report["rows"]]


def check_deals(tab: Any, demo: dict[str, Any]) -> None:
    deal = _won_deal(demo["db"])
    tab.fill("#deal-id", deal)
    tab.select_option("#model", "markov")
    tab.press("#deal-id", "Enter")
    tab.wait_for_selector("#timeline li")
    body = api(demo, f"/v1/deals/{deal}/attribution", model="markov")
    facts = body["deal"]
    assert _cards(tab, ["deal-status", "deal-amount", "deal-revenue"]) == [
        f"won (last stage {facts['stage']})" if facts["stage"] else "won",
        f"{shown(facts['amount'])} {facts['currency']}",
        shown(facts["reporting_amount"]),
    ]
    items = tab.eval_on_selector_all("#timeline li", "items => items.map(i => i.innerText)")
    assert len(items) == len(body["journey"]) >= 4
    for text, touch in zip(items, body["journey"], strict=True):
        assert f"{shown(touch['credit'])} USD" in text
        assert f"weight {touch['weight'] * 100:.2f}%" in text


def check_funnel(tab: Any, demo: dict[str, Any]) -> None:
    tab.wait_for_selector("#funnel-table tbody tr")
    tab.wait_for_selector("#sla-table tbody tr")
    funnel = api(demo, "/v1/reports/funnel")
    stages = {s["stage"]: s for s in funnel["stages"]}
    # The demo's contacts go through every stage, and some leave it: recycled or disqualified.
    assert all(stages[s]["volume"] > 0 for s in ("subscriber", "lead", "mql", "sql", "customer"))
    assert sum(s["recycled"] for s in funnel["stages"]) > 0
    assert sum(s["disqualified"] for s in funnel["stages"]) > 0
    assert table(tab, "#funnel-table") == _funnel_rows(funnel, ["recycled", "disqualified"])
    sla = api(demo, "/v1/reports/sla")
    overall = sla["overall"]
    assert overall["mqls"] > 0 and overall["breached"] > 0
    assert _cards(tab, ["sla-mqls", "sla-breached", "sla-median"]) == [
        str(overall["mqls"]),
        str(overall["breached"]),
        _num(overall["median_hours"]),
    ]
    assert table(tab, "#sla-table") == [_sla_row(w) for w in sla["weeks"]]


def check_leads(tab: Any, demo: dict[str, Any]) -> None:
    tab.wait_for_selector("#leads-table tbody tr")
    tab.wait_for_selector("#mql-table tbody tr")
    tab.wait_for_function("() => document.getElementById('backtest-chart').data !== undefined")
    assert tab.inner_text("#definition-id") == "standard"
    leads = api(demo, "/v1/reports/leads", limit="100", sort="score")
    assert len(leads["rows"]) > 10
    assert table(tab, "#leads-table") == _lead_rows(leads)
    mqls = api(demo, "/v1/reports/mqls", limit="100")
    assert mqls["rows"]
    _wait_for_rows(tab, "#mql-table", _mql_rows(mqls["rows"]))
    start, end = _last_year()
    backtest = api(
        demo,
        "/v1/lead-definitions/standard/backtest",
        version="1",
        compare="strict@1",
        **{"from": start, "to": end},
    )
    assert backtest["definitions"][0]["decided_deals"] > 10
    assert table(tab, "#backtest-table") == _backtest_rows(backtest)
    # The top account's grade and score, explained.
    account = leads["rows"][0]["account_id"]
    grade = api(demo, f"/v1/accounts/{account}/grade")
    score = api(demo, f"/v1/accounts/{account}/score")
    tab.click(f"#leads-table button[data-account='{account}']")
    tab.wait_for_function("() => document.getElementById('grade-chart').data !== undefined")
    assert _cards(tab, ["grade-letter", "grade-raw", "score-probability"]) == [
        grade["letter"],
        _fixed(grade["raw"]),
        _pct(score["probability"]),
    ]


SIDES = ("marketing", "sales")


def check_influence(tab: Any, demo: dict[str, Any]) -> None:
    tab.wait_for_selector("#influence-table tbody tr")
    report = api(demo, "/v1/reports/influence")
    totals = report["totals"]
    assert totals["marketing_sourced_deals"] > 0 and totals["sales_sourced_deals"] > 0
    sourced = [(totals[f"{s}_sourced_revenue"], totals[f"{s}_sourced_deals"]) for s in SIDES]
    assert _cards(tab, ["won-revenue", "won-deals", "marketing-sourced", "sales-sourced"]) == [
        f"{shown(totals['won_revenue'])} USD",
        str(totals["won_deals"]),
        *(f"{shown(money)} USD · {deals} deals" for money, deals in sourced),
    ]
    assert tab.inner_text("#influence-check").startswith("✓")
    rows = table(tab, "#influence-table")
    assert [row[3] for row in rows] == [shown(r["sourced_revenue"]) for r in report["rows"]]
    assert [row[5] for row in rows] == [shown(r["influenced_revenue"]) for r in report["rows"]]


def check_reconciliation(tab: Any, demo: dict[str, Any]) -> None:
    tab.wait_for_selector("#recon-table tbody tr")
    report = api(demo, "/v1/reports/reconciliation")
    assert _cards(tab, ["closed-won", "won-deals", "unconverted-count"]) == [
        f"{shown(report['closed_won_revenue'])} USD",
        str(report["won_deals"]),
        str(report["unconverted"]["count"]),
    ]
    rows = table(tab, "#recon-table")
    assert [row[:5] for row in rows] == [
        [m, v["status"], shown(v["attributed"]), shown(v["unattributed"]), shown(v["pending"])]
        for m, v in report["models"].items()
    ]
    assert all(row[1] == "ready" and row[5] == "✓ adds up" for row in rows)


# Every page of the navigation: its check and its screenshot's name (the README's).
PAGES: dict[str, tuple[Callable[[Any, dict[str, Any]], None], str]] = {
    "/": (check_compare, "compare"),
    "/roi": (check_roi, "roi"),
    "/deals": (check_deals, "deal-explorer"),
    "/funnel": (check_funnel, "funnel-sla"),
    "/leads": (check_leads, "leads"),
    "/influence": (check_influence, "influence"),
    "/reconciliation": (check_reconciliation, "reconciliation"),
}


def test_the_printed_link_shows_the_demo_data_on_every_page(page: Any, demo: Any) -> None:
    page.goto(demo["link"])
    page.wait_for_function("() => document.getElementById('compare-chart').data !== undefined")
    assert "#" not in page.url
    hrefs = page.eval_on_selector_all("nav a", "links => links.map(a => a.getAttribute('href'))")
    assert sorted(hrefs) == sorted(PAGES), "a page in the navigation has no check here"
    for href in hrefs:
        check, name = PAGES[href]
        if href != "/":
            page.click(f"nav a[href='{href}']")
            page.wait_for_url(f"**{href}*")
        check(page, demo)
        assert page.is_hidden("#key-panel") and page.is_hidden("#message"), href
        screenshot(page, name, FOLDER)
