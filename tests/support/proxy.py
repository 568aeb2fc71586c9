"""A small threaded TCP proxy on loopback, to cut a real service off and bring it back.

``TcpProxy(host, port)`` listens on 127.0.0.1 (its own port, kept for its whole life) and
forwards every connection to ``host:port``. ``cut()`` makes the target unreachable through it:
it stops listening (new connections are refused) and closes every open connection, in both
directions. ``restore()`` listens again on the SAME port. Clients pointed at the proxy see
exactly what they would see if the service went away and came back.

Threads are daemons and bounded: one accept thread while listening and one pump thread per
open connection, at most ``max_connections`` of them (more are closed at once). ``close()``
stops everything; the proxy is also a context manager.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

_CHUNK = 64 * 1024
_TICK_S = 0.1


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # The port is reused after cut(): connections it closed may linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        sock.settimeout(_TICK_S)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_outside_ephemeral_range(host: str) -> socket.socket:
    """Listen on a free port below the ephemeral range.

    While the proxy is cut its port is unbound; a port from the ephemeral range could meanwhile
    become the local port of some client's outgoing connection, and ``restore()`` would fail.
    """
    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10_000, max(low, 10_001))
        try:
            return _listener(host, port)
        except OSError:
            continue
    return _listener(host, 0)


class _Connection:
    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.closing = threading.Event()
        self.thread: threading.Thread | None = None

    def shutdown(self) -> None:
        """Wake the pump thread: it sees end-of-stream on both sides and closes the sockets."""
        self.closing.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target_host:target_port``, with ``cut`` and ``restore``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        max_connections: int = 64,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._listening: socket.socket | None = None
        self._accepting = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._closed = False
        self.accepted = 0  # connections forwarded over the proxy's life
        self.refused = 0  # connections closed at once because the bound was reached
        sock = _listener(host, port) if port is not None else _bind_outside_ephemeral_range(host)
        self.port: int = sock.getsockname()[1]
        self._start(sock)

    # -- public -------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` to give clients instead of the target's."""
        return f"{self.host}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._listening is None

    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def cut(self) -> None:
        """Refuse new connections and close every open one (the target looks down)."""
        self._stop_listening()
        self._close_connections()

    def restore(self, timeout_s: float = 5.0) -> None:
        """Accept and forward again, on the same port."""
        if self._closed:
            raise RuntimeError("proxy is closed")
        if not self.is_cut:
            return
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                sock = _listener(self.host, self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._start(sock)

    def close(self) -> None:
        """Stop listening, close every connection and wait for the threads (bounded)."""
        self._closed = True
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _start(self, sock: socket.socket) -> None:
        self._listening = sock
        self._accepting = threading.Event()
        self._accepting.set()
        self._acceptor = threading.Thread(
            target=self._accept_loop,
            args=(sock, self._accepting),
            name=f"proxy-accept-{self.port}",
            daemon=True,
        )
        self._acceptor.start()

    def _stop_listening(self) -> None:
        sock, acceptor = self._listening, self._acceptor
        self._accepting.clear()
        if acceptor is not None:
            acceptor.join(5)
        if sock is not None:
            sock.close()
        self._listening = self._acceptor = None

    def _close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.shutdown()
        for conn in connections:
            if conn.thread is not None:
                conn.thread.join(self.connect_timeout_s + 2)

    def _accept_loop(self, sock: socket.socket, accepting: threading.Event) -> None:
        while accepting.is_set():
            try:
                client, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            conn = _Connection(client)
            with self._lock:
                full = len(self._connections) >= self.max_connections
                if not full:
                    self._connections.add(conn)
                    self.accepted += 1
                else:
                    self.refused += 1
            if full:
                client.close()
                continue
            conn.thread = threading.Thread(
                target=self._pump, args=(conn,), name=f"proxy-pump-{self.port}", daemon=True
            )
            conn.thread.start()

    def _pump(self, conn: _Connection) -> None:
        try:
            try:
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout_s)
            except OSError:
                return
            upstream.settimeout(None)
            conn.upstream = upstream
            if conn.closing.is_set():  # cut while connecting
                return
            peers = {conn.client: upstream, upstream: conn.client}
            while not conn.closing.is_set():
                readable, _, _ = select.select(list(peers), [], [], _TICK_S)
                for sock in readable:
                    data = sock.recv(_CHUNK)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for end in (conn.client, conn.upstream):
                if end is not None:
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)
                    end.close()
            with self._lock:
                self._connections.discard(conn)
