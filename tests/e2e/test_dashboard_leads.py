"""The dashboard's Leads page in real headless Chromium against a running API process.

The API serves a SQLite projection of a simulated history applied by the worker's own code,
with a markov fit and a grade fit; lead definitions are stored through the API with an admin
key (two versions of the active one, one other), and the worker's qualifying pass
(``qualify_accounts``: episodes and MQL outbox rows, nothing published) writes the MQLs. A second
API process serves an empty database. Every number the page shows, the backtest's included
(both definitions, the chart, the missed won deals, the walk-forward refits), is checked against
what the read API answers for the same question, fetched here with httpx. Chromium is Debian's,
driven by Playwright through its executable path (the fixtures of ``test_dashboard``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.attribution.fitting import request_fit, run_requested_fits
from services.attribution.grading import fit_grade_snapshot
from services.attribution.projector import apply_events
from services.attribution.qualifying import qualify_accounts
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.broker import free_port
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.events import EVENT_LIST_ADAPTER
from services.simulate import generate
from tests.conftest import make_settings
from tests.e2e import test_dashboard as dashboard
from tests.e2e.test_dashboard import CHROMIUM, api, chart, screenshot, shown, table
from tests.e2e.test_pipeline import START
from tests.support.infra import sqlite_database
from tests.support.processes import start_service, stop, wait_for_port

pytestmark = pytest.mark.e2e
# test_dashboard's fixtures: Playwright, and a Chromium tab that fails the test on a script error.
driver = dashboard.driver
page = dashboard.page

# The simulated touches run from START (120 days ago) for 60 days: all inside this window.
LOOKBACK_DAYS = 365
ADMIN = "revops-admin"
# The definitions stored through the API, in order, and how the page words each rule.
DEFINITIONS = [
    ("standard", {"mql": {"min_grade": "C"}, "note": "first draft", "active": True}),
    (
        "standard",
        {
            "mql": {"min_score": 0.25, "min_grade": "B", "required_attributes": ["title"]},
            "note": "agreed at the Q3 review",
        },
    ),
    ("strict", {"mql": {"min_score": 0.5, "min_grade": "A", "required_attributes": ["title"]}}),
]
WORDS = {
    ("standard", 1): "grade C or better",
    ("standard", 2): "grade B or better · score ≥ 25% · has title",
    ("strict", 1): "grade A · score ≥ 50% · has title",
}


def _projection(db: str, history: list[dict[str, Any]]) -> dict[str, str]:
    """Apply ``history``, fit markov and the grade, and return a read and an admin key."""
    settings = make_settings(database_url=db, bootstrap="127.0.0.1:9", lookback_days=LOOKBACK_DAYS)
    sessions = make_sessionmaker(make_engine(db))
    now = datetime.now(UTC)
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        if history:
            events = EVENT_LIST_ADAPTER.validate_python(history)
            apply_events(session, events, settings=settings, now=now)
            request_fit(session, "markov", now=now)
        keys = {
            "read": create_key(session, name="dashboard", scopes=["read"]),
            "admin": create_key(session, name=ADMIN, scopes=["read", "admin"]),
        }
    run_requested_fits(sessions, settings)
    if history:
        with sessions.begin() as session:
            fit_grade_snapshot(session, settings, now=now)
    sessions.kw["bind"].dispose()
    return keys


def _define_and_qualify(url: str, db: str, admin_key: str) -> None:
    """Store the lead definitions through the API, then run the worker's qualifying pass."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    for definition_id, body in DEFINITIONS:
        answer = httpx.put(f"{url}/v1/lead-definitions/{definition_id}", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
    settings = make_settings(database_url=db, bootstrap="127.0.0.1:9", lookback_days=LOOKBACK_DAYS)
    sessions = make_sessionmaker(make_engine(db))
    with sessions.begin() as session:
        written = qualify_accounts(session, settings, now=datetime.now(UTC))
    sessions.kw["bind"].dispose()
    assert written > 5, "the simulated history must give the page several MQLs"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two API processes: one on a simulated projection with MQLs, one on an empty database."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run make tools (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("dashboard-leads")
    history = generate(seed=4, deals=40, start=START, days=60)
    with sqlite_database(tmp) as full_db, sqlite_database(tmp) as empty_db:
        dbs = {"full": full_db, "empty": empty_db}
        keys = {"full": _projection(full_db, history), "empty": _projection(empty_db, [])}
        ports = {name: free_port() for name in dbs}
        procs = [
            start_service(
                "api",
                {
                    "CLOSEDLOOP_DATABASE_URL": db,
                    "CLOSEDLOOP_API_PORT": str(ports[name]),
                    "CLOSEDLOOP_LOOKBACK_DAYS": str(LOOKBACK_DAYS),
                },
                tmp / f"api-{name}.log",
            )
            for name, db in dbs.items()
        ]
        try:
            for port in ports.values():
                wait_for_port(port, timeout_s=60)
            url = f"http://127.0.0.1:{ports['full']}"
            _define_and_qualify(url, full_db, keys["full"]["admin"])
            yield {
                "url": url,
                "key": keys["full"]["read"],
                "empty_url": f"http://127.0.0.1:{ports['empty']}",
                "empty_key": keys["empty"]["read"],
            }
        finally:
            for proc in procs:
                stop(proc)


def _when(stamp: str | None) -> str:
    """How the page writes a timestamp: UTC to the second."""
    return "–" if stamp is None else re.sub(r"(\.\d+)?Z$", " UTC", stamp.replace("T", " "))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f}%"


