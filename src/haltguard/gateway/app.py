"""The venue's HTTP API: a FastAPI app over one :class:`VenueRuntime`.

Every error is ``{"error": {"code": ..., "message": ...}}``: a machine-readable code and a
message a person can act on. A full input queue is ``503`` with ``Retry-After``; a request
that fails validation is ``422`` with the field named. The OpenAPI document at
``/openapi.json`` (browsable at ``/docs``) is generated from the routes in ``views.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from haltguard.gateway.context import VenueApiContext, attach_venue_context
from haltguard.gateway.event_log import EventLog
from haltguard.gateway.event_views import events_router
from haltguard.gateway.limits import SheddingSettings
from haltguard.gateway.load_signals import LoadSignals
from haltguard.gateway.runtime import (
    VenueRuntime,
)
from haltguard.gateway.shedding import install_load_shedding
from haltguard.gateway.views import admin_router, public_router
from haltguard.web.asgi import BodyLimitMiddleware, BodyLimits
from haltguard.web.errors import (
    FrameworkErrorTexts,
    install_domain_error_handler,
    install_framework_error_handlers,
)

VENUE_BODY_BYTES_MAX = 16_384
"""The largest request body the venue takes: an order, an admin command (a resume plan with
its phases, a breaker's bands) is a few hundred bytes."""
COMPENSATION_BODY_BYTES_MAX = 1 << 20
"""A batch of compensation credits (up to COMPENSATION_LINES_MAX lines of ~100 bytes) is the
one admin body larger than that."""
VENUE_BODY_ROUTES = (("/v1/admin/compensation/credits", COMPENSATION_BODY_BYTES_MAX),)
VENUE_BODY_LIMITS = BodyLimits(bytes_max=VENUE_BODY_BYTES_MAX, routes=VENUE_BODY_ROUTES)


def venue_body_limits(receive_s_max: float) -> BodyLimits:
    """The venue API's body limits with the configured time a body may take to arrive."""
    return BodyLimits(
        bytes_max=VENUE_BODY_BYTES_MAX, receive_s_max=receive_s_max, routes=VENUE_BODY_ROUTES
    )


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def create_venue_api(
    runtime: VenueRuntime,
    admin_token: str,
    *,
    load_signals: LoadSignals[Any] | None,
    load_shedding: SheddingSettings | None = None,
    body_limits: BodyLimits = VENUE_BODY_LIMITS,
) -> FastAPI:
    """The HTTP API for ``runtime``. Admin routes need ``Authorization: Bearer <admin_token>``;
    an empty token disables them (every admin call then answers 403). New orders pass the
    load shedder (``load_shedding``, defaults if None) and ``/metrics`` serves Prometheus.
    ``load_signals`` is what detection plugs in (the load detector, the request-flood
    limiter, where their signals go); None sheds load without raising signals or limiting
    clients. ``haltguard.app.venue_app.create_venue_app`` is this with detection's.
    Every request body, orders' too, is read whole within ``body_limits`` before anything
    else looks at it (``413`` / ``408`` otherwise)."""
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
    app.include_router(public_router)
    app.include_router(admin_router)
    app.include_router(events_router)
    _install_error_handlers(app)
    guard, http_metrics = install_load_shedding(app, runtime.status, load_shedding,
                                                signals=load_signals,
                                                queue_depth=runtime.queue_depth)
    attach_venue_context(app, VenueApiContext(runtime, admin_token, guard, http_metrics,
                                              event_log=EventLog(runtime)))
    app.add_middleware(BodyLimitMiddleware, limits=body_limits)  # outermost: before shedding
    return app


def _install_error_handlers(app: FastAPI) -> None:
    # ApiError, the runtime's refusals (overloaded, invalid_command, command_quarantined,
    # venue_unavailable) and every other HaltguardError
    install_domain_error_handler(app)
    install_framework_error_handlers(app, VENUE_FRAMEWORK_TEXTS)


def _venue_invalid_request(problems: Sequence[Any]) -> str:
    named = [
        f"{'.'.join(str(part) for part in error['loc'] if part != 'body')}: {error['msg']}"
        for error in problems
    ]
    return ("the request is not valid: " + "; ".join(named)
            + ". Fix these fields and send it again (see /docs for the schema).")


def _venue_route_error(status: int, detail: str) -> tuple[str, str]:
    if status == 404:
        return "not_found", "no such route; see /docs for the venue API"
    return f"http_{status}", detail


VENUE_FRAMEWORK_TEXTS = FrameworkErrorTexts(
    invalid_request=_venue_invalid_request, route_error=_venue_route_error
)
