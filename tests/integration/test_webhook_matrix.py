"""Every ingest route × every credential: only a route's own scheme opens it.

Routes: ``POST /v1/events`` (bearer key with the ``ingest`` scope) and each webhook provider
(its own scheme). Credentials: none, an ingest key, a read key, and each provider's valid
credential. Each route is sent its own valid body (the first delivery of its story fixture)
with each credential; exactly the matching pairs are accepted, every other pair is 401 (403
for a read key on ``/v1/events``), and the topic ends up holding only the accepted requests'
events.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.kafka import ensure_topics
from services.core.settings import Settings
from services.ingest.app import create_app
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "webhooks"
WEBHOOKS = ("generic", "hubspot", "pipedrive", "salesforce", "segment")
SECRETS = {
    "generic": "whsec_bWF0cml4LWdlbmVyaWMtc2VjcmV0",
    "hubspot": "matrix-hubspot-client-secret",
    "pipedrive": "matrix:pipedrive-password",
    "segment": "matrix-segment-secret",
}
ORG_ID = re.compile(r"(<OrganizationId>)([A-Za-z0-9]{15,18})(</OrganizationId>)")
OTHER_ORG = "00D000000000999"


def _first_delivery(provider: str) -> tuple[bytes, str]:
    if provider == "generic":
        event = {
            "event_id": f"matrix-{uuid.uuid4().hex}",
            "type": "touch",
            "occurred_at": "2026-11-01T10:00:00Z",
            "campaign_id": "c1",
            "contact_id": "p1",
        }
        return orjson.dumps(event), "application/json"
    story = orjson.loads((FIXTURES / provider / "story.json").read_bytes())
    delivery = story["deliveries"][0]
    body = delivery["body"]
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    return raw, delivery["content_type"]


def _org_of(body: bytes) -> str:
    match = ORG_ID.search(body.decode())
    assert match, "the Salesforce story's first delivery names its organization"
    return match.group(2)


def _credential(name: str, keys: dict[str, str]) -> Callable[[bytes, str], dict[str, str]]:
    """Return a function giving ``name``'s auth headers for a body posted to a URL."""
    if name == "none":
        return lambda body, url: {}
    if name in ("ingest", "read"):
        return lambda body, url: {"Authorization": f"Bearer {keys[name]}"}
    signer: Any = import_module(f"tests.support.signers.{name}").headers
    return lambda body, url: signer(
        body, secret=SECRETS.get(name, ""), url=url, now=datetime.now(UTC)
    )


@contextmanager
def end_offsets(broker: str, settings: Settings) -> Iterator[Callable[[], dict[Any, int]]]:
    """Yield a function reading the topic's end offsets (any publish moves one)."""
    ensure_topics(settings, timeout_s=10)
    consumer = KafkaConsumer(bootstrap_servers=broker)
    try:
        parts = [TopicPartition(settings.events_topic, p) for p in range(settings.topic_partitions)]
        yield lambda: dict(consumer.end_offsets(parts))
    finally:
        consumer.close()


def test_route_by_credential_matrix(pg_url: str, broker: str) -> None:
    bodies = {p: _first_delivery(p) for p in WEBHOOKS}
    org = _org_of(bodies["salesforce"][0])
    settings = make_settings(
        database_url=pg_url,
        bootstrap=broker,
        webhook_secret_generic=SECRETS["generic"],
        webhook_secret_hubspot=SECRETS["hubspot"],
        webhook_basic_pipedrive=SECRETS["pipedrive"],
        webhook_secret_segment=SECRETS["segment"],
        salesforce_org_ids=org,
        ingest_public_url="http://testserver",
    )
    engine = make_engine(pg_url)
    with make_sessionmaker(engine).begin() as session:
        keys = {
            scope: create_key(
                session, name=f"matrix-{scope}-{uuid.uuid4().hex[:6]}", scopes=[scope]
            )
            for scope in ("ingest", "read")
        }
    engine.dispose()
    credentials = ["none", "ingest", "read", *WEBHOOKS]
    outcomes: dict[tuple[str, str], int] = {}
    published: dict[tuple[str, str], bool] = {}
    with TestClient(create_app(settings)) as client, end_offsets(broker, settings) as ends:
        for route in ("events", *WEBHOOKS):
            path = "/v1/events" if route == "events" else f"/v1/webhooks/{route}"
            body, content_type = bodies["generic" if route == "events" else route]
            for name in credentials:
                sent = body
                if route == "salesforce" and name != "salesforce":
                    # Salesforce's only credential is its organization id, in the body.
                    sent = ORG_ID.sub(rf"\g<1>{OTHER_ORG}\g<3>", body.decode()).encode()
                headers = {
                    "Content-Type": content_type,
                    **_credential(name, keys)(sent, f"http://testserver{path}"),
                }
                before = ends()
                answer = client.post(path, content=sent, headers=headers)
                outcomes[(route, name)] = answer.status_code
                published[(route, name)] = ends() != before
    expected = {
        (route, name): (
            (200 if route == "salesforce" else 202)
            if (route, name) in {("events", "ingest"), *((w, w) for w in WEBHOOKS)}
            else 403
            if (route, name) == ("events", "read")
            else 401
        )
        for route in ("events", *WEBHOOKS)
        for name in credentials
    }
    wrong = {k: (outcomes[k], v) for k, v in expected.items() if outcomes[k] != v}
    assert not wrong, wrong
    # Exactly the accepted requests reached the broker; a refused one published nothing.
    assert {k for k, v in published.items() if v} == {k for k, v in expected.items() if v < 300}


