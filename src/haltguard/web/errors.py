"""Every error the API returns has one shape: ``{"error": {"code": ..., "message": ...}}``.

``code`` is stable for programs; ``message`` tells a person what was wrong and what to do.
Domains raise :class:`~haltguard.common.errors.HaltguardError` (one subclass per domain); the
one handler here maps its ``kind`` to the status code and renders the body, on the operations
service and on the venue's API alike. ``next_step``, ``message_ja`` and an error's ``details``
join ``code`` and ``message`` in the body only when the error carries them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from haltguard.common.errors import ErrorKind, HaltguardError
from haltguard.venue.control import VenueControlError


class ErrorDetail(BaseModel):
    code: str
    message: str
    next_step: str | None = Field(default=None, description="What to do next, when said apart.")
    message_ja: str | None = Field(default=None, description="The message in Japanese.")


class ErrorBody(BaseModel):
    """The body of every non-2xx answer."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
    for status in (400, 401, 403, 404, 408, 409, 413, 422, 502, 503)
}

KIND_STATUS: dict[ErrorKind, int] = {
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.INVALID: 422,
    ErrorKind.TOO_MANY: 429,
    ErrorKind.INTERNAL: 500,
    ErrorKind.VENUE: 502,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
}
"""The one place an error's kind becomes an HTTP status."""

STATUS_KIND: dict[int, ErrorKind] = {status: kind for kind, status in KIND_STATUS.items()}


class ApiError(HaltguardError):
    """A refusal a route states by its HTTP status (``ApiError(404, "runbook_not_found",
    ...)``): a :class:`HaltguardError` of the kind that status stands for, so the one handler
    renders it. ``details`` become fields of the body beside ``code`` and ``message``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **details: object,
    ) -> None:
        kind = STATUS_KIND.get(status)
        if kind is None:
            raise ValueError(f"no error kind answers HTTP {status}; use one of "
                             f"{sorted(STATUS_KIND)}")
        super().__init__(message, kind=kind, code=code, headers=headers, details=details)
        self.status = status


def error_body(error: HaltguardError) -> dict[str, Any]:
    """The body of ``error``'s answer: ``code`` and ``message`` always, the rest if set."""
    detail: dict[str, Any] = {"code": error.code, "message": error.message, **error.details}
    if error.next_step is not None:
        detail["next_step"] = error.next_step
    if error.message_ja is not None:
        detail["message_ja"] = error.message_ja
    return {"error": detail}


def response_for(error: HaltguardError) -> JSONResponse:
    """The answer to a raised :class:`HaltguardError`: its kind's status, body and headers."""
    return JSONResponse(
        error_body(error), status_code=KIND_STATUS[error.kind], headers=error.headers
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HaltguardError)
    return response_for(exc)


def install_domain_error_handler(app: FastAPI) -> None:
    """Answer every :class:`HaltguardError` raised in ``app`` with its status and body."""
    app.add_exception_handler(HaltguardError, _domain_error)


def _status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _validation_message(problems: Sequence[Any]) -> str:
    parts = []
    for error in problems[:10]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts) + ". Fix these fields and send it again."


def _route_error(status: int, detail: str) -> tuple[str, str]:
    return _status_code_name(status), detail


@dataclass(frozen=True)
class FrameworkErrorTexts:
    """How an app words the framework's own refusals, in the one body shape:
    ``invalid_request`` gets a request's validation problems (``RequestValidationError
    .errors()``) and says what to fix (code ``invalid_request``, 422); ``route_error`` gets
    the status and detail of an unknown route or a wrong method and gives code and message."""

    invalid_request: Callable[[Sequence[Any]], str] = _validation_message
    route_error: Callable[[int, str], tuple[str, str]] = _route_error


OPERATIONS_TEXTS = FrameworkErrorTexts()


def install_framework_error_handlers(
    app: FastAPI, texts: FrameworkErrorTexts = OPERATIONS_TEXTS
) -> None:
    """Answer the framework's own refusals (validation, unknown route, wrong method) in the
    one body shape, worded by ``texts``."""

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", texts.invalid_request(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = texts.route_error(exc.status_code, str(exc.detail))
        return error_response(
            exc.status_code, code, message,
            headers=dict(exc.headers) if exc.headers else None,
        )


def install_error_handlers(app: FastAPI) -> None:
    """The operations service's handlers: domain errors, the venue's refusals, validation
    and the framework's own (unknown route, wrong method)."""
    install_domain_error_handler(app)
    install_framework_error_handlers(app)

    @app.exception_handler(VenueControlError)
    async def venue_error(_: Request, exc: VenueControlError) -> JSONResponse:
        return error_response(
            502, "venue_error", f"the venue did not take the command: {exc}. Check the venue "
            "is running, then retry."
        )
