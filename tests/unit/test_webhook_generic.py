"""The generic webhook's Standard Webhooks and legacy signatures, and the rate limiter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.core.http import Problem
from services.core.ratelimit import RateLimiter
from services.core.settings import Settings
from services.ingest.providers.base import Delivery, Malformed, NotConfigured, Refused
from services.ingest.providers.generic import PROVIDER
from tests.support.signers.generic import legacy_header, standard_headers

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = orjson.dumps(
    {
        "event_id": "e1",
        "type": "touch",
        "occurred_at": "2026-12-01T10:00:00Z",
        "campaign_id": "c1",
        "contact_id": "p1",
    }
)


def settings(secret: str | None = SECRET) -> Settings:
    return Settings(database_url="sqlite://", webhook_secret_generic=secret)


def delivery(headers: dict[str, str], body: bytes = BODY, at: datetime = NOW) -> Delivery:
    lowered = {k.lower(): v for k, v in headers.items()}
    return Delivery(body, lowered, "http://h/v1/webhooks/generic", "POST", at)


def test_the_specification_test_vector_verifies() -> None:
    # From the Standard Webhooks reference library's tests: this exact signature.
    body = b'{"test": 2432232314}'
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    at = datetime.fromtimestamp(1614265330 + 60, UTC)
    PROVIDER.verify(delivery(headers, body, at), settings())
    PROVIDER.verify(delivery(headers, body, at), settings(SECRET.removeprefix("whsec_")))
    tampered = {**headers, "webhook-signature": headers["webhook-signature"][:-2] + "A="}
    with pytest.raises(Refused):
        PROVIDER.verify(delivery(tampered, body, at), settings())
    assert (
        standard_headers(
            body, secret=SECRET, now=at - timedelta(seconds=60), webhook_id=headers["webhook-id"]
        )
        == headers
    )


def test_signed_now_is_accepted_and_any_change_is_refused() -> None:
    good = standard_headers(BODY, secret=SECRET, now=NOW)
    PROVIDER.verify(delivery(good), settings())
    cases = {
        "body changed": delivery(good, BODY + b" "),
        "other id": delivery({**good, "webhook-id": "msg_other"}),
        "other timestamp": delivery({**good, "webhook-timestamp": str(int(NOW.timestamp()) + 1)}),
        "no signature": delivery({k: v for k, v in good.items() if k != "webhook-signature"}),
        "no id": delivery({k: v for k, v in good.items() if k != "webhook-id"}),
        "v2 only": delivery(
            {**good, "webhook-signature": good["webhook-signature"].replace("v1,", "v2,")}
        ),
        "other secret": delivery(standard_headers(BODY, secret="whsec_b3RoZXI=", now=NOW)),
        "timestamp not a number": delivery({**good, "webhook-timestamp": "soon"}),
    }
    for name, case in cases.items():
        with pytest.raises(Refused) as refused:
            PROVIDER.verify(case, settings())
        assert "MfKQ9r8" not in refused.value.detail, name


@pytest.mark.parametrize("offset_s", [-301, 301, -86400])
def test_stale_or_future_timestamps_are_refused(offset_s: int) -> None:
    signed = standard_headers(BODY, secret=SECRET, now=NOW + timedelta(seconds=offset_s))
    with pytest.raises(Refused) as refused:
        PROVIDER.verify(delivery(signed), settings())
    assert "s from now" in refused.value.detail


@pytest.mark.parametrize("offset_s", [-299, 299])
def test_timestamps_inside_the_tolerance_are_accepted(offset_s: int) -> None:
    PROVIDER.verify(
        delivery(standard_headers(BODY, secret=SECRET, now=NOW + timedelta(seconds=offset_s))),
        settings(),
    )


def test_rotation_accepts_any_configured_secret_and_several_signatures() -> None:
    old, new = "whsec_b2xkLXNlY3JldA==", SECRET
    both = settings(f"{new}, {old}")
    PROVIDER.verify(delivery(standard_headers(BODY, secret=old, now=NOW)), both)
    by_new = standard_headers(BODY, secret=new, now=NOW)
    by_old = standard_headers(BODY, secret=old, now=NOW, webhook_id=by_new["webhook-id"])
    signatures = f"{by_old['webhook-signature']} {by_new['webhook-signature']}"
    PROVIDER.verify(delivery({**by_new, "webhook-signature": signatures}), settings(new))


def test_an_unset_secret_refuses_everything() -> None:
    for unset in (None, "", " , "):
        with pytest.raises(NotConfigured) as caught:
            PROVIDER.verify(delivery(standard_headers(BODY, secret="x", now=NOW)), settings(unset))
        assert caught.value.setting == "CLOSEDLOOP_WEBHOOK_SECRET_GENERIC"


def test_the_legacy_signature_still_works_when_no_standard_header_is_sent() -> None:
    text = "s3cret-for-tests"
    PROVIDER.verify(delivery(legacy_header(BODY, secret=text)), settings(text))
    for bad in ("sha256=zz", "", "sha256=" + "0" * 64):
        with pytest.raises(Refused):
            PROVIDER.verify(delivery({"X-Closedloop-Signature": bad}), settings(text))
    # A request carrying Standard Webhooks headers is judged by them alone.
    mixed = {**legacy_header(BODY, secret=text), "webhook-signature": "v1,AAAA"}
    with pytest.raises(Refused):
        PROVIDER.verify(delivery(mixed), settings(text))


def test_map_returns_the_items_and_where_they_are() -> None:
    one = PROVIDER.map(delivery({}), settings())
    assert one.events == [orjson.loads(BODY)] and one.context["prefix"] is None
    batch = orjson.dumps({"events": [orjson.loads(BODY)] * 2})
    two = PROVIDER.map(delivery({}, batch), settings())
    assert len(two.events) == 2 and two.context["prefix"] == "events"
    with pytest.raises(Malformed) as bad:
        PROVIDER.map(delivery({}, b"{nope"), settings())
    assert bad.value.status == 400


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)  # one token every 0.5 s
    assert limiter.take("other") == 0.0  # buckets are per credential
    now[0] = 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("k") > 0
    now[0] = 100.0  # refills to the burst, not beyond
    assert [limiter.take("k") for _ in range(4)][-1] > 0
    with pytest.raises(Problem) as over:
        limiter.check("k")
    assert over.value.status == 429 and over.value.headers == {"Retry-After": "1"}


def test_the_bucket_table_is_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=100, clock=lambda: 0.0)
    for n in range(1000):
        limiter.take(f"k{n}")
    assert len(limiter._buckets) == 100
