"""The OpenAPI documents of both services, made to say what the services really answer.

FastAPI infers most of a document from the routes; ``finish_openapi`` adds what it cannot:

- Every error answer is ``application/problem+json`` (RFC 9457, ``services.core.http``) with
  the ``Problem`` schema, including the 422 FastAPI would document as ``application/json``.
- An operation that needs a bearer key (its ``security`` lists the scheme) documents 401 (no,
  unknown, revoked or expired key), 403 (the key lacks the scope) and 503 (the key database
  or the broker is unavailable, with ``Retry-After``).
- An operation with parameters or a body documents 422 (a field is invalid), and one with a
  JSON body 400 (the body is not JSON at all).

So a route declares only its own answers (404, 406, 409, ...), with a description, and every
route added later (under any router) is documented the same way without doing anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_JSON = "application/problem+json"
_PROBLEM_REF = "#/components/schemas/Problem"

PROBLEM_COMPONENTS: dict[str, Any] = {
    "Problem": {
        "title": "Problem",
        "description": "RFC 9457 problem details; ``errors`` names each invalid field.",
        "type": "object",
        "required": ["type", "status", "title", "detail"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "title": {"type": "string"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
        },
    },
    "FieldError": {
        "title": "FieldError",
        "type": "object",
        "required": ["field", "problem", "type"],
        "properties": {
            "field": {"type": "string", "description": "e.g. events[3].amount, query.from"},
            "problem": {"type": "string"},
            "type": {"type": "string"},
        },
    },
}

_SECURED = {
    401: "No API key, or an unknown, revoked or expired one (WWW-Authenticate: Bearer)",
    403: "The API key lacks the scope this operation needs",
    503: "A database or the broker is unavailable; retry after Retry-After seconds",
}
_INVALID = "A parameter or body field is invalid; ``errors`` names each one"
_MALFORMED = "The body is not JSON"


def problem_content() -> dict[str, Any]:
    """Return the ``content`` of a problem answer."""
    return {PROBLEM_JSON: {"schema": {"$ref": _PROBLEM_REF}}}


def finish_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Complete a generated document in place (see module doc) and return it."""
    schema.setdefault("components", {}).setdefault("schemas", {}).update(PROBLEM_COMPONENTS)
    for methods in schema.get("paths", {}).values():
        for operation in methods.values():
            _complete(operation)
    # FastAPI's own 422 body schemas, now referenced by no answer.
    if "#/components/schemas/HTTPValidationError" not in json.dumps(schema.get("paths", {})):
        for name in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(name, None)
    return schema


def _complete(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    needed: dict[int, str] = {}
    if operation.get("security"):
        needed.update(_SECURED)
    if operation.get("parameters") or operation.get("requestBody"):
        needed[422] = _INVALID
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        needed[400] = _MALFORMED
    for status, description in needed.items():
        responses.setdefault(str(status), {"description": description})
    for code, response in responses.items():
        if code[0] in "45":
            response["content"] = problem_content()
            if response.get("description") in (None, "", "Validation Error"):
                response["description"] = _INVALID if code == "422" else "Error"


def install_openapi(app: FastAPI, *, extra: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve ``app``'s finished document (built once), after ``extra`` adds to it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            if extra is not None:
                extra(schema)
            app.openapi_schema = finish_openapi(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_components(schema: dict[str, Any], components: Mapping[str, Any]) -> None:
    """Add component schemas to a document."""
    schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
