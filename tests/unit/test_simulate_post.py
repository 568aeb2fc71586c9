"""Posting simulated events: batching, auth, retries on 503, clear errors on 4xx.

The HTTP side is httpx's own MockTransport: the real client code runs, only the socket is
replaced, and waits go to a recorder instead of the clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from services.simulate import PostError, post_events

EVENTS = [{"event_id": f"e{n}", "type": "deal.closed_lost", "deal_id": "d1"} for n in range(7)]

Handler = Callable[[httpx.Request], httpx.Response]


def run(handler: Handler, **options: object) -> tuple[int, list[float]]:
    waits: list[float] = []
    accepted = post_events(
        EVENTS,
        url="http://ingest.test/",
        api_key="cl_secret",
        progress=False,
        transport=httpx.MockTransport(handler),
        sleep=waits.append,
        **options,  # type: ignore[arg-type]
    )
    return accepted, waits


def test_batches_are_posted_with_the_bearer_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"accepted": len(json.loads(request.content)["events"])})

    accepted, waits = run(handler, batch_size=3)
    assert accepted == 7 and waits == []
    assert [len(json.loads(r.content)["events"]) for r in seen] == [3, 3, 1]
    assert {str(r.url) for r in seen} == {"http://ingest.test/v1/events"}
    assert all(r.headers["authorization"] == "Bearer cl_secret" for r in seen)
    assert all(r.headers["content-type"] == "application/json" for r in seen)
    sent = [event for r in seen for event in json.loads(r.content)["events"]]
    assert sent == EVENTS


def test_503_is_retried_after_retry_after() -> None:
    answers = iter([503, 503, 202])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        if status == 503:
            return httpx.Response(503, headers={"Retry-After": "2"}, json={"title": "busy"})
        return httpx.Response(202, json={"accepted": 7})

    accepted, waits = run(handler, batch_size=10)
    assert accepted == 7
    assert waits == [2.0, 2.0]


def test_absurd_retry_after_is_capped_and_missing_one_backs_off() -> None:
    answers = iter([("9999",), (None,), ("soon",), ("ok",)])

    def handler(request: httpx.Request) -> httpx.Response:
        (header,) = next(answers)
        if header == "ok":
            return httpx.Response(202, json={"accepted": 7})
        headers = {} if header is None else {"Retry-After": header}
        return httpx.Response(503, headers=headers)

    _, waits = run(handler, batch_size=10)
    assert waits[0] == 60.0
    assert 0 < waits[1] < waits[2] <= 60.0


def test_503_that_never_ends_raises_after_bounded_attempts() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, headers={"Retry-After": "0"}, json={"title": "Broker down"})

    with pytest.raises(PostError) as caught:
        run(handler, max_attempts=3)
    assert len(calls) == 3
    assert caught.value.status == 503
    assert "Broker down" in str(caught.value) and "3 attempts" in str(caught.value)


def test_a_4xx_raises_at_once_with_the_problem_body() -> None:
    calls = []
    problem = {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "2 events are invalid",
        "errors": [
            {"loc": ["body", "events", 3, "amount"], "msg": "must be a decimal string"},
            {"loc": ["body", "events", 5, "type"], "msg": "unknown event type"},
        ],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            422, json=problem, headers={"content-type": "application/problem+json"}
        )

    with pytest.raises(PostError) as caught:
        run(handler)
    message = str(caught.value)
    assert len(calls) == 1
    assert caught.value.status == 422 and caught.value.problem == problem
    assert "422" in message and "2 events are invalid" in message
    assert "body.events.3.amount: must be a decimal string" in message


def test_a_plain_text_error_is_shown_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text="missing or unknown API key")

    with pytest.raises(PostError, match="401.*missing or unknown API key"):
        run(handler)


def test_transport_errors_are_retried_then_reported() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if len(attempts) < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(202, json={"accepted": 7})

    accepted, waits = run(handler, batch_size=10)
    assert accepted == 7 and len(waits) == 2

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(PostError, match="connection refused"):
        run(down, max_attempts=2)


def test_progress_bar_runs_without_a_terminal() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, json={"accepted": len(json.loads(request.content)["events"])})

    accepted = post_events(
        EVENTS,
        url="http://ingest.test",
        api_key="k",
        batch_size=2,
        progress=True,
        transport=httpx.MockTransport(handler),
    )
    assert accepted == 7
