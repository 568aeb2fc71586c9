"""How uvicorn serves both HTTP services: with a request head bounded in size and in time.

uvicorn's fast parser (httptools, from ``uvicorn[standard]``) keeps a request head of any size
in memory, and has no setting to bound it: an anonymous client could send megabytes of headers
per request (a 1 MB bearer token, say) and have them parsed, then handed to the app. So the
services are served by ``BoundedHttpToolsProtocol``, which answers 431 as soon as the bytes of
one request head pass ``MAX_HEAD_BYTES``, before the head is complete. The limit is generous
(browsers send the dashboard's origin all its cookies) and well above any real request.

Nor does uvicorn bound the time a head takes: its keep-alive timeout runs only between
requests and stops at the first byte of the next one, and a new connection has none, so a
client could hold connections open forever by sending nothing, or a header byte now and then
("slowloris"), until the process runs out of file descriptors. Here a connection must complete
each request head within ``HEAD_TIMEOUT_S`` of being opened or of its previous answer:
otherwise it is answered 408 (a head was begun) or closed (nothing was sent). The body's pace
is the app's to bound (``services.ingest.deps.read_body``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_S = 10.0
# After a 431 the server stops sending and drains what the client still sends, until the
# client closes or for at most this long, so the client reads the answer, not a reset.
LINGER_S = 2.0


def _answer(status: int, title: str, detail: str) -> bytes:
    """A complete problem+json answer that closes the connection."""
    body = json.dumps(
        {"type": "about:blank", "status": status, "title": title, "detail": detail}
    ).encode()
    return (
        f"HTTP/1.1 {status} {title}\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


_REFUSAL = _answer(
    431,
    "Request Header Fields Too Large",
    f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
)
_TIMED_OUT = _answer(
    408,
    "Request Timeout",
    f"the request line and headers did not arrive within {HEAD_TIMEOUT_S:g} s",
)


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request whose head is too large."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head beyond ``MAX_HEAD_BYTES`` (431)
    or not complete within ``HEAD_TIMEOUT_S`` (408; see the module doc).

    Two counts, because httptools buffers a header until it ends: the bytes received while a
    head is incomplete (this bounds memory during one huge header, to within a read of the
    limit), and the exact size of the URL and headers parsed (so a head that arrives whole in
    one read is refused too).
    """

    _in_head = False
    _received = 0
    _parsed = 0
    _too_large = False
    _refused = False
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's head."""
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the head clock with the connection."""
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        """Start the clock for the next request's head (unless the connection is closing)."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._refused:
            return
        if self._in_head:  # a head was begun and is still incomplete
            self._refuse(_TIMED_OUT)
        elif self.cycle is None or self.cycle.response_complete:  # nothing sent: idle
            self.transport.close()
        # else a request is being answered (a pipelined one, whose head is complete): its
        # answer re-arms the clock.

    def on_message_begin(self) -> None:
        """Start counting the bytes of a new request's head."""
        super().on_message_begin()
        self._in_head, self._received, self._parsed = True, 0, 0

    def on_url(self, url: bytes) -> None:
        """Count the URL, then keep it."""
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count the header, then keep it."""
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """Stop counting and the clock: the head is complete, within bounds and in time."""
        self._in_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; refuse the request once its head passes the bound."""
        if self._refused:
            return  # draining until the client is done or LINGER_S has passed
        super().data_received(data)  # a _HeadTooLarge ends in send_400_response, below
        if self._in_head and not self._refused and not self.transport.is_closing():
            self._received += len(data)
            if self._received > MAX_HEAD_BYTES:
                self._refuse(_REFUSAL)

    def send_400_response(self, msg: str) -> None:
        """Answer 431 if parsing stopped on a head too large, else uvicorn's 400."""
        if self._too_large:
            self._refuse(_REFUSAL)
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._parsed += size
        if self._parsed > MAX_HEAD_BYTES:
            self._too_large = True
            raise _HeadTooLarge

    def _refuse(self, answer: bytes) -> None:
        self._refused = True
        self._disarm_head_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined request is still being answered: just hang up
            return
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client reads the answer, then sees the end
        self.loop.call_later(LINGER_S, self.transport.close)


def uvicorn_limits() -> dict[str, Any]:
    """Return the uvicorn options that bound what one request may make the server hold."""
    return {"http": BoundedHttpToolsProtocol}