def _fixed(value: float | None) -> str:
    return "–" if value is None else f"{value:.6f}"


def _lead_rows(report: dict[str, Any]) -> list[list[str]]:
    return [
        [
            r["account_id"],
            _pct(r["probability"]),
            r["grade"] or "–",
            _fixed(r["raw_grade"]),
            str(r["touches"]),
            r["last_touch_at"][:10] if r["last_touch_at"] else "–",
        ]
        for r in report["rows"]
    ]


def _mql_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["contact_id"],
            r["account_id"],
            f"{r['definition_id']}@{r['version']}",
            _when(r["qualified_at"]),
            _pct(r["score"]),
            r["grade"] or "–",
            "yes" if r["published"] else "not yet",
        ]
        for r in rows
    ]


def _wait_for_rows(tab: Any, selector: str, rows: list[list[str]]) -> None:
    tab.wait_for_function(
        "([selector, rows]) => JSON.stringify("
        "[...document.querySelectorAll(selector + ' tbody tr')]"
        ".map(r => [...r.cells].map(c => c.innerText.trim()))) === JSON.stringify(rows)",
        arg=[selector, rows],
        timeout=10_000,
    )


BACKTEST_DRAWN = "() => document.getElementById('backtest-chart').data !== undefined"


def _last_year() -> tuple[str, str]:
    """The backtest's default range: a year ago to tomorrow (exclusive), in UTC days."""
    today = datetime.now(UTC).date()
    start = date(today.year - 1, today.month, 1) + timedelta(days=today.day - 1)
    return start.isoformat(), (today + timedelta(days=1)).isoformat()


def _backtest(stack: dict[str, Any], definition: str, **params: str) -> Any:
    return api(stack, f"/v1/lead-definitions/{definition}/backtest", **params)


def _count(key: str) -> Any:
    return lambda d: str(d[key])


# The figures the page lists per definition, in order, and how it writes each.
FIGURES = [
    ("Decided deals (won or lost)", _count("decided_deals")),
    ("Won deals", _count("won_deals")),
    ("Base win rate", lambda d: _pct(d["base_win_rate"])),
    ("Qualified deals (caught)", _count("qualified_deals")),
    ("Qualified and won", _count("qualified_won")),
    ("Qualified win rate", lambda d: _pct(d["qualified_win_rate"])),
    ("Lift (qualified ÷ base rate)", lambda d: "–" if d["lift"] is None else f"{d['lift']:.4f}×"),
    ("Qualified accounts", _count("qualified_accounts")),
    ("Share of won revenue caught", lambda d: _pct(d["share_of_won_revenue"])),
    ("Share of won deals caught", lambda d: _pct(d["share_of_won_deals"])),
    ("Caught won revenue", lambda d: shown(d["caught_won_revenue"])),
    ("Won revenue", lambda d: shown(d["won_revenue"])),
    (
        "Median days qualifying → won",
        lambda d: "–" if d["median_days_to_won"] is None else f"{d['median_days_to_won']:.2f}",
    ),
    ("Won deals missed", _count("missed_total")),
]


def _backtest_rows(body: dict[str, Any]) -> list[list[str]]:
    return [[label, *(shown_as(d) for d in body["definitions"])] for label, shown_as in FIGURES]


