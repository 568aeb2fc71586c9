"""The dashboard in real headless Chromium against a running API process.

The API serves a SQLite projection of a simulated history (applied by the worker's own code,
with a markov fit); a second API process serves an empty database. Every number a page shows
is checked against what the read API answers for the same question, fetched here with httpx:
the dashboard must show the API's numbers, not compute its own. Chromium is Debian's
(``make tools``), driven by Playwright through its executable path, never a downloaded one.
Each page's screenshot is written to var/screenshots/ on every run (git ignores it). The
README's (docs/screenshots/) come from ``test_dashboard_stack``, on the demo data of a whole
running stack, and only when CLOSEDLOOP_UPDATE_SCREENSHOTS=1: the simulated dates follow today,
so a normal run must not rewrite tracked files.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.attribution.fitting import request_fit, run_requested_fits
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.broker import free_port
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.events import EVENT_LIST_ADAPTER
from services.simulate import generate
from tests.conftest import make_settings
from tests.e2e.test_pipeline import START
from tests.support.infra import sqlite_database
from tests.support.processes import ROOT, start_service, stop, wait_for_port

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "var" / "screenshots"
DEFAULT_MODELS = ["first_touch", "last_touch", "linear", "w_shaped", "markov"]


def shown(amount: str) -> str:
    """How the dashboard writes a money string: thousands grouped, digits untouched."""
    negative = amount.startswith("-")
    whole, _, fraction = amount.lstrip("-").partition(".")
    return ("−" if negative else "") + f"{int(whole):,}" + (f".{fraction}" if fraction else "")


def _projection(db: str, *, history: list[dict[str, Any]]) -> str:
    """Apply ``history`` to the database, fit markov, and return a read key."""
    settings = make_settings(database_url=db, bootstrap="127.0.0.1:9")
    sessions = make_sessionmaker(make_engine(db))
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        now = datetime.now(UTC)
        if history:
            events = EVENT_LIST_ADAPTER.validate_python(history)
            apply_events(session, events, settings=settings, now=now)
            request_fit(session, "markov", now=now)
        key = create_key(session, name="dashboard", scopes=["read"])
    run_requested_fits(sessions, settings)
    sessions.kw["bind"].dispose()
    return key


# A won deal in a currency the history has no fx rate for: left out of revenue, listed as
# unconverted by the reconciliation.
UNCONVERTED = {"deal_id": "deal-chf-1", "amount": "12345.60", "currency": "CHF"}


def _unconverted_deal(*, account: str) -> list[dict[str, Any]]:
    created, won = START + timedelta(days=20), START + timedelta(days=50)
    deal = {"deal_id": UNCONVERTED["deal_id"], "source": "test", "account_id": account}
    priced = {"amount": UNCONVERTED["amount"], "currency": UNCONVERTED["currency"]}
    return [
        {"event_id": "chf-created", "type": "deal.created", "occurred_at": created.isoformat()}
        | deal
        | priced
        | {"stage": "proposal"},
        {"event_id": "chf-won", "type": "deal.closed_won", "occurred_at": won.isoformat()}
        | deal
        | priced,
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two API processes: one on a simulated projection, one on an empty database."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run make tools (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("dashboard")
    history = generate(seed=4, deals=40, start=START, days=60)
    account = next(e["account_id"] for e in history if e["type"] == "account.upserted")
    history += _unconverted_deal(account=account)
    with sqlite_database(tmp) as full_db, sqlite_database(tmp) as empty_db:
        keys = {
            "full": _projection(full_db, history=history),
            "empty": _projection(empty_db, history=[]),
        }
        ports = {"full": free_port(), "empty": free_port()}
        procs = [
            start_service(
                "api",
                {"CLOSEDLOOP_DATABASE_URL": db, "CLOSEDLOOP_API_PORT": str(ports[name])},
                tmp / f"api-{name}.log",
            )
            for name, db in (("full", full_db), ("empty", empty_db))
        ]
        try:
            for port in ports.values():
                wait_for_port(port, timeout_s=60)
            won = [e["deal_id"] for e in history if e["type"] == "deal.closed_won"]
            yield {
                "url": f"http://127.0.0.1:{ports['full']}",
                "empty_url": f"http://127.0.0.1:{ports['empty']}",
                "key": keys["full"],
                "empty_key": keys["empty"],
                "won_deal": won[0],
            }
        finally:
            for proc in procs:
                stop(proc)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    with playwright.sync_playwright() as running:
        yield running


@pytest.fixture()
def page(driver: Any, tmp_path: Path) -> Iterator[Any]:
    """A page of Chromium on a fresh user-data dir (empty storage); fails on a script error."""
    context = driver.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=ARGS,
        viewport={"width": 1366, "height": 768},
        accept_downloads=True,
    )
    tab = context.pages[0] if context.pages else context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    tab.on(
        "console", lambda msg: problems.append(msg.text) if "Security Policy" in msg.text else None
    )
    yield tab
    context.close()
    assert not problems, problems


def api(stack: dict[str, Any], path: str, **params: str) -> Any:
    """What the read API answers a user's script for ``path``."""
    headers = {"Authorization": f"Bearer {stack['key']}"}
    answer = httpx.get(stack["url"] + path, params=params, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def chart(tab: Any, element_id: str) -> list[dict[str, Any]]:
    """The traces plotly.js drew in the element (its ``data``)."""
    traces: list[dict[str, Any]] = tab.evaluate(
        "id => document.getElementById(id).data.map(t => "
        "({name: t.name, x: t.x, y: t.y, text: t.text}))",
        element_id,
    )
    return traces


def table(tab: Any, selector: str) -> list[list[str]]:
    """The body rows of a table, as the cells' visible text."""
    rows: list[list[str]] = tab.eval_on_selector_all(
        f"{selector} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    return rows


def screenshot(tab: Any, name: str, folder: Path = SCREENSHOTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def sign_in(tab: Any, stack: dict[str, Any], path: str = "/") -> None:
    tab.goto(f"{stack['url']}{path}#key={stack['key']}")


def test_fragment_key_is_stored_and_removed_from_the_address(page: Any, stack: Any) -> None:
    sign_in(page, stack)
    page.wait_for_function("() => document.getElementById('compare-chart').data !== undefined")
    assert "key" not in page.url and stack["key"] not in page.url
    assert "#" not in page.url
    stored = page.evaluate("localStorage.getItem('closedloop.apiKey')")
    assert stored == stack["key"]
    # The key stays: another page opens with no fragment and no form.
    page.goto(stack["url"] + "/roi")
    page.wait_for_selector("#roi-table tbody tr")
    assert page.is_hidden("#key-panel")


def test_compare_shows_the_api_numbers_and_a_model_toggle_changes_the_chart(
    page: Any, stack: Any
) -> None:
    sign_in(page, stack)
    page.wait_for_function("() => document.getElementById('compare-chart').data !== undefined")
    report = api(stack, "/v1/reports/compare", models=",".join(DEFAULT_MODELS))
    traces = chart(page, "compare-chart")
    assert [t["name"] for t in traces] == DEFAULT_MODELS
    names = [r["campaign_name"] or r["campaign_id"] for r in report["rows"]]
    for trace in traces:
        assert trace["x"] == names
        assert trace["text"] == [shown(r["revenue"][trace["name"]]) for r in report["rows"]]
        assert trace["y"] == [float(Decimal(r["revenue"][trace["name"]])) for r in report["rows"]]

    page.get_by_label("linear", exact=True).uncheck()
    page.wait_for_function("() => document.getElementById('compare-chart').data.length === 4")
    page.get_by_label("position_based", exact=True).check()
    page.wait_for_function(
        "() => document.getElementById('compare-chart').data.some(t => t.name === 'position_based')"
    )
    traces = chart(page, "compare-chart")
    models = [m for m in DEFAULT_MODELS if m != "linear"] + ["position_based"]
    models.sort(key=[m["id"] for m in api(stack, "/v1/models")["models"]].index)
    assert [t["name"] for t in traces] == models
    report = api(stack, "/v1/reports/compare", models=",".join(models))
    added = next(t for t in traces if t["name"] == "position_based")
    assert added["text"] == [shown(r["revenue"]["position_based"]) for r in report["rows"]]

    diff = api(stack, "/v1/reports/compare/diff", base="linear", other="markov")
    page.wait_for_selector("#diff-table tbody tr")
    rows = table(page, "#diff-table")
    assert [row[0] for row in rows] == [
        r["campaign_name"] or r["campaign_id"] for r in diff["rows"]
    ]
    assert [row[4].lstrip("+") for row in rows] == [shown(r["moved"]) for r in diff["rows"]]
    screenshot(page, "compare")


def test_compare_follows_the_date_range_and_the_group_by(page: Any, stack: Any) -> None:
    sign_in(page, stack)
    page.wait_for_function("() => document.getElementById('compare-chart').data !== undefined")
    start, end = (START + timedelta(days=30)).date(), (START + timedelta(days=60)).date()
    models = ",".join(DEFAULT_MODELS)
    period = {"from": start.isoformat(), "to": end.isoformat()}
    whole = api(stack, "/v1/reports/compare", models=models, group_by="channel")
    report = api(stack, "/v1/reports/compare", models=models, group_by="channel", **period)
    assert report["rows"] and report["rows"] != whole["rows"], "the range must change the data"
    labels = [r["channel"] or "(no channel)" for r in report["rows"]]
    expected = [[shown(r["revenue"][m]) for r in report["rows"]] for m in DEFAULT_MODELS]

    page.fill("input[name=from]", period["from"])
    page.fill("input[name=to]", period["to"])
    page.select_option("select[name=group_by]", "channel")
    page.click("#filters button[type=submit]")
    page.wait_for_function(
        "labels => JSON.stringify(document.getElementById('compare-chart').data[0].x)"
        " === JSON.stringify(labels)",
        arg=labels,
    )
    traces = chart(page, "compare-chart")
    assert [t["name"] for t in traces] == DEFAULT_MODELS
    assert [t["text"] for t in traces] == expected
    assert [t["y"] for t in traces] == [
        [float(Decimal(r["revenue"][m])) for r in report["rows"]] for m in DEFAULT_MODELS
    ]
    assert f"from={period['from']}" in page.url and "group_by=channel" in page.url
    # The diff below follows the same range and grouping.
    diff = api(
        stack,
        "/v1/reports/compare/diff",
        base="linear",
        other="markov",
        group_by="channel",
        **period,
    )
    page.wait_for_function(
        "first => document.querySelector('#diff-table thead th').innerText.trim() === first",
        arg="Channel",
    )
    rows = table(page, "#diff-table")
    assert [row[0] for row in rows] == [r["channel"] or "(no channel)" for r in diff["rows"]]
    assert [row[4].lstrip("+") for row in rows] == [shown(r["moved"]) for r in diff["rows"]]

    # Reloading the address keeps the view (the filters live in the query string).
    page.reload()
    page.wait_for_function("() => document.getElementById('compare-chart').data !== undefined")
    assert [t["text"] for t in chart(page, "compare-chart")] == expected


def test_roi_table_totals_sorting_and_csv(page: Any, stack: Any, tmp_path: Path) -> None:
    sign_in(page, stack, "/roi?model=position_based")
    page.wait_for_selector("#roi-table tbody tr")
    report = api(stack, "/v1/reports/roi", model="position_based")
    rows = table(page, "#roi-table")
    assert [row[2] for row in rows] == [shown(r["revenue"]) for r in report["rows"]]
    assert [row[4] for row in rows] == [shown(r["cost"]) for r in report["rows"]]
    totals = report["totals"]
    assert page.inner_text("#total-revenue") == f"{shown(totals['revenue'])} USD"
    assert page.inner_text("#total-cost") == f"{shown(totals['cost'])} USD"
    assert page.inner_text("#total-unattributed") == f"{shown(totals['unattributed_revenue'])} USD"
    assert page.inner_text("#total-pending") == f"{shown(totals['pending_revenue'])} USD"

    # Sorting by cost from the keyboard: the header is a real button.
    page.focus("th[data-key=cost] button")
    page.keyboard.press("Enter")
    by_cost = sorted(report["rows"], key=lambda r: (-Decimal(r["cost"]),))
    assert [row[4] for row in table(page, "#roi-table")] == [shown(r["cost"]) for r in by_cost]
    assert page.get_attribute("th[data-key=cost]", "aria-sort") == "descending"
    page.keyboard.press("Enter")
    assert [row[4] for row in table(page, "#roi-table")] == [
        shown(r["cost"]) for r in reversed(by_cost)
    ]
    page.click("th[data-key=cost] button")  # back to descending for the screenshot

    with page.expect_download() as download:
        page.click("#download-csv")
    saved = tmp_path / "roi.csv"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "roi.csv"
    expected = httpx.get(
        stack["url"] + "/v1/reports/roi",
        params={"model": "position_based", "group_by": "campaign"},
        headers={"Authorization": f"Bearer {stack['key']}", "Accept": "text/csv"},
    )
    assert saved.read_bytes() == expected.content and expected.content.startswith(b"campaign_id")
    screenshot(page, "roi")


def test_deal_explorer_shows_the_journey_and_credits(page: Any, stack: Any) -> None:
    deal = stack["won_deal"]
    sign_in(page, stack, f"/deals?deal={deal}&model=position_based")
    page.wait_for_selector("#timeline li")
    body = api(stack, f"/v1/deals/{deal}/attribution", model="position_based")
    items = page.eval_on_selector_all("#timeline li", "items => items.map(i => i.innerText)")
    assert len(items) == len(body["journey"]) > 0
    for text, touch in zip(items, body["journey"], strict=True):
        assert f"{shown(touch['credit'])} USD" in text
        assert touch["campaign_id"] in text
        assert f"weight {touch['weight'] * 100:.2f}%" in text
        for role in touch["roles"]:
            assert role.replace("_", " ") in text
    assert page.inner_text("#deal-revenue") == shown(body["deal"]["reporting_amount"])

    page.fill("#deal-id", "no-such-deal")
    page.click("text=Explain this deal")
    page.wait_for_selector("#message:has-text('No deal with id')")
    assert page.is_hidden("#deal-result")
    page.fill("#deal-id", deal)
    page.press("#deal-id", "Enter")
    page.wait_for_selector("#deal-result:not([hidden])")
    screenshot(page, "deal-explorer")


def test_reconciliation_adds_up_per_model(page: Any, stack: Any) -> None:
    sign_in(page, stack, "/reconciliation")
    page.wait_for_selector("#recon-table tbody tr")
    report = api(stack, "/v1/reports/reconciliation")
    assert page.inner_text("#closed-won") == f"{shown(report['closed_won_revenue'])} USD"
    assert page.inner_text("#won-deals") == str(report["won_deals"])
    rows = table(page, "#recon-table")
    expected = [
        [m, v["status"], shown(v["attributed"]), shown(v["unattributed"]), shown(v["pending"])]
        for m, v in report["models"].items()
    ]
    assert [row[:5] for row in rows] == expected
    assert all(row[5] == "✓ adds up" for row in rows)
    traces = chart(page, "recon-chart")
    assert [t["name"] for t in traces] == ["attributed", "unattributed", "pending"]
    assert traces[0]["text"] == [shown(v["attributed"]) for v in report["models"].values()]
    # The CHF deal (no CHF rate in the history) is listed as the API lists it, not converted.
    unconverted = report["unconverted"]
    assert unconverted == {
        "count": 1,
        "amounts": {UNCONVERTED["currency"]: UNCONVERTED["amount"]},
    }
    assert page.inner_text("#unconverted-count") == "1"
    assert page.inner_text("#unconverted") == (
        f"1 won deal(s) have no usable exchange rate to {report['currency']} and are left out "
        f"of the revenue above: {shown(UNCONVERTED['amount'])} {UNCONVERTED['currency']}."
    )
    screenshot(page, "reconciliation")


def test_influence_shows_the_api_sourced_and_influenced_numbers(
    page: Any, stack: Any, tmp_path: Path
) -> None:
    sign_in(page, stack, "/influence")
    page.wait_for_selector("#influence-table tbody tr")
    report = api(stack, "/v1/reports/influence")
    assert report["rows"] and report["totals"]["won_deals"] > 0
    expected = [
        [
            r["campaign_name"] or r["campaign_id"],
            r["channel"] or "–",
            "Sales" if r["is_sales_sourced"] else "Marketing",
            shown(r["sourced_revenue"]),
            str(r["sourced_deals"]),
            shown(r["influenced_revenue"]),
            str(r["influenced_deals"]),
        ]
        for r in report["rows"]
    ]
    assert table(page, "#influence-table") == expected
    totals = report["totals"]
    assert page.inner_text("#won-revenue") == f"{shown(totals['won_revenue'])} USD"
    assert page.inner_text("#won-deals") == str(totals["won_deals"])
    for side in ("sales", "marketing"):
        money, deals = totals[f"{side}_sourced_revenue"], totals[f"{side}_sourced_deals"]
        assert page.inner_text(f"#{side}-sourced") == f"{shown(money)} USD · {deals} deals"
    unsourced = f"{shown(totals['unsourced_revenue'])} USD · {totals['unsourced_deals']} deals"
    assert page.inner_text("#unsourced") == unsourced
    assert page.inner_text("#influence-check").startswith("✓")
    traces = chart(page, "influence-chart")
    assert [t["name"] for t in traces] == ["Sourced", "Influenced"]
    for trace, key in zip(traces, ("sourced_revenue", "influenced_revenue"), strict=True):
        assert trace["x"] == [row[0] for row in expected]
        assert trace["text"] == [shown(r[key]) for r in report["rows"]]
        assert trace["y"] == [float(Decimal(r[key])) for r in report["rows"]]

    with page.expect_download() as download:
        page.click("#download-csv")
    saved = tmp_path / "influence.csv"
    download.value.save_as(saved)
    csv_answer = httpx.get(
        stack["url"] + "/v1/reports/influence",
        headers={"Authorization": f"Bearer {stack['key']}", "Accept": "text/csv"},
    )
    assert saved.read_bytes() == csv_answer.content
    assert download.value.suggested_filename == "influence.csv"
    screenshot(page, "influence")

    page.goto(f"{stack['empty_url']}/influence#key={stack['empty_key']}")
    page.wait_for_selector("#message:has-text('No data yet')")


def _rate(value: float | None) -> str:
    """How the dashboard writes a ratio: a percentage with two decimals."""
    return "–" if value is None else f"{value * 100:.2f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _utc(stamp: str | None) -> str:
    return "–" if stamp is None else stamp.replace("T", " ").replace("Z", " UTC")


def _funnel_rows(report: dict[str, Any], exits: list[str]) -> list[list[str]]:
    return [
        [s["stage"], str(s["volume"]), str(s["converted"]), _rate(s["conversion_rate"])]
        + [_num(s["median_days_to_next"]), *(str(s[key]) for key in exits)]
        for s in report["stages"]
    ]


def _sla_row(period: dict[str, Any]) -> list[str]:
    return [
        period["week"],
        str(period["mqls"]),
        str(period["responded"]),
        _num(period["median_hours"]),
        _num(period["p90_hours"]),
        str(period["breached"]),
    ]


def test_funnel_and_sla_show_the_api_numbers(page: Any, stack: Any) -> None:
    sign_in(page, stack, "/funnel")
    page.wait_for_selector("#funnel-table tbody tr")
    page.wait_for_selector("#sla-table tbody tr")
    funnel = api(stack, "/v1/reports/funnel")
    assert any(s["volume"] for s in funnel["stages"])
    assert any(s["median_days_to_next"] is not None for s in funnel["stages"])
    exits = ["recycled", "disqualified"]
    assert table(page, "#funnel-table") == _funnel_rows(funnel, exits)
    [trace] = chart(page, "funnel-chart")
    assert trace["y"] == [s["stage"] for s in funnel["stages"]]
    assert trace["x"] == [s["volume"] for s in funnel["stages"]]
    assert trace["text"] == [
        str(s["volume"])
        if s["conversion_rate"] is None
        else f"{s['volume']} · {_rate(s['conversion_rate'])} onward"
        for s in funnel["stages"]
    ]

    sla = api(stack, "/v1/reports/sla")
    assert sla["overall"]["mqls"] > 0 and sla["breaches"], "the simulated history has MQLs"
    assert table(page, "#sla-table") == [_sla_row(w) for w in sla["weeks"]]
    footer = page.eval_on_selector_all(
        "#sla-table tfoot td", "cells => cells.map(c => c.innerText.trim())"
    )
    assert footer == ["Overall", *_sla_row(sla["overall"])[1:]]
    assert page.inner_text("#sla-mqls") == str(sla["overall"]["mqls"])
    assert page.inner_text("#sla-breached") == str(sla["overall"]["breached"])
    assert page.inner_text("#sla-median") == _num(sla["overall"]["median_hours"])
    assert page.inner_text("#sla-p90") == _num(sla["overall"]["p90_hours"])
    mqls, breached = chart(page, "sla-chart")
    assert (mqls["name"], breached["name"]) == ("MQLs", "Breached")
    assert mqls["x"] == [w["week"] for w in sla["weeks"]]
    assert mqls["y"] == [w["mqls"] for w in sla["weeks"]]
    assert breached["y"] == [w["breached"] for w in sla["weeks"]]
    assert table(page, "#breaches-table") == [
        [
            b["contact_id"],
            b["week"],
            _utc(b["mql_at"]),
            _utc(b["responded_at"]) if b["responded_at"] else "no response yet",
            _num(b["hours_to_response"]),
        ]
        for b in sla["breaches"]
    ]
    # The breaches are listed a page at a time; the summary counts them all.
    summary = page.inner_text("#breaches-summary")
    assert summary.startswith(f"{sla['breaches_total']} contact(s) breached"), summary
    assert sla["breaches_total"] == sla["overall"]["breached"] >= len(sla["breaches"])
    screenshot(page, "funnel-sla")

    # The deal funnel, chosen from the keyboard: its stages end in won and lost.
    page.focus("#funnel-object")
    page.keyboard.press("ArrowDown")
    page.wait_for_selector("#funnel-title:has-text('Deal funnel')")
    deals = api(stack, "/v1/reports/funnel", object="deals")
    assert [s["stage"] for s in deals["stages"]][-2:] == ["won", "lost"]
    assert any(s["lost"] for s in deals["stages"])
    assert table(page, "#funnel-table") == _funnel_rows(deals, ["lost"])
    assert chart(page, "funnel-chart")[0]["x"] == [s["volume"] for s in deals["stages"]]
    assert "object=deals" in page.url


def test_funnel_and_sla_follow_the_date_range(page: Any, stack: Any) -> None:
    start, end = (START + timedelta(days=30)).date(), (START + timedelta(days=60)).date()
    sign_in(page, stack, "/funnel")
    page.wait_for_selector("#funnel-table tbody tr")
    page.fill("input[name=from]", start.isoformat())
    page.fill("input[name=to]", end.isoformat())
    page.press("input[name=to]", "Enter")
    page.wait_for_url(f"**/funnel?*from={start.isoformat()}*")
    period = {"from": start.isoformat(), "to": end.isoformat()}
    funnel = api(stack, "/v1/reports/funnel", **period)
    expected = _funnel_rows(funnel, ["recycled", "disqualified"])
    assert expected != _funnel_rows(api(stack, "/v1/reports/funnel"), ["recycled", "disqualified"])
    page.wait_for_function(
        "rows => JSON.stringify([...document.querySelectorAll('#funnel-table tbody tr')]"
        ".map(r => [...r.cells].map(c => c.innerText.trim()))) === JSON.stringify(rows)",
        arg=expected,
    )
    sla = api(stack, "/v1/reports/sla", **period)
    assert table(page, "#sla-table") == [_sla_row(w) for w in sla["weeks"]]

    page.goto(f"{stack['empty_url']}/funnel#key={stack['empty_key']}")
    page.wait_for_selector("#message:has-text('No data yet')")
    assert page.inner_text("#sla-mqls") == "0"
    assert table(page, "#breaches-table") == []


def test_a_wrong_key_shows_the_message_and_the_key_form(page: Any, stack: Any) -> None:
    unknown = "cl_" + "A" * 43
    page.goto(f"{stack['url']}/roi#key={unknown}")
    page.wait_for_selector("#key-panel:not([hidden])")
    reason = page.inner_text("#key-reason")
    assert "refused this key" in reason and "401" in reason, reason
    assert page.is_hidden("#page")
    assert page.evaluate("document.activeElement.id") == "key-input"
    page.fill("#key-input", stack["key"])
    page.press("#key-input", "Enter")
    page.wait_for_selector("#roi-table tbody tr")
    assert page.evaluate("localStorage.getItem('closedloop.apiKey')") == stack["key"]


def test_an_empty_database_says_no_data_yet(page: Any, stack: Any) -> None:
    for path in ("/", "/roi", "/reconciliation"):
        page.goto(f"{stack['empty_url']}{path}#key={stack['empty_key']}")
        page.wait_for_selector("#message:has-text('No data yet')")
        assert page.is_visible("#message")


def test_the_navigation_lists_the_built_pages_only(page: Any, stack: Any) -> None:
    sign_in(page, stack)
    links = page.eval_on_selector_all(
        "nav a", "links => links.map(a => [a.innerText, a.getAttribute('href')])"
    )
    assert links == [
        ["Compare models", "/"],
        ["ROI", "/roi"],
        ["Deal explorer", "/deals"],
        ["Funnel and SLA", "/funnel"],
        ["Leads", "/leads"],
        ["Influence", "/influence"],
        ["Reconciliation", "/reconciliation"],
    ]
    for _, href in links:
        answer = httpx.get(stack["url"] + href)
        assert answer.status_code == 200
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert "<script>" not in answer.text  # no inline script: the CSP would refuse it
