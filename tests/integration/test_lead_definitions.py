"""Lead definitions (versioned, one active, audited) and the MQL list, over HTTP.

The real read API runs against a fresh database of each dialect; MQL and qualification rows
stand in for the worker's output and are written directly. Every expected value is written
out by hand next to its assertion.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.api.app import create_app
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import (
    LeadDefinitionRow,
    LeadQualificationRow,
    MqlRow,
    SystemStateRow,
)
from services.core.settings import Settings

pytestmark = pytest.mark.integration

ALL_STAGES = ["mql", "sql", "opportunity", "customer"]
STRICT = {"mql": {"min_score": 0.25, "min_grade": "B", "required_attributes": ["title"]}}


@dataclass
class Api:
    client: TestClient
    keys: dict[str, str]
    url: str

    def call(self, method: str, path: str, *, scope: str | None = "read", **kw: Any) -> Any:
        auth = {} if scope is None else {"Authorization": f"Bearer {self.keys[scope]}"}
        return self.client.request(method, path, headers={**auth, **kw.pop("headers", {})}, **kw)

    def put(self, definition_id: str, body: Any, *, scope: str = "admin") -> Any:
        return self.call("PUT", f"/v1/lead-definitions/{definition_id}", scope=scope, json=body)

    def get(self, path: str, **params: Any) -> Any:
        response = self.call("GET", path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def count(self, row: type[Any]) -> int:
        engine = make_engine(self.url)
        with make_sessionmaker(engine)() as session:
            found = int(session.scalar(select(func.count()).select_from(row)) or 0)
        engine.dispose()
        return found

    def active_state(self) -> str | None:
        engine = make_engine(self.url)
        with make_sessionmaker(engine)() as session:
            row = session.get(SystemStateRow, "active_lead_definition")
            value = None if row is None else row.value
        engine.dispose()
        return value


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


@pytest.fixture()
def api(db_url: str) -> Iterator[Api]:
    settings = Settings(_env_file=None, database_url=db_url)
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as session:
        keys = {
            "read": create_key(session, name="analyst", scopes=["read"]),
            "admin": create_key(session, name="revops-admin", scopes=["admin"]),
        }
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        yield Api(client, keys, db_url)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- PUT / GET /v1/lead-definitions -------------------------------------------------------


def test_each_change_is_a_new_version_with_who_and_when(api: Api) -> None:
    before = datetime.now(UTC)
    first = api.put("sales-ready", {**STRICT, "note": "agreed at the QBR"})
    assert first.status_code == 201, first.text
    one = first.json()
    stamp = moment(one["versions"][0]["created_at"])
    assert before <= stamp <= datetime.now(UTC)
    strict_rule = {
        "mql": {"min_score": 0.25, "min_grade": "B", "required_attributes": ["title"]},
        "sales_ready_stages": ALL_STAGES,
    }
    assert one == {
        "id": "sales-ready",
        "active": False,
        "version": 1,
        "rule": strict_rule,
        "versions": [
            {
                "version": 1,
                "rule": strict_rule,
                "note": "agreed at the QBR",
                "created_at": one["versions"][0]["created_at"],
                "created_by": "revops-admin",
            }
        ],
    }

    looser = {
        "mql": {"min_grade": "C", "required_attributes": ["contact.title", "industry"]},
        "sales_ready_stages": ["sql", "opportunity"],
    }
    second = api.put("sales-ready", looser)
    assert second.status_code == 201, second.text
    two = second.json()
    looser_rule = {
        "mql": {
            "min_score": None,
            "min_grade": "C",
            "required_attributes": ["contact.title", "industry"],
        },
        "sales_ready_stages": ["sql", "opportunity"],
    }
    assert (two["version"], two["rule"]) == (2, looser_rule)
    assert [(v["version"], v["rule"], v["note"], v["created_by"]) for v in two["versions"]] == [
        (1, strict_rule, "agreed at the QBR", "revops-admin"),
        (2, looser_rule, "", "revops-admin"),
    ]
    assert moment(two["versions"][0]["created_at"]) <= moment(two["versions"][1]["created_at"])
    # The read key sees the same, one definition or all of them.
    assert api.get("/v1/lead-definitions/sales-ready") == two
    assert api.get("/v1/lead-definitions") == {"active": None, "definitions": [two]}
    assert api.count(LeadDefinitionRow) == 2


def test_the_latest_rule_again_stores_nothing(api: Api) -> None:
    assert api.put("sales-ready", STRICT).status_code == 201
    # The same rule spelt differently: the default stages written out in another order with
    # a duplicate, a duplicate attribute, the keys in another order; and a new note.
    same = {
        "mql": {"required_attributes": ["title", "title"], "min_grade": "B", "min_score": 0.25},
        "sales_ready_stages": ["customer", "opportunity", "sql", "mql", "sql"],
        "note": "nothing changed",
    }
    again = api.put("sales-ready", same)
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 1
    assert [v["note"] for v in again.json()["versions"]] == [""]
    assert api.count(LeadDefinitionRow) == 1
    # A different score is a new version; going back to the first rule is another one.
    assert (
        api.put("sales-ready", {"mql": {**STRICT["mql"], "min_score": 0.3}}).json()["version"] == 2
    )
    back = api.put("sales-ready", STRICT)
    assert (back.status_code, back.json()["version"]) == (201, 3)


def test_one_definition_is_active_at_a_time(api: Api) -> None:
    assert api.put("strict", {**STRICT, "active": True}).status_code == 201
    assert api.active_state() == "strict"
    assert api.get("/v1/lead-definitions/strict")["active"] is True

    loose = api.put("loose", {"mql": {"min_grade": "C"}, "active": True})
    assert (loose.status_code, loose.json()["active"]) == (201, True)
    listing = api.get("/v1/lead-definitions")
    assert listing["active"] == "loose"
    assert [(d["id"], d["active"]) for d in listing["definitions"]] == [
        ("loose", True),
        ("strict", False),
    ]

    # Deactivating a definition that is not active changes nothing; an unchanged rule with
    # a new flag stores no version but does switch.
    assert api.put("strict", {**STRICT, "active": False}).json()["active"] is False
    assert api.active_state() == "loose"
    switched = api.put("strict", {**STRICT, "active": True})
    assert (switched.status_code, switched.json()["version"], switched.json()["active"]) == (
        200,
        1,
        True,
    )
    assert api.get("/v1/lead-definitions")["active"] == "strict"
    # Absent "active" leaves it as it is; false on the active one leaves none active.
    assert api.put("strict", {"mql": {"min_grade": "A"}}).json()["active"] is True
    off = api.put("strict", {"mql": {"min_grade": "A"}, "active": False})
    assert (off.status_code, off.json()["active"]) == (200, False)
    assert api.active_state() is None
    listing = api.get("/v1/lead-definitions")
    assert listing["active"] is None
    assert [d["active"] for d in listing["definitions"]] == [False, False]


def test_only_admin_keys_define(api: Api) -> None:
    found = problem(api.put("sales-ready", STRICT, scope="read"), 403)
    assert "admin" in found["detail"]
    problem(api.call("PUT", "/v1/lead-definitions/sales-ready", scope=None, json=STRICT), 401)
    problem(api.call("GET", "/v1/lead-definitions", scope=None), 401)
    assert api.count(LeadDefinitionRow) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mql": {"min_score": 1.5}}, "body.mql.min_score"),
        ({"mql": {"min_score": -0.1}}, "body.mql.min_score"),
        ({"mql": {"min_score": "0.3"}}, "body.mql.min_score"),
        ({"mql": {"min_score": True}}, "body.mql.min_score"),
        ({"mql": {"min_grade": "E"}}, "body.mql.min_grade"),
        ({"mql": {"required_attributes": ["Job Title"]}}, "body.mql.required_attributes[0]"),
        ({"mql": {"required_attributes": ["title", "deal.x"]}}, "body.mql.required_attributes[1]"),
        ({"mql": {"required_attributes": "title"}}, "body.mql.required_attributes"),
        ({"mql": {}, "sales_ready_stages": []}, "body.sales_ready_stages"),
        ({"mql": {}, "sales_ready_stages": ["lead"]}, "body.sales_ready_stages[0]"),
        ({"mql": {}, "colour": "red"}, "body.colour"),
        ({"mql": {"min_score": 0.2, "min_grades": "B"}}, "body.mql.min_grades"),
        ({"min_score": 0.2}, "body.min_score,body.mql"),
        ({"mql": {}, "active": "yes"}, "body.active"),
        ({"mql": {}, "note": "a\x00b"}, "body.note"),
    ],
)
def test_bad_bodies_name_their_field(api: Api, body: dict[str, Any], field: str) -> None:
    found = problem(api.put("sales-ready", body), 422)
    assert sorted(e["field"] for e in found["errors"]) == field.split(","), found
    assert api.count(LeadDefinitionRow) == 0


def test_ids(api: Api) -> None:
    for bad in ("Sales", "-sales", "sales ready", "a" * 101):
        found = problem(api.put(bad, STRICT), 422)
        assert found["errors"][0]["field"] == "path.definition_id"
    assert api.put("a" * 100, STRICT).status_code == 201
    whole = api.put("q3_2026-v2", {"mql": {"min_score": 1}})
    assert (whole.status_code, whole.json()["rule"]["mql"]["min_score"]) == (201, 1.0)
    found = problem(api.call("GET", "/v1/lead-definitions/unknown"), 404)
    assert found["detail"] == "no lead definition with id 'unknown'"
    problem(api.call("GET", "/v1/lead-definitions/Not%20An%20Id"), 404)


def test_every_put_is_audited(api: Api) -> None:
    api.put("strict", {**STRICT, "note": "v1", "active": True})
    api.put("strict", {**STRICT, "note": "again"})
    entries = api.call(
        "GET", "/v1/admin/audit", scope="admin", params={"action": "lead_definition.define"}
    ).json()["entries"]
    assert [(e["key_name"], e["target"], e["detail"]) for e in entries] == [
        (
            "revops-admin",
            "lead_definition:strict",
            {
                "version": 1,
                "new_version": False,
                "rule": {
                    "min_score": 0.25,
                    "min_grade": "B",
                    "required_attributes": ["title"],
                    "sales_ready_stages": ALL_STAGES,
                },
                "note": "again",
                "active_before": "strict",
                "active_after": "strict",
            },
        ),
        (
            "revops-admin",
            "lead_definition:strict",
            {
                "version": 1,
                "new_version": True,
                "rule": {
                    "min_score": 0.25,
                    "min_grade": "B",
                    "required_attributes": ["title"],
                    "sales_ready_stages": ALL_STAGES,
                },
                "note": "v1",
                "active_before": None,
                "active_after": "strict",
            },
        ),
    ]


# --- GET /v1/reports/mqls -----------------------------------------------------------------


def seed_mqls(url: str) -> None:
    """Three MQLs: acme (two contacts, episode 1), globex (episode 2, not yet published)."""
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        session.add_all(
            [
                LeadQualificationRow(
                    definition_id="strict",
                    account_id="acme",
                    episode=1,
                    version=1,
                    qualified_at=moment("2026-03-01T09:00:00Z"),
                    ended_at=None,
                    score=0.31,
                    grade="A",
                    raw_grade=1.2,
                ),
                LeadQualificationRow(
                    definition_id="strict",
                    account_id="globex",
                    episode=2,
                    version=2,
                    qualified_at=moment("2026-03-02T23:30:00Z"),
                    ended_at=None,
                    score=0.5,
                    grade="B",
                    raw_grade=0.4,
                ),
            ]
        )
        for event_id, contact, account, episode, version, at, published in (
            ("mql-2", "c-ann", "acme", 1, 1, "2026-03-01T09:00:00Z", "2026-03-01T09:00:01Z"),
            ("mql-1", "c-bob", "acme", 1, 1, "2026-03-01T09:00:00Z", "2026-03-01T09:00:01Z"),
            ("mql-3", "c-cat", "globex", 2, 2, "2026-03-02T23:30:00Z", None),
        ):
            session.add(
                MqlRow(
                    event_id=event_id,
                    contact_id=contact,
                    account_id=account,
                    definition_id="strict",
                    version=version,
                    episode=episode,
                    qualified_at=moment(at),
                    payload="{}",
                    published_at=None if published is None else moment(published),
                )
            )
    engine.dispose()


ROW_1 = {
    "event_id": "mql-1",
    "contact_id": "c-bob",
    "account_id": "acme",
    "definition_id": "strict",
    "version": 1,
    "episode": 1,
    "qualified_at": "2026-03-01T09:00:00Z",
    "score": 0.31,
    "grade": "A",
    "published": True,
}
ROW_2 = {**ROW_1, "event_id": "mql-2", "contact_id": "c-ann"}
ROW_3 = {
    "event_id": "mql-3",
    "contact_id": "c-cat",
    "account_id": "globex",
    "definition_id": "strict",
    "version": 2,
    "episode": 2,
    "qualified_at": "2026-03-02T23:30:00Z",
    "score": 0.5,
    "grade": "B",
    "published": False,
}


def test_mql_list(api: Api) -> None:
    assert api.get("/v1/reports/mqls") == {
        "since": None,
        "until": None,
        "rows": [],
        "next_offset": None,
    }
    seed_mqls(api.url)
    # By qualified_at, then event_id.
    assert api.get("/v1/reports/mqls")["rows"] == [ROW_1, ROW_2, ROW_3]
    # since is inclusive, as a date (UTC midnight) or a timestamp with any offset.
    by_day = api.get("/v1/reports/mqls", since="2026-03-02")
    assert (by_day["since"], by_day["rows"]) == ("2026-03-02T00:00:00Z", [ROW_3])
    exact = api.get("/v1/reports/mqls", since="2026-03-02T23:30:00Z")
    assert exact["rows"] == [ROW_3]
    # 2026-03-03T00:30+01:00 is 23:30Z: inclusive.
    offset = api.get("/v1/reports/mqls", since="2026-03-03T00:30:00+01:00")
    assert (offset["since"], offset["rows"]) == ("2026-03-02T23:30:00Z", [ROW_3])
    assert api.get("/v1/reports/mqls", since="2026-03-02T23:30:01Z")["rows"] == []
    # until is exclusive.
    assert api.get("/v1/reports/mqls", until="2026-03-02T23:30:00Z")["rows"] == [ROW_1, ROW_2]
    # Pages.
    first = api.get("/v1/reports/mqls", limit=2)
    assert (first["rows"], first["next_offset"]) == ([ROW_1, ROW_2], 2)
    last = api.get("/v1/reports/mqls", limit=2, offset=2)
    assert (last["rows"], last["next_offset"]) == ([ROW_3], None)
    linked = api.call("GET", "/v1/reports/mqls", params={"limit": 1, "offset": 1})
    assert "offset=2" in linked.headers["link"] and 'rel="next"' in linked.headers["link"]


def test_mql_list_as_csv(api: Api) -> None:
    seed_mqls(api.url)
    response = api.call(
        "GET", "/v1/reports/mqls", params={"since": "2026-03-01"}, headers={"Accept": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines() == [
        "event_id,contact_id,account_id,definition_id,version,episode,qualified_at,score,grade,"
        "published",
        "mql-1,c-bob,acme,strict,1,1,2026-03-01T09:00:00Z,0.31,A,true",
        "mql-2,c-ann,acme,strict,1,1,2026-03-01T09:00:00Z,0.31,A,true",
        "mql-3,c-cat,globex,strict,2,2,2026-03-02T23:30:00Z,0.5,B,false",
    ]
    assert list(csv.DictReader(io.StringIO(response.text)))[2]["published"] == "false"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "query.since"),
        ({"since": "2026-02-30"}, "query.since"),
        ({"since": "2026-03-01T12:00:00"}, "query.since"),  # no offset
        ({"since": "2026-03-01T12:00:00 01:00"}, "query.since"),  # an unencoded '+'
        ({"until": "2026-13-01"}, "query.until"),
        ({"since": "2026-03-02", "until": "2026-03-01"}, "query.until"),
        ({"limit": 0}, "query.limit"),
    ],
)
def test_mql_list_refuses_bad_parameters(api: Api, params: dict[str, Any], field: str) -> None:
    found = problem(api.call("GET", "/v1/reports/mqls", params=params), 422)
    assert [e["field"] for e in found["errors"]] == [field]
    if " " in str(params.get("since")):
        assert "send a '+' offset as %2B" in found["detail"]


def test_racing_puts_get_consecutive_versions(api: Api) -> None:
    rules = [{"mql": {"min_score": n / 10}} for n in range(1, 7)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda body: api.put("raced", body), rules))
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    assert sorted(a.json()["version"] for a in answers) == [1, 2, 3, 4, 5, 6]
    # Each answer is the state its own PUT committed: its rule is the latest version.
    assert [a.json()["rule"]["mql"]["min_score"] for a in answers] == [
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
    ]
    stored = {
        v["version"]: v["rule"]["mql"]["min_score"]
        for v in api.get("/v1/lead-definitions/raced")["versions"]
    }
    assert {a.json()["version"]: a.json()["rule"]["mql"]["min_score"] for a in answers} == stored
