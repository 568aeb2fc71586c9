"""Request dependencies as ``Annotated`` aliases: settings, a session, the caller, the query.

The engines, session factories, key store, publisher and cached reports live on ``app.state``
(created in ``create_app`` and its lifespan); nothing here is global. FastAPI caches a
dependency per request, so one request uses one session, hence one database snapshot (see
``services.api.db``). The admin session factory is the only writable one; only the admin
writes (dead-letter retry, model fits and definitions, lead definitions) use it. The cached
reports resolve their model parameters with the pure ``requested_*`` functions inside their
one database trip (``services.api.cache.CachedReports``).

Dependencies that do no I/O are ``async``: FastAPI runs them on the event loop, where a sync
one would cost a hop to the thread pool on every request.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from services.api import queries
from services.api.cache import CachedReports
from services.api.errors import UnknownModel
from services.api.params import Period, ReportFormat, negotiate, parse_model_list, parse_period
from services.api.selection import (
    MAX_LIMIT,
    MAX_OFFSET,
    Filters,
    Page,
    Sourced,
    parse_filters,
)
from services.core.auth import Principal
from services.core.http import authorize
from services.core.publisher import Publisher
from services.core.settings import Settings

DEFAULT_MODEL = "linear"


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _session(request: Request) -> Iterator[Session]:
    # Read-only: the session is closed (rolled back) at the end of the request, never committed.
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionDep = Annotated[Session, Depends(_session)]


# Declares the bearer scheme on every route that needs a key (the OpenAPI ``security``); it
# does not refuse anything itself (``auto_error=False``): ``authorize`` does, as problem+json.
_bearer = HTTPBearer(
    auto_error=False,
    description="An API key: scope `read` for reports and models, `admin` for admin routes",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _header(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return None if credentials is None else f"Bearer {credentials.credentials}"


async def require_read(request: Request, credentials: Credentials) -> Principal:
    """Return the caller's principal if its bearer key holds the ``read`` scope."""
    return await authorize(request.app.state.keys, _header(credentials), "read")


ReadPrincipal = Annotated[Principal, Depends(require_read)]


async def require_admin(request: Request, credentials: Credentials) -> Principal:
    """Return the caller's principal if its bearer key holds the ``admin`` scope."""
    return await authorize(request.app.state.keys, _header(credentials), "admin")


AdminPrincipal = Annotated[Principal, Depends(require_admin)]


async def _admin_sessions(request: Request) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = request.app.state.admin_sessions
    return sessions


async def _publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


AdminSessionsDep = Annotated[sessionmaker[Session], Depends(_admin_sessions)]
PublisherDep = Annotated[Publisher, Depends(_publisher)]


async def _period(
    start: Annotated[
        str | None,
        Query(
            alias="from", description="first day, YYYY-MM-DD (UTC), inclusive; absent: unbounded"
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            alias="to",
            description="day after the last, YYYY-MM-DD (UTC), exclusive; absent: unbounded",
        ),
    ] = None,
) -> Period:
    return parse_period(start, end)


PeriodDep = Annotated[Period, Depends(_period)]


async def _format(
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> ReportFormat:
    return negotiate(accept)


FormatDep = Annotated[ReportFormat, Depends(_format)]


async def _filters(
    channel: Annotated[
        str | None, Query(description="only these channels, comma-separated; absent: all")
    ] = None,
    campaign_id: Annotated[
        str | None, Query(description="only these campaign ids, comma-separated; absent: all")
    ] = None,
    sourced: Annotated[
        Sourced | None,
        Query(description="sales: only sales-sourced campaigns; marketing: only the others"),
    ] = None,
) -> Filters:
    return parse_filters(channel, campaign_id, sourced)


FiltersDep = Annotated[Filters, Depends(_filters)]


async def _page(
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_LIMIT, description="at most this many rows; absent: all")
    ] = None,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="skip this many rows of the sorted list")
    ] = 0,
) -> Page:
    return Page(limit, offset)


PageDep = Annotated[Page, Depends(_page)]


ModelQuery = Annotated[str, Query(description="attribution model id")]
ModelsQuery = Annotated[
    str | None, Query(description="comma-separated model ids; absent: every model")
]
BaseQuery = Annotated[str, Query(description="the model revenue moves from")]
OtherQuery = Annotated[str, Query(description="the model revenue moves to")]


def known_model(known: Sequence[str], field: str, model: str) -> str:
    """Return ``model`` if it is one of ``known``, else raise UnknownModel naming ``field``."""
    if model not in known:
        raise UnknownModel(field, [model], known)
    return model


def requested_model(known: Sequence[str], model: str) -> str:
    """Resolve the ``model`` parameter: an empty value is the default, as for from/to."""
    return known_model(known, "query.model", model or DEFAULT_MODEL)


def requested_models(known: Sequence[str], models: str | None) -> tuple[str, ...]:
    """Resolve the ``models`` parameter: the listed models, in order, or every model."""
    requested = parse_model_list(models)
    unknown = [m for m in requested if m not in known]
    if unknown:
        raise UnknownModel("query.models", unknown, known)
    return tuple(requested or known)


def _model(session: SessionDep, model: ModelQuery = DEFAULT_MODEL) -> str:
    return requested_model(queries.model_ids(session), model)


ModelDep = Annotated[str, Depends(_model)]


async def _reports(request: Request) -> CachedReports:
    reports: CachedReports = request.app.state.reports
    return reports


CachedReportsDep = Annotated[CachedReports, Depends(_reports)]
