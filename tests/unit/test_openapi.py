"""The OpenAPI documents of both services say what the services answer (contract §6).

Bearer auth and its 401/403 on every keyed operation, every error as problem+json, and an
event schema no looser than the validator: events the validator refuses, the schema refuses
too (checked with a JSON Schema validator on the served document), and every event of a
simulated history passes both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import pytest
from pydantic import ValidationError

from services.api.app import create_app as create_api
from services.core.events import EVENT_ADAPTER
from services.core.settings import Settings
from services.ingest.app import create_app as create_ingest
from services.simulate import generate

SETTINGS = Settings(_env_file=None)
API = create_api(SETTINGS).openapi()
INGEST = create_ingest(SETTINGS).openapi()
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


@pytest.mark.parametrize("doc", [API, INGEST], ids=["api", "ingest"])
def test_bearer_scheme_and_problem_answers(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["HTTPBearer"]["description"],
    }
    assert {"Problem", "FieldError"} <= set(doc["components"]["schemas"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for method, path, op in operations(doc):
        for code, response in op["responses"].items():
            if code >= "400":
                assert response["content"] == PROBLEM, (method, path, code)
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in op["responses"], (method, path)


def test_every_keyed_operation_declares_bearer_401_and_403() -> None:
    keyed = [
        (m, p, op)
        for doc in (API, INGEST)
        for m, p, op in operations(doc)
        if p.startswith("/v1/") and "/webhooks/" not in p
    ]
    assert len(keyed) >= 16
    for method, path, op in keyed:
        assert op.get("security") == [{"HTTPBearer": []}], (method, path)
        assert {"401", "403", "503"} <= set(op["responses"]), (method, path)
    unkeyed = [p for m, p, op in operations(API) + operations(INGEST) if not op.get("security")]
    assert sorted(set(unkeyed)) == ["/healthz", "/readyz", "/v1/webhooks/{provider}"]


def test_ingest_documents_its_own_refusals() -> None:
    events = INGEST["paths"]["/v1/events"]["post"]["responses"]
    assert {"202", "400", "401", "403", "413", "415", "422", "503"} <= set(events)
    assert events["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AcceptedOut"
    }


EVENT_SCHEMA = jsonschema_rs.validator_for(
    {"$ref": "#/components/schemas/Event", "components": INGEST["components"]}
)
TOUCH = {
    "event_id": "t1",
    "type": "touch",
    "occurred_at": "2026-03-01T12:00:00Z",
    "campaign_id": "c1",
    "contact_id": "k1",
}
WON = {"event_id": "w1", "type": "deal.closed_won", "occurred_at": "2026-03-01T12:00:00Z"}
UPDATED = {"event_id": "u1", "type": "deal.updated", "occurred_at": "2026-03-01T12:00:00Z"}


def changed(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out = {**base, **fields}
    return {k: v for k, v in out.items() if v is not ...}


# Each is refused by the validator today; the old document accepted every one of them.
REFUSED = [
    changed(TOUCH, occurred_at="2026-03-01T12:00:00"),  # no offset
    changed(TOUCH, occurred_at="1969-12-31T23:00:00Z"),  # before 1970
    changed(TOUCH, occurred_at="2201-01-01T00:00:00Z"),  # after 2200
    changed(TOUCH, event_id="t\x001"),  # NUL
    changed(TOUCH, campaign_id="c\x00"),
    changed(TOUCH, contact_id=...),  # neither contact nor account
    changed(TOUCH, contact_id=None, account_id=None),
    changed(WON, deal_id="d1", amount="10.00"),  # amount without currency
    changed(WON, deal_id="d1", currency="USD"),  # currency without amount
    changed(WON, deal_id="d1", amount="10.00", currency="XYZ"),  # unknown currency
    changed(WON, deal_id="d1", amount="10.00", currency="usd"),
    changed(WON, deal_id="d1", amount="1e3", currency="USD"),  # exponent
    changed(WON, deal_id="d1", amount=" 10", currency="USD"),  # space
    changed(UPDATED, deal_id="d1"),  # carries nothing
    changed(UPDATED, deal_id="d1", stage=None),  # explicit null
    changed(UPDATED, deal_id="d1", amount=None, currency=None, stage="won"),
    {
        "event_id": "f1",
        "type": "fx.rate",
        "occurred_at": "2026-03-01T00:00:00Z",
        "date": "26-03-01",
        "base": "EUR",
        "quote": "USD",
        "rate": "1.1",
    },
]
# The contract's grammar (ASCII digits, an optional dot and fraction); the document says it
# already, the validator is brought in line with it by the ingest validation work.
CONTRACT_GRAMMAR = [
    changed(WON, deal_id="d1", amount=amount, currency="USD")
    for amount in ("+10", "-0", "10.", ".5", "١٠", "10_000")
]


@pytest.mark.parametrize("event", REFUSED)
def test_what_the_validator_refuses_the_schema_refuses(event: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EVENT_ADAPTER.validate_python(event)
    assert not EVENT_SCHEMA.is_valid(event)


@pytest.mark.parametrize("event", CONTRACT_GRAMMAR)
def test_the_schema_states_the_contract_amount_grammar(event: dict[str, Any]) -> None:
    assert not EVENT_SCHEMA.is_valid(event)


def test_valid_events_pass_the_schema() -> None:
    history = generate(seed=3, deals=30, start=datetime(2026, 1, 1, tzinfo=UTC), days=60)
    assert len({e["type"] for e in history}) >= 8
    extras = [
        changed(TOUCH, contact_id=None, account_id="a1"),
        changed(WON, deal_id="d1"),
        changed(WON, deal_id="d1", amount="12500.00", currency="USD"),
        changed(WON, deal_id="d1", amount="1250", currency="JPY"),
        changed(UPDATED, deal_id="d1", contact_ids=["k1", "k2"]),
        changed(TOUCH, occurred_at="2026-03-01t12:00:00.123456+05:30"),
    ]
    for event in history + extras:
        EVENT_ADAPTER.validate_python(event)
        assert EVENT_SCHEMA.is_valid(event), event