XXE = (
    '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY s SYSTEM "file:///etc/passwd">]>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<OrganizationId>{org}</OrganizationId><ActionId>&s;</ActionId>"
    "</notifications></soapenv:Body></soapenv:Envelope>"
)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    + "]><lolz>&lol9;</lolz>"
)


def test_hostile_deliveries_get_their_4xx_and_publish_nothing(pg_url: str, broker: str) -> None:
    bodies = {p: _first_delivery(p) for p in WEBHOOKS}
    org = _org_of(bodies["salesforce"][0])
    settings = make_settings(
        database_url=pg_url,
        bootstrap=broker,
        webhook_secret_hubspot=SECRETS["hubspot"],
        webhook_basic_pipedrive=SECRETS["pipedrive"],
        webhook_secret_segment=SECRETS["segment"],
        salesforce_org_ids=org,
        ingest_public_url="http://testserver",
        max_body_bytes=64 * 1024,
    )
    now = datetime.now(UTC)
    sign = {p: import_module(f"tests.support.signers.{p}").headers for p in SECRETS}

    def signed(provider: str, body: bytes, **overrides: Any) -> dict[str, str]:
        url = f"http://testserver/v1/webhooks/{provider}"
        options = {"secret": SECRETS[provider], "url": url, "now": now, **overrides}
        return {"Content-Type": "application/json", **sign[provider](body, **options)}

    hubspot, pipedrive, segment = (bodies[p][0] for p in ("hubspot", "pipedrive", "segment"))
    xml = {"Content-Type": "text/xml; charset=utf-8"}
    huge = b'{"x": "' + b"a" * 70_000 + b'"}'
    cases: list[tuple[str, str, bytes, dict[str, str], int]] = [
        (
            "hubspot",
            "stale",
            hubspot,
            signed("hubspot", hubspot, now=now - timedelta(minutes=6)),
            401,
        ),
        ("hubspot", "other secret", hubspot, signed("hubspot", hubspot, secret="x"), 401),
        ("hubspot", "body changed", hubspot + b" ", signed("hubspot", hubspot), 401),
        ("hubspot", "malformed", b"[{", signed("hubspot", b"[{"), 400),
        ("hubspot", "oversized", huge, signed("hubspot", huge), 413),
        (
            "pipedrive",
            "wrong password",
            pipedrive,
            signed("pipedrive", pipedrive, secret="a:b"),
            401,
        ),
        ("pipedrive", "not an object", b"[]", signed("pipedrive", b"[]"), 422),
        ("segment", "bad signature", segment, signed("segment", segment, secret="x"), 401),
        ("segment", "malformed", b"{", signed("segment", b"{"), 400),
        (
            "salesforce",
            "wrong org",
            bodies["salesforce"][0].replace(org.encode(), b"00D000000000999"),
            xml,
            401,
        ),
        ("salesforce", "external entity", XXE.format(org=org).encode(), xml, 400),
        ("salesforce", "billion laughs", LAUGHS.encode(), xml, 400),
        ("salesforce", "not XML", b"<<<", xml, 400),
        ("salesforce", "JSON", b"{}", {"Content-Type": "application/json"}, 415),
    ]
    with TestClient(create_app(settings)) as client, end_offsets(broker, settings) as ends:
        before = ends()
        for provider, name, body, headers, status in cases:
            answer = client.post(f"/v1/webhooks/{provider}", content=body, headers=headers)
            assert answer.status_code == status, (provider, name, answer.text)
            assert "root:" not in answer.text  # the external entity was never read
            for secret in SECRETS.values():
                assert secret not in answer.text, (provider, name)
            if provider == "salesforce" and status != 415:
                assert b"<faultcode>soapenv:Client</faultcode>" in answer.content, name
        assert ends() == before
