"""Each CRM's story, as the CRM would send it, through the real services to the ROI report.

For every provider, ``tests/fixtures/webhooks/<provider>/story.json`` holds what the CRM
does not send (campaign definitions, and touches or deals from elsewhere) as canonical events,
then the provider's own deliveries in order: a contact touched by campaigns, a deal created,
won, reopened and won again with a new amount. Each delivery is signed at replay time by an
independent signer (``tests/support/signers``) and sent twice, as a provider retry would be;
the ROI report must then show the hand-worked revenue of the story's README to the cent, and
the reconciliation must count the deal once.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.core.broker import free_port
from tests.support.infra import postgres_database
from tests.support.processes import ROOT, service_env, services

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent.parent / "fixtures" / "webhooks"
PROVIDERS = ("hubspot", "pipedrive", "salesforce", "segment")
SECRETS = {
    "hubspot": "hubspot-client-secret-for-tests",
    "pipedrive": "closedloop:pipedrive-password",
    "segment": "segment-shared-secret",
}
ORG_ID = re.compile(r"<OrganizationId>([A-Za-z0-9]{15,18})</OrganizationId>")


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "services", *args],
        env=service_env(env),
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _body(delivery: dict[str, Any]) -> bytes:
    body = delivery["body"]
    return body.encode() if isinstance(body, str) else orjson.dumps(body)


def _settings_env(provider: str, story: dict[str, Any], ingest_url: str) -> dict[str, str]:
    env = {"CLOSEDLOOP_INGEST_PUBLIC_URL": ingest_url}
    if provider == "hubspot":
        env["CLOSEDLOOP_WEBHOOK_SECRET_HUBSPOT"] = SECRETS["hubspot"]
    elif provider == "pipedrive":
        env["CLOSEDLOOP_WEBHOOK_BASIC_PIPEDRIVE"] = SECRETS["pipedrive"]
    elif provider == "segment":
        env["CLOSEDLOOP_WEBHOOK_SECRET_SEGMENT"] = SECRETS["segment"]
    else:
        orgs = {m for d in story["deliveries"] for m in ORG_ID.findall(_body(d).decode())}
        env["CLOSEDLOOP_SALESFORCE_ORG_IDS"] = ",".join(sorted(orgs))
    return env


@pytest.fixture(params=PROVIDERS)
def story_stack(
    request: pytest.FixtureRequest, broker: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """One provider's story and the three services, on their own PostgreSQL database."""
    provider: str = request.param
    story = orjson.loads((FIXTURES / provider / "story.json").read_bytes())
    with postgres_database(f"closedloop_{provider}") as db:
        ingest_port, api_port = free_port(), free_port()
        ingest_url = f"http://127.0.0.1:{ingest_port}"
        env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": broker,
            "CLOSEDLOOP_EVENTS_TOPIC": f"story-events-{ingest_port}",
            "CLOSEDLOOP_DEAD_LETTER_TOPIC": f"story-dead-{ingest_port}",
            "CLOSEDLOOP_CONSUMER_GROUP": f"story-{ingest_port}",
            "CLOSEDLOOP_INGEST_PORT": str(ingest_port),
            "CLOSEDLOOP_API_PORT": str(api_port),
            "CLOSEDLOOP_REPORTING_CURRENCY": story["expected"].get("currency", "USD"),
            **_settings_env(provider, story, ingest_url),
        }
        _cli(env, "migrate")
        key = _cli(env, "keys", "create", "--name", "story", "--scopes", "ingest,read")
        with services(env, tmp_path, ingest_port=ingest_port, api_port=api_port):
            yield {
                "provider": provider,
                "story": story,
                "key": key,
                "ingest": ingest_url,
                "api": f"http://127.0.0.1:{api_port}",
            }


def _signer(provider: str) -> Callable[..., dict[str, str]]:
    module = import_module(f"tests.support.signers.{provider}")
    headers: Callable[..., dict[str, str]] = module.headers
    return headers


def _deliver(stack: dict[str, Any], client: httpx.Client) -> None:
    provider, story = stack["provider"], stack["story"]
    url = f"{stack['ingest']}/v1/webhooks/{provider}"
    sign = _signer(provider)
    for delivery in story["deliveries"]:
        body = _body(delivery)
        for attempt in (1, 2):  # the provider retries: a duplicate, never a second event
            headers = {
                "Content-Type": delivery["content_type"],
                **sign(body, secret=SECRETS.get(provider, ""), url=url, now=datetime.now(UTC)),
            }
            answer = client.post(url, content=body, headers=headers)
            assert 200 <= answer.status_code < 300, (delivery["name"], attempt, answer.text)


def _report(client: httpx.Client, expected: dict[str, Any]) -> dict[str, Any]:
    params = {"model": expected["model"], "from": expected["from"], "to": expected["to"]}
    roi: dict[str, Any] = client.get("/v1/reports/roi", params=params).json()
    return roi


def _revenue(roi: dict[str, Any]) -> dict[str, str]:
    rows = roi.get("rows", [])
    return {r["campaign_id"]: r["revenue"] for r in rows if r["revenue"] != "0.00"}


def test_a_crm_story_ends_in_the_roi_report_to_the_cent(story_stack: dict[str, Any]) -> None:
    story, expected = story_stack["story"], story_stack["story"]["expected"]
    bearer = {"Authorization": f"Bearer {story_stack['key']}"}
    with httpx.Client(timeout=30) as client:
        if story["canonical"]:
            sent = client.post(
                f"{story_stack['ingest']}/v1/events",
                content=orjson.dumps({"events": story["canonical"]}),
                headers={**bearer, "Content-Type": "application/json"},
            )
            assert sent.status_code == 202, sent.text
        _deliver(story_stack, client)
    want = {cid: amount for cid, amount in expected["revenue"].items() if amount != "0.00"}
    with httpx.Client(base_url=story_stack["api"], headers=bearer, timeout=30) as api:
        deadline, roi = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            roi = _report(api, expected)
            got = {r["campaign_id"]: r["revenue"] for r in roi.get("rows", [])}
            if (
                got == want
                and roi["totals"]["unattributed_revenue"] == expected["unattributed_revenue"]
            ):
                break
            time.sleep(0.5)
        assert _revenue(roi) == want, roi
        assert roi["totals"]["unattributed_revenue"] == expected["unattributed_revenue"]
        assert roi["currency"] == expected.get("currency", "USD")
        params = {"from": expected["from"], "to": expected["to"]}
        recon = api.get("/v1/reports/reconciliation", params=params).json()
        assert recon["won_deals"] == expected["won_deals"], recon
