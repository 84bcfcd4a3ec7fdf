"""``VenueApiContext``: what the venue API's routes are given, put on the app once.

``create_venue_api`` builds it (the runtime, the admin token, the load guard in front of the
orders) and attaches it; routes read it through :func:`venue_context`, and the process that
built the app (``app/system.py``, tests) through :func:`venue_context_of`. Nothing else is
kept on ``app.state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request

from haltguard.gateway.event_log import EventLog
from haltguard.gateway.runtime import VenueRuntime
from haltguard.gateway.shedding import LoadGuard
from haltguard.web.metrics import HttpMetrics

_STATE_NAME = "venue_context"


@dataclass(frozen=True)
class VenueApiContext:
    runtime: VenueRuntime
    admin_token: str  # "" disables the admin routes
    load_guard: LoadGuard[Any]
    http_metrics: HttpMetrics
    event_log: EventLog | None = None  # the admin event feed (``/v1/admin/events``)


def attach_venue_context(app: FastAPI, venue: VenueApiContext) -> None:
    """Put ``venue`` on ``app``: the one attribute of its state the routes read."""
    setattr(app.state, _STATE_NAME, venue)


def venue_context_of(app: FastAPI) -> VenueApiContext:
    venue = getattr(app.state, _STATE_NAME, None)
    if not isinstance(venue, VenueApiContext):
        raise RuntimeError("this app has no venue context: build it with create_venue_api")
    return venue


def venue_context(request: Request) -> VenueApiContext:
    """The dependency the venue routes read their context through."""
    return venue_context_of(request.app)
