"""How uvicorn serves both HTTP services: with a bounded request head.

uvicorn's fast parser (httptools, from ``uvicorn[standard]``) keeps a request head of any size
in memory, and has no setting to bound it: an anonymous client could send megabytes of headers
per request (a 1 MB bearer token, say) and have them parsed, then handed to the app. So the
services are served by ``BoundedHttpToolsProtocol``, which answers 431 as soon as the bytes of
one request head pass ``MAX_HEAD_BYTES``, before the head is complete. The limit is generous
(browsers send the dashboard's origin all its cookies) and well above any real request.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
# After a 431 the server stops sending and drains what the client still sends, until the
# client closes or for at most this long, so the client reads the answer, not a reset.
LINGER_S = 2.0

_BODY = json.dumps(
    {
        "type": "about:blank",
        "status": 431,
        "title": "Request Header Fields Too Large",
        "detail": f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
    }
).encode()
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/problem+json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _BODY
)


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request whose head is too large."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head beyond ``MAX_HEAD_BYTES`` (431).

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
        """Stop counting: the head is complete and within bounds."""
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; refuse the request once its head passes the bound."""
        if self._refused:
            return  # draining until the client is done or LINGER_S has passed
        super().data_received(data)  # a _HeadTooLarge ends in send_400_response, below
        if self._in_head and not self._refused and not self.transport.is_closing():
            self._received += len(data)
            if self._received > MAX_HEAD_BYTES:
                self._refuse()

    def send_400_response(self, msg: str) -> None:
        """Answer 431 if parsing stopped on a head too large, else uvicorn's 400."""
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._parsed += size
        if self._parsed > MAX_HEAD_BYTES:
            self._too_large = True
            raise _HeadTooLarge

    def _refuse(self) -> None:
        self._refused = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined request is still being answered: just hang up
            return
        self.transport.write(_REFUSAL)
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client reads the answer, then sees the end
        self.loop.call_later(LINGER_S, self.transport.close)


def uvicorn_limits() -> dict[str, Any]:
    """Return the uvicorn options that bound what one request may make the server hold."""
    return {"http": BoundedHttpToolsProtocol}
