"""Every error the API returns has one shape: ``{"error": {"code": ..., "message": ...}}``.

``code`` is stable for programs; ``message`` tells a person what was wrong and what to do.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from haltguard.incidents.errors import ErrorKind, IncidentError
from haltguard.venue.control import VenueControlError


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every non-2xx answer."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
    for status in (400, 401, 403, 404, 409, 422, 502, 503)
}

KIND_STATUS = {
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.INVALID: 422,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.VENUE: 502,
}


class ApiError(Exception):
    """Raised by a route to answer with ``status`` and the standard error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts) + ". Fix these fields and send it again."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(IncidentError)
    async def incident_error(_: Request, exc: IncidentError) -> JSONResponse:
        return error_response(KIND_STATUS[exc.kind], exc.code, exc.message)

    @app.exception_handler(VenueControlError)
    async def venue_error(_: Request, exc: VenueControlError) -> JSONResponse:
        return error_response(
            502, "venue_error", f"the venue did not take the command: {exc}. Check the venue "
            "is running, then retry."
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Other domains' errors subclass HTTPException and may carry their own code/message.
        code = getattr(exc, "code", None)
        message = getattr(exc, "message", None)
        return error_response(
            exc.status_code,
            code if isinstance(code, str) else _status_code_name(exc.status_code),
            message if isinstance(message, str) else str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        )
