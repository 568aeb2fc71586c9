"""Request dependencies as ``Annotated`` aliases: settings, a session, the caller, the query.

The engines, session factories, key store and publisher live on ``app.state`` (created in the
lifespan); nothing here is global. FastAPI caches a dependency per request, so one request uses
one session, hence one database snapshot (see ``services.api.db``). The admin session factory
is the only writable one; only the admin writes (dead-letter retry, model fits and
definitions) use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.orm import Session, sessionmaker

from services.api import queries
from services.api.errors import UnknownModel
from services.api.params import Period, ReportFormat, negotiate, parse_model_list, parse_period
from services.core.auth import Principal
from services.core.http import authorize
from services.core.publisher import Publisher
from services.core.settings import Settings

DEFAULT_MODEL = "linear"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _session(request: Request) -> Iterator[Session]:
    # Read-only: the session is closed (rolled back) at the end of the request, never committed.
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionDep = Annotated[Session, Depends(_session)]


def require_read(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """Return the caller's principal if its bearer key holds the ``read`` scope."""
    return authorize(request.app.state.keys, authorization, "read")


ReadPrincipal = Annotated[Principal, Depends(require_read)]


def require_admin(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """Return the caller's principal if its bearer key holds the ``admin`` scope."""
    return authorize(request.app.state.keys, authorization, "admin")


AdminPrincipal = Annotated[Principal, Depends(require_admin)]


def _admin_sessions(request: Request) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = request.app.state.admin_sessions
    return sessions


def _publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


AdminSessionsDep = Annotated[sessionmaker[Session], Depends(_admin_sessions)]
PublisherDep = Annotated[Publisher, Depends(_publisher)]


def _period(
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


def _format(accept: Annotated[str | None, Header(include_in_schema=False)] = None) -> ReportFormat:
    return negotiate(accept)


FormatDep = Annotated[ReportFormat, Depends(_format)]


def _model(
    session: SessionDep,
    model: Annotated[str, Query(description="attribution model id")] = DEFAULT_MODEL,
) -> str:
    known = queries.model_ids(session)
    model = model or DEFAULT_MODEL  # an empty value is an absent one, as for from/to
    if model not in known:
        raise UnknownModel("query.model", [model], known)
    return model


ModelDep = Annotated[str, Depends(_model)]


def _models(
    session: SessionDep,
    models: Annotated[
        str | None, Query(description="comma-separated model ids; absent: every model")
    ] = None,
) -> list[str]:
    known = queries.model_ids(session)
    requested = parse_model_list(models)
    unknown = [m for m in requested if m not in known]
    if unknown:
        raise UnknownModel("query.models", unknown, known)
    return requested or known


ModelsDep = Annotated[list[str], Depends(_models)]


def _known(session: Session, field: str, model: str) -> str:
    known = queries.model_ids(session)
    if model not in known:
        raise UnknownModel(field, [model], known)
    return model


def _base(
    session: SessionDep,
    base: Annotated[str, Query(description="the model revenue moves from")],
) -> str:
    return _known(session, "query.base", base)


def _other(
    session: SessionDep,
    other: Annotated[str, Query(description="the model revenue moves to")],
) -> str:
    return _known(session, "query.other", other)


BaseModelDep = Annotated[str, Depends(_base)]
OtherModelDep = Annotated[str, Depends(_other)]
