"""Salesforce Outbound Messages: goldens, organization check, hardened XML, gaps, replies, story."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from services.core.events import EVENT_LIST_ADAPTER
from services.core.settings import Settings
from services.ingest.providers.base import Delivery, Malformed, NotConfigured, Refused
from services.ingest.providers.salesforce import PROVIDER
from tests.support.signers import salesforce as signer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "salesforce"
ORG18 = "00D5w000004qGTOEA2"
ORG15 = ORG18[:15]
OTHER_ORG = "00D7F00000107XsUAI"
URL = "https://ingest.example.com/v1/webhooks/salesforce"
NOW = datetime(2026, 4, 2, 13, 0, tzinfo=UTC)
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
OUT = "{http://soap.sforce.com/2005/09/outbound}"
GOLDENS = {
    "opportunity_open": 0,
    "opportunity_closed_won": 0,
    "opportunity_closed_lost": 0,
    "campaign_members": 1,
    "account_ignored": 1,
}


def settings(org_ids: str | None = ORG15, **overrides: Any) -> Settings:
    return Settings(database_url="sqlite://", salesforce_org_ids=org_ids, **overrides)


def delivery(body: str | bytes, *, received_at: datetime = NOW) -> Delivery:
    raw = body.encode() if isinstance(body, str) else body
    headers = {"content-type": signer.CONTENT_TYPE}
    headers |= signer.headers(raw, secret="", url=URL, now=received_at)
    return Delivery(raw, headers, URL, "POST", received_at)


def opportunity(notification_id: str = "04l5w00005286hAAAQ", /, **fields: str | None) -> str:
    values: dict[str, str | None] = {
        "Id": "0065w000023STAmAAO",
        "AccountId": "0015w00002BFDeLAAX",
        "Amount": "45000.0",
        "IsClosed": "false",
        "IsWon": "false",
        "LastModifiedDate": "2026-03-02T10:00:00.000Z",
        "StageName": "Prospecting",
    }
    values.update(fields)
    return signer.notification(notification_id, "Opportunity", {k: v for k, v in values.items()})


def member(**fields: str | None) -> str:
    values: dict[str, str | None] = {
        "Id": "00v5w00000Cm1AAAAZ",
        "CampaignId": "7015w000001WbnRAAS",
        "ContactId": "0035w000035gg9GAAQ",
        "CreatedDate": "2026-01-12T16:00:00.000Z",
        "HasResponded": "true",
    }
    values.update(fields)
    return signer.notification("04l5w00005286iAAAQ", "CampaignMember", values)


def body(*notifications: str, org: str = ORG18) -> str:
    return signer.envelope(org, list(notifications))


def mapped(xml: str, **overrides: Any) -> list[dict[str, Any]]:
    return PROVIDER.map(delivery(xml), settings(**overrides)).events


def malformed(xml: str | bytes, *, via: str = "map") -> Malformed:
    with pytest.raises(Malformed) as caught:
        if via == "map":
            PROVIDER.map(delivery(xml), settings())
        else:
            PROVIDER.verify(delivery(xml), settings())
    return caught.value


def field_of(problem: Malformed) -> str:
    assert problem.status == 422, problem.detail
    [error] = problem.errors
    return str(error["field"])


# --- goldens -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_recorded_messages_map_to_their_goldens(name: str) -> None:
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    EVENT_LIST_ADAPTER.validate_python(expected)
    message = delivery((FIXTURES / f"{name}.xml").read_bytes())
    PROVIDER.verify(message, settings())
    result = PROVIDER.map(message, settings())
    assert result.events == expected
    assert result.ignored == GOLDENS[name]


def test_every_fixture_has_a_golden() -> None:
    assert {p.stem for p in FIXTURES.glob("*.xml")} == set(GOLDENS)


# --- verify: the organization id is the credential -----------------------------------------


@pytest.mark.parametrize("configured", [ORG15, ORG18, f"{OTHER_ORG}, {ORG18}", f" {ORG15} ,"])
def test_configured_org_accepted_in_either_form_and_with_rotation(configured: str) -> None:
    PROVIDER.verify(delivery(body(member())), settings(configured))
    PROVIDER.verify(delivery(body(member(), org=ORG15)), settings(configured))


def test_authentication_headers_are_none_and_time_does_not_make_a_message_stale() -> None:
    assert signer.headers(b"x", secret="s", url=URL, now=NOW) == {}
    # Salesforce retries for 24 hours with the same body: no timestamp tolerance applies.
    late = delivery(body(member()), received_at=NOW + timedelta(hours=23, minutes=59))
    PROVIDER.verify(late, settings())


@pytest.mark.parametrize("configured", [None, "", " , ", "not-an-org-id"])
def test_unset_setting_refuses_everything_naming_it(configured: str | None) -> None:
    with pytest.raises(NotConfigured) as caught:
        PROVIDER.verify(delivery(body(member())), settings(configured))
    assert caught.value.setting == "CLOSEDLOOP_SALESFORCE_ORG_IDS"


def test_unset_setting_is_reported_before_the_body_is_parsed() -> None:
    with pytest.raises(NotConfigured):
        PROVIDER.verify(delivery(b"not xml"), settings(None))


@pytest.mark.parametrize(
    ("org", "why"),
    [
        (OTHER_ORG, "not one of"),
        (ORG15.lower(), "not one of"),  # ids are case-sensitive
        (ORG15[:-1] + "X", "not one of"),
        ("00D5w000004qGT", "15- or 18-character"),
        ("00D5w000004qGTO:x", "15- or 18-character"),
    ],
)
def test_other_or_malformed_org_is_refused(org: str, why: str) -> None:
    with pytest.raises(Refused) as caught:
        PROVIDER.verify(delivery(body(member(), org=org)), settings())
    assert why in caught.value.detail


def test_missing_org_is_refused_and_an_edited_org_no_longer_passes() -> None:
    without = body(member()).replace(f"<OrganizationId>{ORG18}</OrganizationId>", "")
    with pytest.raises(Refused, match="no OrganizationId"):
        PROVIDER.verify(delivery(without), settings())
    edited = body(member()).replace(ORG18, OTHER_ORG)
    with pytest.raises(Refused):
        PROVIDER.verify(delivery(edited), settings())


# --- hardened parsing ----------------------------------------------------------------------

XXE = """<?xml version="1.0"?>
<!DOCTYPE soapenv:Envelope [<!ENTITY secret SYSTEM "file://{path}">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>{org}</OrganizationId><ActionId>&secret;</ActionId>
</notifications></soapenv:Body></soapenv:Envelope>"""
LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    ).replace("&lol0;", "&lol;")
    + "]>\n<lolz>&lol9;</lolz>"
)
EXTERNAL_DTD = (
    '<?xml version="1.0"?><!DOCTYPE soapenv:Envelope SYSTEM "http://127.0.0.1:9/evil.dtd">'
    + '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>'
)
PARAMETER_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><x/>'
)


@pytest.mark.parametrize("via", ["verify", "map"])
def test_external_entity_is_refused_without_reading_the_file(tmp_path: Path, via: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    problem = malformed(XXE.format(path=secret, org=ORG18), via=via)
    assert problem.status == 400 and "DTD" in problem.detail
    assert "TOP-SECRET-MARKER" not in problem.detail


@pytest.mark.parametrize("payload", [LAUGHS, EXTERNAL_DTD, PARAMETER_ENTITY])
@pytest.mark.parametrize("via", ["verify", "map"])
def test_entity_bombs_and_external_dtds_are_refused_at_once(payload: str, via: str) -> None:
    started = time.perf_counter()
    problem = malformed(payload, via=via)
    assert problem.status == 400 and "DTD" in problem.detail
    assert time.perf_counter() - started < 1.0  # nothing was expanded or fetched


@pytest.mark.parametrize(
    "raw",
    [b"", b"not xml", b'{"json": true}', b"<a><b></a>", b"\xff\xfe<", b"<a>&undefined;</a>"],
)
def test_non_xml_is_a_400(raw: bytes) -> None:
    for via in ("verify", "map"):
        assert malformed(raw, via=via).status == 400


def test_deep_or_huge_documents_are_refused_while_parsing() -> None:
    deep = "<a>" * 40 + "</a>" * 40
    assert "deeper" in malformed(deep).detail
    wide = "<a>" + "<b/>" * 100_001 + "</a>"
    assert "elements" in malformed(wide).detail


def test_xml_that_is_not_an_outbound_message() -> None:
    assert malformed("<notifications/>").status == 400
    empty_body = (
        '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>'
    )
    assert field_of(malformed(empty_body)) == "notifications"


# --- gaps and malformed fields -------------------------------------------------------------


def test_last_modified_date_is_required_and_system_modstamp_stands_in() -> None:
    xml = body(opportunity(LastModifiedDate=None))
    assert field_of(malformed(xml)) == "Notification[0].sObject.LastModifiedDate"
    stamp = "2026-03-02T10:05:00.000Z"
    events = mapped(body(opportunity(LastModifiedDate=None, SystemModstamp=stamp)))
    assert {e["occurred_at"] for e in events} == {stamp}


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("12500.0", None, ("12500.00", "USD")),
        ("1.25E7", None, ("12500000.00", "USD")),
        ("0.5", None, ("0.50", "USD")),
        ("1500.0", "JPY", ("1500", "JPY")),
        ("10.125", "KWD", ("10.125", "KWD")),
        ("99.9", "eur", ("99.90", "EUR")),
    ],
)
def test_amounts_are_exact_in_their_currency(
    amount: str, currency: str | None, expected: tuple[str, str]
) -> None:
    extra = {"CurrencyIsoCode": currency} if currency else {}
    [updated] = [e for e in mapped(body(opportunity(Amount=amount, **extra))) if "amount" in e]
    assert (updated["amount"], updated["currency"]) == expected


def test_reporting_currency_is_the_single_currency_org_default() -> None:
    events = mapped(body(opportunity(Amount="10.0")), reporting_currency="GBP")
    assert [e["currency"] for e in events if "currency" in e] == ["GBP"]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"Amount": "12.345"}, "Amount"),
        ({"Amount": "1500.5", "CurrencyIsoCode": "JPY"}, "Amount"),
        ({"Amount": "-5.0"}, "Amount"),
        ({"Amount": "NaN"}, "Amount"),
        ({"Amount": "12,500.00"}, "Amount"),
        ({"Amount": "1E20"}, "Amount"),
        ({"CurrencyIsoCode": "ABC"}, "CurrencyIsoCode"),
        ({"LastModifiedDate": "2026-03-02 10:00:00"}, "LastModifiedDate"),
        ({"LastModifiedDate": "2026-02-30T10:00:00.000Z"}, "LastModifiedDate"),
        ({"CreatedDate": "1969-12-31T23:59:59.000Z"}, "CreatedDate"),
        ({"IsWon": "yes"}, "IsWon"),
        ({"IsWon": "false", "IsClosed": None}, "IsClosed"),
        ({"IsWon": None, "IsClosed": "true"}, "IsWon"),
        ({"AccountId": "001:injected"}, "AccountId"),
        ({"Id": None}, "Id"),
    ],
)
def test_opportunity_field_problems_are_422_at_their_path(
    fields: dict[str, str | None], where: str
) -> None:
    problem = malformed(body(opportunity(**fields)))
    assert field_of(problem) == f"Notification[0].sObject.{where}"


def test_status_from_is_won_and_is_closed() -> None:
    def status(**fields: str | None) -> list[str]:
        return [
            e["type"] for e in mapped(body(opportunity(**fields))) if e["type"] != "deal.updated"
        ]

    assert status(IsWon="true", IsClosed="true") == ["deal.closed_won"]
    assert status(IsWon="1", IsClosed=None) == ["deal.closed_won"]
    assert status(IsWon="false", IsClosed="true") == ["deal.closed_lost"]
    assert status(IsWon="false", IsClosed="false") == ["deal.reopened"]
    assert status(IsWon=None, IsClosed="false") == ["deal.reopened"]
    assert status(IsWon=None, IsClosed=None) == []


def test_close_date_is_not_used_a_win_is_at_the_change() -> None:
    # CloseDate is the expected close date (a forecast): the won time is the status change's.
    won = {"IsWon": "true", "IsClosed": "true", "StageName": "Closed Won"}
    at = "2026-03-20T15:00:00.000Z"
    with_date = mapped(body(opportunity(CloseDate="2026-06-30", LastModifiedDate=at, **won)))
    assert with_date == mapped(body(opportunity(LastModifiedDate=at, **won)))
    assert [(e["type"], e["occurred_at"]) for e in with_date] == [
        ("deal.updated", at),
        ("deal.closed_won", at),
    ]


def test_nil_and_absent_fields_are_left_out() -> None:
    [updated, _] = mapped(body(opportunity(AccountId=None, Amount=None)))
    assert updated["type"] == "deal.updated"
    assert "account_id" not in updated and "amount" not in updated
    assert updated["stage"] == "Prospecting"
    only_status = mapped(body(opportunity(AccountId=None, Amount=None, StageName=None)))
    assert [e["type"] for e in only_status] == ["deal.reopened"]


def test_creation_and_primary_campaign_are_identical_on_every_notification() -> None:
    extra = {"CreatedDate": "2026-03-02T10:00:00.000Z", "CampaignId": "7015w000001PpcSAAS"}
    first = mapped(body(opportunity("04l5w00005286hAAAQ", **extra)))
    later = mapped(body(opportunity("04l5w00005286zZAAQ", StageName="Closed Won", **extra)))
    assert first[:2] == later[:2]
    assert [e["type"] for e in first[:2]] == ["deal.created", "touch"]
    assert first[2]["event_id"] != later[2]["event_id"]
    no_account = mapped(body(opportunity(AccountId=None, **extra)))
    assert [e["type"] for e in no_account] == ["deal.created", "deal.updated", "deal.reopened"]


def test_campaign_members_respond_or_are_ignored() -> None:
    ignored = PROVIDER.map(delivery(body(member(HasResponded="false"))), settings())
    assert (ignored.events, ignored.ignored) == ([], 1)
    [lead] = mapped(body(member(ContactId=None, LeadId="00Q5w00001rR3tREAS")))
    assert lead["contact_id"] == "00Q5w00001rR3tREAS"
    [account] = mapped(body(member(ContactId=None, AccountId="0015w00002BFDeLAAX")))
    assert account["account_id"] == "0015w00002BFDeLAAX" and "contact_id" not in account


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"HasResponded": None}, "HasResponded"),
        ({"ContactId": None}, "ContactId"),
        ({"CampaignId": None}, "CampaignId"),
        ({"CreatedDate": None}, "CreatedDate"),
    ],
)
def test_responded_member_field_problems(fields: dict[str, str | None], where: str) -> None:
    assert field_of(malformed(body(member(**fields)))) == f"Notification[0].sObject.{where}"


def test_notification_shape_problems_name_the_notification() -> None:
    assert field_of(malformed(body())) == "Notification"
    assert field_of(malformed(body(*[member()] * 101))) == "Notification"
    bad_id = body(member(), member().replace("04l5w00005286iAAAQ", "x"))
    assert field_of(malformed(bad_id)) == "Notification[1].Id"
    untyped = member().replace(' xsi:type="sf:CampaignMember"', "")
    assert field_of(malformed(body(untyped))) == "Notification[0].sObject"
    twice = member().replace(
        "</sObject>", "<sf:CampaignId>7015w000001PpcSAAS</sf:CampaignId></sObject>"
    )
    assert field_of(malformed(body(twice))) == "Notification[0].sObject.CampaignId"


def test_other_sobject_types_are_ignored_among_mapped_ones() -> None:
    lead = signer.notification("04l5w00005286kAAAQ", "Lead", {"Id": "00Q5w00001rR3tREAS"})
    result = PROVIDER.map(delivery(body(lead, member())), settings())
    assert result.ignored == 1 and [e["type"] for e in result.events] == ["touch"]
    assert result.context == {"notification_ids": ["04l5w00005286kAAAQ", "04l5w00005286iAAAQ"]}


# --- property: deterministic, valid, exact -------------------------------------------------

ids = st.text(
    "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789", min_size=12, max_size=12
)
flags = st.sampled_from([None, "true", "false"])


@st.composite
def opportunities(draw: st.DrawFn) -> tuple[str, dict[str, str | None]]:
    whole = draw(st.integers(0, 10**9))
    decimals = draw(st.sampled_from(["", "0", "5", "25", "50"]))
    won = draw(flags)
    # IsWon false without IsClosed, or IsClosed true without IsWon, is a 422 (tested above).
    booleans = st.sampled_from(["true", "false"])
    choices = {"true": flags, "false": booleans, None: st.sampled_from([None, "false"])}[won]
    closed = draw(choices)
    fields = {
        "Id": "006" + draw(ids),
        "AccountId": draw(st.none() | ids.map(lambda s: "001" + s)),
        "Amount": draw(st.none() | st.just(f"{whole}.{decimals}" if decimals else str(whole))),
        "CampaignId": draw(st.none() | ids.map(lambda s: "701" + s)),
        "CreatedDate": draw(st.none() | st.just("2026-01-05T08:00:00.000Z")),
        "IsClosed": closed,
        "IsWon": won,
        "LastModifiedDate": f"2026-03-{draw(st.integers(1, 28)):02d}T10:00:00.000Z",
        "StageName": draw(st.none() | st.sampled_from(["Prospecting", "Closed Won", "Closé"])),
    }
    return "04l" + draw(ids) + "AAA", fields  # ids made unique per case by the test


def expected_status(won: str | None, closed: str | None) -> str | None:
    if won == "true":
        return "deal.closed_won"
    if closed is None:
        return None
    return "deal.closed_lost" if closed == "true" else "deal.reopened"


@hypothesis_settings(deadline=None)
@given(st.lists(opportunities(), min_size=1, max_size=5))
def test_mapping_is_deterministic_valid_and_exact(cases: list[tuple[str, dict[str, Any]]]) -> None:
    for index, (nid, fields) in enumerate(cases):
        fields["Id"] = f"006{index:02d}{fields['Id'][5:]}"
        cases[index] = (f"04l{index:02d}{nid[5:]}", fields)
    xml = body(*(signer.notification(nid, "Opportunity", f) for nid, f in cases))
    first, again = mapped(xml), mapped(xml)
    assert first == again
    EVENT_LIST_ADAPTER.validate_python(first)
    assert all(e["event_id"].startswith(f"salesforce:{ORG15}:") for e in first)
    for _, fields in cases:
        mine = [e for e in first if e.get("deal_id") == fields["Id"]]
        status = [e["type"] for e in mine if e["type"] not in ("deal.created", "deal.updated")]
        want = expected_status(fields["IsWon"], fields["IsClosed"])
        assert status == ([want] if want else [])
        if fields["Amount"] is not None:
            whole, _, fraction = fields["Amount"].partition(".")
            amounts = {e["amount"] for e in mine if "amount" in e}
            assert amounts == {f"{whole}.{fraction.ljust(2, '0')}"}


# --- replies -------------------------------------------------------------------------------


def test_acknowledgement_envelope() -> None:
    reply = PROVIDER.accepted(PROVIDER.map(delivery(body(member())), settings()), 1)
    assert reply is not None and (reply.status, reply.media_type) == (200, "text/xml")
    root = ET.fromstring(reply.body)
    assert root.tag == f"{SOAP}Envelope"
    ack = root.find(f"{SOAP}Body/{OUT}notificationsResponse/{OUT}Ack")
    assert ack is not None and ack.text == "true"


@pytest.mark.parametrize(
    ("status", "code"), [(400, "Client"), (401, "Client"), (422, "Client"), (503, "Server")]
)
def test_failures_are_soap_faults_with_the_causes_status(status: int, code: str) -> None:
    detail = 'Notification[0].sObject.Amount: "12.345" <has> too many & places\x00'
    reply = PROVIDER.failed(status, {"status": status, "title": "t", "detail": detail})
    assert reply is not None and (reply.status, reply.media_type) == (status, "text/xml")
    fault = ET.fromstring(reply.body).find(f"{SOAP}Body/{SOAP}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == f"soapenv:{code}"
    assert fault.findtext("faultstring") == detail.replace("\x00", "?")


# --- the end-to-end story ------------------------------------------------------------------


def story_events() -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    story = json.loads((FIXTURES / "story.json").read_text())
    org_ids = story["settings"]["CLOSEDLOOP_SALESFORCE_ORG_IDS"]
    per_delivery = []
    for item in story["deliveries"]:
        assert item["content_type"].split(";")[0] in PROVIDER.media_types
        message = delivery(item["body"])
        PROVIDER.verify(message, settings(org_ids))
        per_delivery.append(PROVIDER.map(message, settings(org_ids)).events)
    return story, per_delivery


def linear_cents(amount_cents: int, touches: int) -> list[int]:
    """Split as contract §3 says: floors, then leftover cents to the earliest (equal parts)."""
    shares = [amount_cents // touches] * touches
    for i in range(amount_cents - sum(shares)):
        shares[i] += 1
    return shares


def test_story_maps_to_a_won_deal_with_the_final_amount_and_its_journey() -> None:
    story, per_delivery = story_events()
    names = [d["name"] for d in story["deliveries"]]
    assert (
        per_delivery[names.index("opportunity-won-retried")]
        == per_delivery[names.index("opportunity-won")]
    )
    events = [e for batch in per_delivery for e in batch]
    everything = story["canonical"] + events
    EVENT_LIST_ADAPTER.validate_python(everything)
    unique = {e["event_id"]: e for e in events}
    for event in events:  # same id, same content: duplicates only, never a conflict
        assert unique[event["event_id"]] == event
    ordered = sorted(unique.values(), key=lambda e: (e["occurred_at"], e["event_id"]))
    statuses = [
        e for e in ordered if e["type"] in ("deal.closed_won", "deal.closed_lost", "deal.reopened")
    ]
    assert [e["type"] for e in statuses] == [
        "deal.reopened",
        "deal.closed_won",
        "deal.reopened",
        "deal.closed_won",
    ]
    won = statuses[-1]
    amount = [e for e in ordered if "amount" in e][-1]
    assert (amount["amount"], amount["currency"]) == ("61000.00", "USD")
    [created] = [e for e in ordered if e["type"] == "deal.created"]
    account = [e["account_id"] for e in ordered if e["type"] == "deal.updated"][-1]
    contacts = {e["contact_id"] for e in story["canonical"] if e.get("account_id") == account}
    journey = [
        e
        for e in ordered
        if e["type"] == "touch"
        and (e.get("contact_id") in contacts or e.get("account_id") == account)
        and e["occurred_at"] <= won["occurred_at"]
    ]
    assert created["occurred_at"] >= "2026-01-01" and len(journey) == 3
    cents = int(Decimal(amount["amount"]) * 100)
    revenue: dict[str, int] = {}
    for touch, share in zip(journey, linear_cents(cents, len(journey)), strict=True):
        revenue[touch["campaign_id"]] = revenue.get(touch["campaign_id"], 0) + share
    expected = story["expected"]
    assert {k: f"{v // 100}.{v % 100:02d}" for k, v in revenue.items()} == expected["revenue"]
    assert expected["won_deals"] == 1 and expected["unattributed_revenue"] == "0.00"
