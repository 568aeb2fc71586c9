"""The read API's errors and their RFC 9457 answers, registered in one place.

Routes and queries raise the exceptions below (which know nothing of HTTP); ``install_errors``
maps each to a status and a problem body. Anything a client can send ends in a 4xx: a 500 is a
bug. A database or broker that cannot be reached answers 503 with ``Retry-After`` (not the
client's fault, and worth retrying).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from services.core.http import Problem, install_problem_handlers, problem_response, unavailable
from services.core.publisher import BrokerUnavailable, RecordTooLarge

log = logging.getLogger(__name__)


class InvalidQuery(ValueError):
    """A query parameter that parses but breaks a rule (bad date, empty range, ...)."""

    def __init__(self, field: str, problem: str, *, kind: str = "value_error") -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem, self.kind = field, problem, kind


class UnknownModel(InvalidQuery):
    """An attribution model id that is not in ``attribution_models``."""

    def __init__(self, field: str, model_ids: Sequence[str], known: Sequence[str]) -> None:
        names = ", ".join(repr(m) for m in model_ids)
        listing = ", ".join(known) if known else "none yet (has the worker started?)"
        super().__init__(
            field, f"unknown model {names}; known models: {listing}", kind="unknown_model"
        )


class DealNotFound(LookupError):
    """No deal with this id has been seen."""

    def __init__(self, deal_id: str) -> None:
        super().__init__(deal_id)
        self.deal_id = deal_id


class DeadLetterNotFound(LookupError):
    """No dead letter with this id."""

    def __init__(self, dead_letter_id: int) -> None:
        super().__init__(dead_letter_id)
        self.dead_letter_id = dead_letter_id


class AlreadyRetried(Exception):
    """A dead letter that was already re-published (retrying again needs ``force``)."""

    def __init__(self, dead_letter_id: int, retried_at: datetime) -> None:
        super().__init__(f"{dead_letter_id} at {retried_at.isoformat()}")
        self.dead_letter_id, self.retried_at = dead_letter_id, retried_at


class StillInvalid(ValueError):
    """A dead letter whose stored bytes the current event schema still rejects."""

    def __init__(self, dead_letter_id: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"dead letter {dead_letter_id} is still invalid")
        self.dead_letter_id, self.errors = dead_letter_id, errors


class ModelNotFound(LookupError):
    """No attribution model with this id."""

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self.model_id = model_id


class BuiltinModel(Exception):
    """A change to a built-in model, which users cannot redefine or delete."""

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self.model_id = model_id


class NoFit(Exception):
    """A data-driven model that has no successful fit (snapshot) yet."""

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self.model_id = model_id


class AccountNotFound(LookupError):
    """The account is unknown (for a score: no touch has ever been seen for it)."""

    def __init__(self, account_id: str, why: str = "no touch has been seen for") -> None:
        super().__init__(account_id)
        self.account_id = account_id
        self.why = why


class LeadDefinitionNotFound(LookupError):
    """No lead definition with this id (or, with ``version``, no such version of it)."""

    def __init__(self, definition_id: str, version: int | None = None) -> None:
        super().__init__(definition_id)
        self.definition_id, self.version = definition_id, version


class NotAcceptable(Exception):
    """The ``Accept`` header admits none of the media types a report is available in."""

    def __init__(self, offered: Sequence[str]) -> None:
        super().__init__(", ".join(offered))
        self.offered = tuple(offered)


def install_errors(app: FastAPI) -> None:
    """Register the shared problem handlers plus the read API's own exceptions."""
    install_problem_handlers(app)

    @app.exception_handler(InvalidQuery)
    async def _invalid(_: Request, exc: InvalidQuery) -> JSONResponse:
        errors = [{"field": exc.field, "problem": exc.problem, "type": exc.kind}]
        return problem_response(
            Problem(422, "Invalid request", f"{exc.field}: {exc.problem}", errors=errors)
        )

    @app.exception_handler(DealNotFound)
    async def _no_deal(_: Request, exc: DealNotFound) -> JSONResponse:
        return problem_response(Problem(404, "Not Found", f"no deal with id {exc.deal_id!r}"))

    @app.exception_handler(ModelNotFound)
    async def _no_model(_: Request, exc: ModelNotFound) -> JSONResponse:
        return problem_response(Problem(404, "Not Found", f"no model with id {exc.model_id!r}"))

    @app.exception_handler(BuiltinModel)
    async def _builtin(_: Request, exc: BuiltinModel) -> JSONResponse:
        detail = f"built-in models cannot be changed: {exc.model_id!r} is built in"
        return problem_response(Problem(409, "Conflict", detail))

    @app.exception_handler(NoFit)
    async def _no_fit(_: Request, exc: NoFit) -> JSONResponse:
        detail = (
            "the grade has no fit yet: the worker fits it as soon as decided deals with an "
            "account include a won and a lost one"
            if exc.model_id == "grade"
            else f"the {exc.model_id} model has no fit yet; request one with "
            f"POST /v1/models/{exc.model_id}/fit (admin) and retry once it is done"
        )
        return problem_response(Problem(409, "Conflict", detail))

    @app.exception_handler(AccountNotFound)
    async def _no_account(_: Request, exc: AccountNotFound) -> JSONResponse:
        detail = f"{exc.why} account {exc.account_id!r}"
        return problem_response(Problem(404, "Not Found", detail))

    @app.exception_handler(LeadDefinitionNotFound)
    async def _no_definition(_: Request, exc: LeadDefinitionNotFound) -> JSONResponse:
        detail = f"no lead definition with id {exc.definition_id!r}"
        if exc.version is not None:
            detail = f"lead definition {exc.definition_id!r} has no version {exc.version}"
        return problem_response(Problem(404, "Not Found", detail))

    @app.exception_handler(NotAcceptable)
    async def _not_acceptable(_: Request, exc: NotAcceptable) -> JSONResponse:
        detail = f"this resource is available as {' or '.join(exc.offered)}"
        return problem_response(Problem(406, "Not Acceptable", detail))

    @app.exception_handler(DeadLetterNotFound)
    async def _no_dead_letter(_: Request, exc: DeadLetterNotFound) -> JSONResponse:
        return problem_response(
            Problem(404, "Not Found", f"no dead letter with id {exc.dead_letter_id}")
        )

    @app.exception_handler(AlreadyRetried)
    async def _already_retried(_: Request, exc: AlreadyRetried) -> JSONResponse:
        detail = (
            f"dead letter {exc.dead_letter_id} was already re-published at "
            f"{exc.retried_at.isoformat()}; add ?force=true to publish it again"
        )
        return problem_response(Problem(409, "Conflict", detail))

    @app.exception_handler(StillInvalid)
    async def _still_invalid(_: Request, exc: StillInvalid) -> JSONResponse:
        shown = "; ".join(f"{e['field']}: {e['problem']}" for e in exc.errors[:5])
        more = f" (and {len(exc.errors) - 5} more)" if len(exc.errors) > 5 else ""
        detail = (
            f"dead letter {exc.dead_letter_id} is still invalid under the current event "
            f"schema, nothing was published: {shown}{more}"
        )
        return problem_response(Problem(422, "Invalid event", detail, errors=exc.errors))

    @app.exception_handler(RecordTooLarge)
    async def _too_large(_: Request, exc: RecordTooLarge) -> JSONResponse:
        errors = [{"field": "raw", "problem": str(exc), "type": "too_large"}]
        detail = f"the event cannot be published, nothing was: {exc}"
        return problem_response(Problem(422, "Invalid event", detail, errors=errors))

    @app.exception_handler(BrokerUnavailable)
    async def _broker_down(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        log.warning("broker unavailable: %s", exc)
        return problem_response(
            unavailable(
                "the event broker did not acknowledge the event; retry the same request "
                "(a copy that did arrive is recognised by its event_id and counted once)"
            )
        )

    @app.exception_handler(OperationalError)
    async def _database_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig or exc)
        return problem_response(unavailable("the database is unavailable"))
