"""Rendered reports cached in process, keyed by the request and the projection version.

A report is a pure function of the projection, so a rendered body can be served again until
the projection changes. Every writer of the projection gives it a new version in the same
transaction as its changes (``services.core.db.version``).

Invariants:
- A body is stored under the version read in the same database snapshot as the data it was
  built from (one REPEATABLE READ session, see ``services.api.db``), and is served only to a
  request whose own read of the version, made after it arrived, returns that same version.
  Writers commit their changes and a new version together, so once a commit is visible no
  body built before it is served.
- The key is everything the body depends on besides the projection: the report, its parsed
  parameters (models resolved, period, grouping; for ROI and compare also the filters, sort
  and page, ``services.api.selection``) and the format (JSON or CSV). A next-page ``Link``
  header is stored with the body: two requests that parse alike (``channel=a,b`` and
  ``channel=b,a``) may share the link the first one spelled, which names the same page.
  Authentication and validation run before the lookup on every request; only successful
  bodies are stored.
- At most ``max_entries`` bodies and ``max_bytes`` bytes are held; the least recently used
  go first (bodies of older versions are never hit again, so they age out).
- Concurrent misses of one key build it once: the others wait for that body (a burst of
  identical requests after a version change costs one query, not one per request).

``CachedReports`` serves a cached report in one trip to the thread pool (a plain ``def``
dependency costs a hop each, and a hit is cheap enough for hops to dominate):
- First one statement, in autocommit on a pooled DBAPI connection, reads the version and the
  model list; the model parameters are resolved against that list (an unknown model is
  refused here). A single statement reads one committed state, and every change of the
  projection commits with a new version, so a body stored under that version is exactly what
  building it now would give: it is served. (Every request runs this: through the DBAPI
  because SQLAlchemy's session and result machinery cost more than the round trips, and in
  autocommit because BEGIN and ROLLBACK would be two more round trips: together about 1.4 →
  0.6 ms of this process's CPU a hit, measured in process with 32 concurrent requests.) Its
  pool does not ping a connection on checkout (a third round trip): a pooled connection the
  database dropped fails the statement, is discarded, and the statement runs once more on a
  fresh one.
- On a miss, a second trip: one session (one snapshot) reads the version and the models
  again, resolves the parameters again and builds the body, stored under the version of that
  snapshot (which may be newer than the first read: a commit came in between).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from anyio import CapacityLimiter, to_thread
from fastapi.responses import Response
from sqlalchemy import Engine
from sqlalchemy.engine.interfaces import DBAPIModule
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection
from starlette.concurrency import run_in_threadpool

from services.api import queries
from services.api.db import STATEMENT_POOL_SIZE

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True)
class CachedBody:
    """A rendered report: the bytes and the headers that describe them."""

    body: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, response: Response) -> CachedBody:
        """Keep what a rendered report response carries (its body and content headers)."""
        headers = tuple(
            (name, value)
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        )
        return cls(bytes(response.body), response.media_type or "", headers)

    def response(self) -> Response:
        """Return a fresh response with this body."""
        return Response(self.body, media_type=self.media_type, headers=dict(self.headers))


class ReportCache:
    """Bounded LRU of rendered reports with one build per key at a time (see module doc)."""

    def __init__(self, *, max_entries: int = 512, max_bytes: int = 64 * 2**20) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[Hashable, CachedBody] = OrderedDict()
        self._bytes = 0
        self._building: dict[Hashable, Future[CachedBody]] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> CachedBody | None:
        """Return the cached body for ``key`` (now the most recently used), or None."""
        with self._lock:
            return self._hit(key)

    def _hit(self, key: Hashable) -> CachedBody | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return found

    def get_or_build(self, key: Hashable, build: Callable[[], CachedBody]) -> CachedBody:
        """Return the cached body for ``key``, or build, store and return it."""
        with self._lock:
            hit = self._hit(key)
            if hit is not None:
                return hit
            self.misses += 1
            pending = self._building.get(key)
            if pending is None:
                future: Future[CachedBody] = Future()
                self._building[key] = future
        if pending is not None:
            return pending.result()  # raises what the builder raised
        try:
            body = build()
        except BaseException as exc:
            with self._lock:
                del self._building[key]
            future.set_exception(exc)
            raise
        with self._lock:
            del self._building[key]
            self._store(key, body)
        future.set_result(body)
        return body

    def _store(self, key: Hashable, body: CachedBody) -> None:
        size = len(body.body)
        if size > self.max_bytes or self.max_entries <= 0:
            return
        self._entries[key] = body
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)


class CachedReports:
    """Answer the cacheable reports from ``cache`` (see module doc)."""

    def __init__(
        self,
        statements: Engine,
        sessions: sessionmaker[Session],
        cache: ReportCache,
        *,
        concurrent_checks: int = STATEMENT_POOL_SIZE,
    ) -> None:
        """``statements``: an autocommit engine (``services.api.db.make_statement_engine``)."""
        self.statements, self.sessions, self.cache = statements, sessions, cache
        statement = queries.version_and_models_statement()
        # Compiled once; its only parameter is a constant of the code, safe as a literal.
        self._current_sql = str(
            statement.compile(dialect=statements.dialect, compile_kwargs={"literal_binds": True})
        )
        # As many checks at once as the engine keeps connections: more would only wait for one
        # in a thread (holding the thread), where the rest wait here, on the event loop.
        self._checks = CapacityLimiter(concurrent_checks)

    async def answer(
        self,
        key: tuple[Hashable, ...],
        *,
        resolve: Callable[[list[str]], T],
        build: Callable[[Session, T], Response],
    ) -> Response:
        """Answer a report: ``resolve`` checks its models, ``build`` renders it on a miss.

        ``key`` names the report and its parameters but the models; ``resolve`` turns the
        known model ids into the resolved model parameters (raising for an unknown one), which
        complete the key and are handed to ``build``.
        """
        found = await to_thread.run_sync(self._lookup, key, resolve, limiter=self._checks)
        if found is None:  # built apart: a build holds its thread for as long as its queries
            found = await run_in_threadpool(self._build, key, resolve, build)
        return found.response()

    def _lookup(
        self, key: tuple[Hashable, ...], resolve: Callable[[list[str]], T]
    ) -> CachedBody | None:
        current = self._current()
        if current is None:
            return None
        version, known = current
        return self.cache.get((version, *key, resolve(known)))

    def _build(
        self,
        key: tuple[Hashable, ...],
        resolve: Callable[[list[str]], T],
        build: Callable[[Session, T], Response],
    ) -> CachedBody:
        with self.sessions() as session:
            version, known = queries.version_and_model_ids(session)
            resolved = resolve(known)
            return self.cache.get_or_build(
                (version, *key, resolved), lambda: CachedBody.of(build(session, resolved))
            )

    def _current(self) -> tuple[str, list[str]] | None:
        """Read the version and the model ids in one statement (None without any model)."""
        dbapi_error = self.statements.dialect.loaded_dbapi.Error
        for attempt in (1, 2):
            try:
                # Connecting fails with the bare DBAPI error too (the database is away): inside
                # the conversion, or a lost database would answer 500 instead of 503.
                connection = self.statements.raw_connection()
            except dbapi_error as exc:
                raise DBAPIError.instance(None, None, exc, dbapi_error) from exc
            try:
                cursor = connection.cursor()
                cursor.execute(self._current_sql)
                rows = cursor.fetchall()
                cursor.close()
            except dbapi_error as exc:  # as SQLAlchemy would raise it (a lost database: 503)
                error = DBAPIError.instance(self._current_sql, None, exc, dbapi_error)
                if self._disconnected(exc, connection):
                    # A pooled connection the database dropped (a restart): the pool does not
                    # ping on checkout, so this is where a dead one shows. Discard, retry once.
                    connection.invalidate(exc)
                    if attempt == 1:
                        continue
                raise error from exc
            finally:
                connection.close()  # back to the pool (an invalidated one is discarded)
            if not rows:
                return None
            return str(rows[0][0]), [str(model_id) for _, model_id in rows]
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _disconnected(self, exc: DBAPIModule.Error, connection: PoolProxiedConnection) -> bool:
        dialect = self.statements.dialect
        return bool(dialect.is_disconnect(exc, connection.dbapi_connection, None))