def _missed_rows(body: dict[str, Any]) -> list[list[str]]:
    return [
        [
            m["deal_id"],
            m["account_id"],
            "not converted" if m["amount"] is None else shown(m["amount"]),
            _when(m["closed_at"]),
            "; ".join(m["reasons"]),
        ]
        for m in body["definitions"][0]["missed"]
    ]


def _fit_rows(body: dict[str, Any]) -> list[list[str]]:
    yes = {True: "yes", False: "no"}
    return [
        [f["month"], _when(f["decided_before"]), str(f["training_deals"]), str(f["won"])]
        + [yes[f["markov"]], yes[f["grade"]]]
        for f in body["fits"]
    ]


def _header(tab: Any, selector: str) -> list[str]:
    cells: list[str] = tab.eval_on_selector_all(
        f"{selector} thead th", "cells => cells.map(c => c.innerText.trim())"
    )
    return cells


def _open(tab: Any, stack: dict[str, Any], query: str = "") -> None:
    tab.goto(f"{stack['url']}/leads{query}#key={stack['key']}")
    tab.wait_for_selector("#leads-table tbody tr")
    tab.wait_for_selector("#mql-table tbody tr")


def test_the_active_definition_its_version_and_history_show(page: Any, stack: Any) -> None:
    _open(page, stack)
    page.wait_for_selector("#definition-version")
    body = api(stack, "/v1/lead-definitions")
    assert body["active"] == "standard"
    [active] = [d for d in body["definitions"] if d["id"] == body["active"]]
    latest = active["versions"][-1]
    assert page.inner_text("#definition-id") == active["id"]
    assert page.inner_text("#definition-version") == str(active["version"]) == "2"
    assert page.inner_text("#definition-rule") == WORDS[("standard", 2)]
    assert page.inner_text("#definition-by") == latest["created_by"] == ADMIN
    assert page.inner_text("#definition-at") == _when(latest["created_at"])
    assert "agreed at the Q3 review" in page.inner_text("#definition-note")
    assert table(page, "#versions-table") == [
        [str(v["version"]), WORDS[("standard", v["version"])], v["note"] or "–"]
        + [v["created_by"], _when(v["created_at"])]
        for v in reversed(active["versions"])
    ]
    [other] = [d for d in body["definitions"] if d["id"] != body["active"]]
    assert table(page, "#others-table") == [
        ["strict", "1", WORDS[("strict", 1)], ADMIN, _when(other["versions"][-1]["created_at"])]
    ]
    assert page.is_hidden("#no-definition")


def test_the_leads_table_matches_the_api_and_its_filters(page: Any, stack: Any) -> None:
    _open(page, stack)
    everyone = api(stack, "/v1/reports/leads", limit="100")
    assert len(everyone["rows"]) > 10
    assert table(page, "#leads-table") == _lead_rows(everyone)

    page.select_option("#min-grade", "B")
    good = api(stack, "/v1/reports/leads", min_grade="B", limit="100")
    assert 0 < len(good["rows"]) < len(everyone["rows"])
    assert {r["grade"] for r in good["rows"]} <= {"A", "B"}
    _wait_for_rows(page, "#leads-table", _lead_rows(good))
    assert "min_grade=B" in page.url

    # Minimum score in percent, typed and applied from the keyboard.
    page.fill("#min-score", "56")
    page.press("#min-score", "Enter")
    engaged = api(stack, "/v1/reports/leads", min_grade="B", min_score="0.56", limit="100")
    assert 0 < len(engaged["rows"]) < len(good["rows"])
    _wait_for_rows(page, "#leads-table", _lead_rows(engaged))

    page.fill("#min-score", "")
    page.select_option("#min-grade", "")
    page.select_option("#sort", "grade")
    by_grade = api(stack, "/v1/reports/leads", sort="grade", limit="100")
    assert _lead_rows(by_grade) != _lead_rows(everyone)
    _wait_for_rows(page, "#leads-table", _lead_rows(by_grade))


