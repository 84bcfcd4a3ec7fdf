"""The venue's HTTP API: a FastAPI app over one :class:`VenueRuntime`.

Every error is ``{"error": {"code": ..., "message": ...}}``: a machine-readable code and a
message a person can act on. A full input queue is ``503`` with ``Retry-After``; a request
that fails validation is ``422`` with the field named. The OpenAPI document at
``/openapi.json`` (browsable at ``/docs``) is generated from the routes in ``views.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from haltguard.detection.load import SheddingSettings, install_load_shedding
from haltguard.gateway.runtime import (
    CommandQuarantinedError,
    CommandRefusedError,
    OverloadedError,
    VenueRuntime,
    VenueUnavailableError,
)
from haltguard.gateway.views import ApiError, admin_router, public_router


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def create_venue_app(
    runtime: VenueRuntime, admin_token: str, *, load_shedding: SheddingSettings | None = None
) -> FastAPI:
    """The HTTP API for ``runtime``. Admin routes need ``Authorization: Bearer <admin_token>``;
    an empty token disables them (every admin call then answers 403). New orders pass the
    load shedder (``load_shedding``, defaults if None) and ``/metrics`` serves Prometheus."""
    app = FastAPI(
        title="haltguard venue",
        summary="Orders, cancels, balances, depth, trades and market states of one venue.",
        description=(
            "Prices, quantities and amounts are decimal strings on a market's grid; off-grid "
            "values are refused, never rounded. Customer authentication is out of scope for "
            "the venue API: requests name their `account`, and the exchange's own gateway in "
            "front of the venue checks the caller owns it. Admin routes (`/v1/admin/...`) "
            "require `Authorization: Bearer <token>`."
        ),
        version="1",
    )
    app.state.runtime = runtime
    app.state.admin_token = admin_token
    app.include_router(public_router)
    app.include_router(admin_router)
    _install_error_handlers(app)
    install_load_shedding(app, runtime.status, load_shedding)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, **exc.extra),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(OverloadedError)
    async def overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
        return JSONResponse(
            error_body("overloaded", str(exc)),
            status_code=503,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    @app.exception_handler(CommandRefusedError)
    async def refused(_: Request, exc: CommandRefusedError) -> JSONResponse:
        return JSONResponse(
            error_body("invalid_command", f"{exc}. Fix the request and send it again."),
            status_code=422,
        )

    @app.exception_handler(CommandQuarantinedError)
    async def quarantined(_: Request, exc: CommandQuarantinedError) -> JSONResponse:
        return JSONResponse(error_body("command_quarantined", str(exc)), status_code=500)

    @app.exception_handler(VenueUnavailableError)
    async def unavailable(_: Request, exc: VenueUnavailableError) -> JSONResponse:
        return JSONResponse(error_body("venue_unavailable", str(exc)), status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(part) for part in error['loc'] if part != 'body')}: {error['msg']}"
            for error in exc.errors()
        ]
        return JSONResponse(
            error_body(
                "invalid_request",
                "the request is not valid: " + "; ".join(problems)
                + ". Fix these fields and send it again (see /docs for the schema).",
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        message = (
            "no such route; see /docs for the venue API"
            if exc.status_code == 404
            else str(exc.detail)
        )
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=exc.headers
        )
