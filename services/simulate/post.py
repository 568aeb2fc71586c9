"""Send events to the ingest service in batches, with a progress bar.

Re-sending a batch is always safe: ``event_id`` is the idempotency key, so a batch that was in
fact accepted before a timeout only adds duplicates the service ignores. That is why transport
errors and 503 (broker unavailable) are retried, and nothing else is.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from services.simulate.delivery import batches

RETRYABLE = frozenset({429, 503})
MAX_WAIT_S = 60.0  # never trust a Retry-After beyond this


class PostError(RuntimeError):
    """The service refused a batch, or stayed unavailable: the message says why."""

    def __init__(self, message: str, *, status: int | None = None, problem: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem


def post_events(
    events: Sequence[dict[str, Any]],
    *,
    url: str,
    api_key: str,
    batch_size: int = 500,
    progress: bool = True,
    timeout_s: float = 30,
    max_attempts: int = 8,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST ``{"events": [...]}`` batches to ``{url}/v1/events``; return the events accepted.

    A batch answered 503 (or 429) is retried after its ``Retry-After`` (capped at a minute), a
    transport error after an exponential backoff, up to ``max_attempts`` tries; any other
    error status raises ``PostError`` with the problem details.
    """
    endpoint = url.rstrip("/") + "/v1/events"
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    accepted = 0
    with (
        httpx.Client(timeout=timeout_s, headers=headers, transport=transport) as client,
        _progress_bar(disable=not progress) as bar,
    ):
        task = bar.add_task("Posting events", total=len(events))
        for batch in batches(events, batch_size):
            accepted += _post_batch(client, endpoint, batch, max_attempts=max_attempts, sleep=sleep)
            bar.advance(task, len(batch))
    return accepted


def _post_batch(
    client: httpx.Client,
    endpoint: str,
    batch: list[dict[str, Any]],
    *,
    max_attempts: int,
    sleep: Callable[[float], None],
) -> int:
    body = orjson.dumps({"events": batch})
    for attempt in range(1, max_attempts + 1):
        last = attempt == max_attempts
        try:
            response = client.post(endpoint, content=body)
        except httpx.TransportError as exc:
            if last:
                raise PostError(f"POST {endpoint} failed {attempt} times: {exc!r}") from exc
            sleep(_backoff(attempt))
            continue
        if response.is_success:
            accepted = (_json(response) or {}).get("accepted")
            return accepted if isinstance(accepted, int) else len(batch)
        if response.status_code in RETRYABLE and not last:
            sleep(_retry_after(response, attempt))
            continue
        raise _error(endpoint, response, attempts=attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _error(endpoint: str, response: httpx.Response, *, attempts: int) -> PostError:
    problem = _json(response)
    status = response.status_code
    if problem:
        title = problem.get("title") or response.reason_phrase
        lines = [f"POST {endpoint} -> {status} {title}: {problem.get('detail', '')}".rstrip(": ")]
        errors = problem.get("errors") or []
        lines += [
            f"  {_location(e)}: {e.get('msg') or e.get('message') or e}"
            for e in errors[:20]
            if isinstance(e, dict)
        ]
        if len(errors) > 20:
            lines.append(f"  ... and {len(errors) - 20} more")
    else:
        lines = [f"POST {endpoint} -> {status} {response.reason_phrase}: {response.text[:2000]}"]
    if status in RETRYABLE:
        lines.append(f"  (still unavailable after {attempts} attempts)")
    return PostError("\n".join(lines), status=status, problem=problem or response.text)


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _location(error: dict[str, Any]) -> str:
    loc = error.get("loc") or error.get("location") or error.get("pointer") or "?"
    return ".".join(str(part) for part in loc) if isinstance(loc, list) else str(loc)


def _retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before the next attempt: Retry-After (seconds or HTTP date) or backoff."""
    header = response.headers.get("Retry-After", "").strip()
    if header:
        try:
            return min(max(float(header), 0.0), MAX_WAIT_S)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return _backoff(attempt)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), MAX_WAIT_S)
    return _backoff(attempt)


def _backoff(attempt: int) -> float:
    return float(min(0.5 * 2 ** (attempt - 1), MAX_WAIT_S))


class _RateColumn(ProgressColumn):
    """Events per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} events/s", style="progress.data.speed")


def _progress_bar(*, disable: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=disable,
    )