def _account_with_an_unseen_value(stack: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    for row in api(stack, "/v1/reports/leads", limit="100")["rows"]:
        grade = api(stack, f"/v1/accounts/{row['account_id']}/grade")
        if any(not c["seen"] for c in grade["contributions"]) and grade["contributions"]:
            return row["account_id"], grade
    raise AssertionError("the simulated history has an open account with an unseen value")


def test_choosing_an_account_explains_its_grade_and_score(page: Any, stack: Any) -> None:
    account, grade = _account_with_an_unseen_value(stack)
    score = api(stack, f"/v1/accounts/{account}/score")
    _open(page, stack)
    # From the keyboard: the account id in the table is a button.
    page.focus(f"#leads-table button[data-account='{account}']")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('grade-chart').data !== undefined")
    assert page.inner_text("#account-title") == f"Account {account}"
    assert page.evaluate("document.activeElement.id") == "account-title"
    assert f"account={account}" in page.url
    assert page.inner_text("#grade-letter") == grade["letter"]
    assert page.inner_text("#grade-raw") == _fixed(grade["raw"])
    cut = grade["cutoffs"]
    assert (
        f"A ≥ {_fixed(cut['A'])} · B ≥ {_fixed(cut['B'])} · C ≥ {_fixed(cut['C'])} · else D"
        in page.inner_text("#grade-cutoffs")
    )

    [bars] = chart(page, "grade-chart")
    items = grade["contributions"]
    assert len(bars["x"]) == len(bars["y"]) == len(items)
    assert bars["y"] == [f"{c['key']} = {c['value']}" for c in items]
    assert bars["x"] == [c["contribution"] for c in items]
    assert bars["text"] == [
        f"{c['contribution']:+.6f}" if c["seen"] else "0 (unseen)" for c in items
    ]
    assert [x for x, c in zip(bars["x"], items, strict=True) if not c["seen"]] == [
        0 for c in items if not c["seen"]
    ]
    # The bars add up to the raw grade, as the API promises (to its 6 decimals).
    assert round(sum(bars["x"]), 6) == pytest.approx(grade["raw"], abs=1e-6)

    assert page.inner_text("#score-probability") == _pct(score["probability"])
    assert page.inner_text("#score-touches") == str(len(score["journey"]))
    channels = sorted(score["contributions"].items(), key=lambda kv: (-kv[1], kv[0]))
    assert table(page, "#score-table") == [[name, _pct(share)] for name, share in channels]
    assert page.get_attribute(f"button[data-account='{account}']", "aria-pressed") == "true"
    page.evaluate("document.activeElement.blur()")
    page.wait_for_function(BACKTEST_DRAWN)
    screenshot(page, "leads")

    # The choice is in the address: a reload shows the same account.
    page.reload()
    page.wait_for_selector(f"#account-title:has-text('{account}')")
    page.wait_for_function("() => document.getElementById('grade-chart').data !== undefined")


def test_the_mql_list_its_pages_and_csv_match_the_api(
    page: Any, stack: Any, tmp_path: Path
) -> None:
    _open(page, stack)
    mqls = api(stack, "/v1/reports/mqls", limit="100")
    assert len(mqls["rows"]) > 5 and mqls["next_offset"] is None
    assert {r["definition_id"] for r in mqls["rows"]} == {"standard"}
    assert table(page, "#mql-table") == _mql_rows(mqls["rows"])
    assert page.is_hidden("#mql-more")

    with page.expect_download() as download:
        page.click("#download-mqls")
    saved = tmp_path / "mqls.csv"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "mqls.csv"
    expected = httpx.get(
        stack["url"] + "/v1/reports/mqls",
        headers={"Authorization": f"Bearer {stack['key']}", "Accept": "text/csv"},
        timeout=10,
    )
    assert expected.status_code == 200
    assert saved.read_bytes() == expected.content
    assert expected.content.count(b"\n") >= len(mqls["rows"]) + 1

    # Five rows a page, then the next five appended.
    page.fill("#mql-limit", "5")
    page.press("#mql-limit", "Enter")
    first = api(stack, "/v1/reports/mqls", limit="5")
    _wait_for_rows(page, "#mql-table", _mql_rows(first["rows"]))
    assert first["next_offset"] == 5 and page.is_visible("#mql-more")
    page.click("#mql-more")
    ten = api(stack, "/v1/reports/mqls", limit="10")
    _wait_for_rows(page, "#mql-table", _mql_rows(ten["rows"]))

    # Since tomorrow: the API lists nothing, and the page says so.
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert api(stack, "/v1/reports/mqls", since=tomorrow)["rows"] == []
    page.fill("#mql-since", tomorrow)
    page.press("#mql-since", "Enter")
    page.wait_for_selector("#mql-status:has-text('No MQL since this date')")
    assert table(page, "#mql-table") == []


def test_an_empty_database_says_no_definition_and_no_fit(page: Any, stack: Any) -> None:
    headers = {"Authorization": f"Bearer {stack['empty_key']}"}
    answer = httpx.get(stack["empty_url"] + "/v1/reports/leads", headers=headers, timeout=10)
    assert answer.status_code == 409
    page.goto(f"{stack['empty_url']}/leads#key={stack['empty_key']}")
    page.wait_for_selector("#no-definition:not([hidden])")
    assert "PUT" in page.inner_text("#no-definition")
    assert page.is_hidden("#active-definition")
    page.wait_for_selector("#leads-status:has-text('No scores yet')")
    assert answer.json()["detail"] in page.inner_text("#leads-status")
    page.wait_for_selector("#mql-status:has-text('No MQLs yet')")
    assert table(page, "#leads-table") == [] and table(page, "#mql-table") == []
    page.wait_for_selector("#backtest-status:has-text('No lead definition to backtest')")
    assert page.is_hidden("#backtest-form") and page.is_hidden("#backtest-body")
    assert page.is_hidden("#message")


def test_the_backtest_compares_two_definitions_as_the_api_does(
    page: Any, stack: Any, tmp_path: Path
) -> None:
    _open(page, stack)
    page.wait_for_function(BACKTEST_DRAWN)
    # Defaults: the active definition's latest version, the other definition, the last year.
    start, end = _last_year()
    assert page.input_value("#bt-definition") == "standard@2"
    assert page.input_value("#bt-compare") == "strict@1"
    assert (page.input_value("#bt-from"), page.input_value("#bt-to")) == (start, end)
    period = {"from": start, "to": end}
    body = _backtest(stack, "standard", version="2", compare="strict@1", **period)
    standard, strict = body["definitions"]
    assert (standard["id"], standard["version"], strict["id"], strict["version"]) == (
        "standard",
        2,
        "strict",
        1,
    )
    assert standard["decided_deals"] > 10 and standard["qualified_deals"] > 0
    assert standard["missed_total"] > 0 and strict["missed_total"] > standard["missed_total"]

    assert _header(page, "#backtest-table") == ["Figure", "standard v2", "strict v1"]
    assert table(page, "#backtest-table") == _backtest_rows(body)
    assert page.inner_text("#backtest-rules") == (
        f"standard v2: {WORDS[('standard', 2)]}\nstrict v1: {WORDS[('strict', 1)]}"
    )
    names = ["standard v2", "strict v1"]
    keys = ["qualified_win_rate", "base_win_rate", "share_of_won_revenue"]
    traces = chart(page, "backtest-chart")
    assert [t["x"] for t in traces] == [names] * 3
    assert [t["y"] for t in traces] == [
        [None if d[k] is None else d[k] * 100 for d in body["definitions"]] for k in keys
    ]
    assert [t["text"] for t in traces] == [[_pct(d[k]) for d in body["definitions"]] for k in keys]

    # The first definition's missed won deals, and how many there are in all.
    assert table(page, "#missed-table") == _missed_rows(body)
    assert len(standard["missed"]) == standard["missed_total"]  # under the 100 listed
    assert page.inner_text("#missed-caption").startswith(
        f"{standard['missed_total']} won deals were missed by standard v2"
    )
    # The walk-forward refits: counted, listed, and the months missing a fit named.
    fits = body["fits"]
    lacking = [f["month"] for f in fits if not (f["markov"] and f["grade"])]
    assert fits and lacking, "the history's first month has nothing decided before it"
    assert page.inner_text("#fits-months") == str(len(fits))
    assert page.inner_text("#fits-complete") == str(len(fits) - len(lacking))
    assert page.inner_text("#fits-lacking") == str(len(lacking))
    assert all(month in page.inner_text("#fits-summary") for month in lacking)
    page.focus("#fits-details summary")  # opened from the keyboard
    page.keyboard.press("Enter")
    assert table(page, "#fits-table") == _fit_rows(body)
    explained = page.inner_text("#backtest-explained")
    assert f"each of the {standard['decided_deals']} deals" in explained
    assert f"in the {body['lookback_days']} days before" in explained
    assert f"a base win rate of {_pct(standard['base_win_rate'])}" in explained
    assert "definition=standard%402" in page.url and "compare=strict%401" in page.url

    # Compared with the first version instead, chosen from the keyboard: the API's new numbers.
    page.focus("#bt-compare")
    page.keyboard.press("ArrowUp")
    earlier = _backtest(stack, "standard", version="2", compare="standard@1", **period)
    assert earlier["definitions"][0] == standard
    assert _backtest_rows(earlier) != _backtest_rows(body)
    _wait_for_rows(page, "#backtest-table", _backtest_rows(earlier))
    assert _header(page, "#backtest-table") == ["Figure", "standard v2", "standard v1"]
    assert [t["y"] for t in chart(page, "backtest-chart")] == [
        [None if d[k] is None else d[k] * 100 for d in earlier["definitions"]] for k in keys
    ]

    # The first definition's older version alone: its own missed deals and reasons.
    page.select_option("#bt-compare", "none")
    page.select_option("#bt-definition", "standard@1")
    alone = _backtest(stack, "standard", version="1", **period)
    assert len(alone["definitions"]) == 1
    assert _missed_rows(alone) != _missed_rows(body)
    _wait_for_rows(page, "#backtest-table", _backtest_rows(alone))
    _wait_for_rows(page, "#missed-table", _missed_rows(alone))

    with page.expect_download() as download:
        page.click("#download-backtest")
    saved = tmp_path / "backtest.csv"
    download.value.save_as(saved)
    expected = httpx.get(
        stack["url"] + "/v1/lead-definitions/standard/backtest",
        params={"version": "1", **period},
        headers={"Authorization": f"Bearer {stack['key']}", "Accept": "text/csv"},
        timeout=10,
    )
    assert expected.status_code == 200 and expected.content.count(b"\n") == 2
    assert saved.read_bytes() == expected.content
    assert download.value.suggested_filename == "backtest-standard.csv"


def test_the_backtest_follows_the_dates_and_says_what_went_wrong(page: Any, stack: Any) -> None:
    headers = {"Authorization": f"Bearer {stack['key']}"}
    _open(page, stack)
    page.wait_for_function(BACKTEST_DRAWN)
    # A narrower range, typed and applied from the keyboard: fewer deals, the API's numbers.
    period = {
        "from": (START + timedelta(days=30)).date().isoformat(),
        "to": (START + timedelta(days=75)).date().isoformat(),
    }
    narrow = _backtest(stack, "standard", version="2", compare="strict@1", **period)
    whole = _backtest(
        stack,
        "standard",
        version="2",
        compare="strict@1",
        **dict(zip(("from", "to"), _last_year(), strict=True)),
    )
    assert 0 < narrow["definitions"][0]["decided_deals"] < whole["definitions"][0]["decided_deals"]
    page.fill("#bt-from", period["from"])
    page.fill("#bt-to", period["to"])
    page.press("#bt-to", "Enter")
    _wait_for_rows(page, "#backtest-table", _backtest_rows(narrow))
    assert table(page, "#missed-table") == _missed_rows(narrow)
    page.click("#fits-details summary")
    assert table(page, "#fits-table") == _fit_rows(narrow)

    # No deal decided in the range: the API answers zeros, the page says there is nothing.
    later = {"from": (date.today() + timedelta(days=1)).isoformat()}
    later["to"] = (date.today() + timedelta(days=30)).isoformat()
    assert _backtest(stack, "standard", **later)["definitions"][0]["decided_deals"] == 0
    page.fill("#bt-from", later["from"])
    page.fill("#bt-to", later["to"])
    page.press("#bt-to", "Enter")
    page.wait_for_selector("#backtest-status:has-text('nothing to backtest')")
    assert page.is_hidden("#backtest-body")

    # The range backwards: the API's 422, in words, on the page.
    page.fill("#bt-from", later["to"])
    page.fill("#bt-to", later["from"])
    bad = httpx.get(
        stack["url"] + "/v1/lead-definitions/standard/backtest",
        params={"from": later["to"], "to": later["from"]},
        headers=headers,
        timeout=10,
    )
    assert bad.status_code == 422
    page.click("#backtest-form button[type=submit]")
    page.wait_for_selector("#backtest-status:has-text('not valid')")
    assert bad.json()["detail"] in page.inner_text("#backtest-status")
    assert page.is_hidden("#backtest-body")

    # A link naming a version that was never stored: kept, sent, and the API's 404 shown.
    unknown = httpx.get(
        stack["url"] + "/v1/lead-definitions/standard/backtest",
        params={"version": "9"},
        headers=headers,
        timeout=10,
    )
    assert unknown.status_code == 404
    _open(page, stack, "?definition=standard%409")
    page.wait_for_selector("#backtest-status:has-text('unknown definition or version')")
    assert unknown.json()["detail"] in page.inner_text("#backtest-status")
    assert page.input_value("#bt-definition") == "standard@9"
