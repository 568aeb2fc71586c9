"""A minimal HTTP/1.1 client on asyncio streams, for hundreds of concurrent keep-alive clients.

httpx's async pool costs the load generator more than the server under test once hundreds of
connections share it (and a client per connection builds an SSL context each), so the overload
scenario speaks HTTP/1.1 itself: one connection per simulated client, ``Content-Length``
bodies, answers read by ``Content-Length``. Every failure is classified, never hidden: a
``timeout`` (no complete answer within the client's timeout), a ``reset`` (the connection was
closed or reset before a complete answer), or ``refused`` (no connection at all).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass
class Reply:
    """A complete answer: status, lower-cased headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Failure(Exception):
    """No complete answer: ``kind`` is ``timeout``, ``reset`` or ``refused``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Connection:
    """One keep-alive connection to ``host:port`` (re-opened when the server closed it)."""

    def __init__(self, host: str, port: int, *, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """POST ``body``; return the answer or raise ``Failure``."""
        try:
            return await asyncio.wait_for(self._exchange(path, headers, body), self.timeout_s)
        except TimeoutError:
            await self.close()
            raise Failure("timeout", f"no answer within {self.timeout_s} s") from None
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.close()
            raise Failure("reset", repr(exc)) from None

    async def _exchange(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                raise Failure("refused", repr(exc)) from None
        assert self._reader is not None and self._writer is not None
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        fields = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        content = await self._reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return Reply(status, fields, content)

    async def close(self) -> None:
        """Close the connection (the next ``post`` opens a new one)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
