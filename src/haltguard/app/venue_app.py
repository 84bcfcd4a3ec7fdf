"""The venue's HTTP API with detection plugged into its load guard.

The gateway sheds load on its own and imports nothing of detection
(``gateway/load_signals.py``); this is where the two meet: the load detector, the
request-flood limiter and the outbox to the detection service.
"""

from __future__ import annotations

from fastapi import FastAPI

from haltguard.detection.load import venue_load_signals
from haltguard.gateway.app import VENUE_BODY_LIMITS, create_venue_api
from haltguard.gateway.limits import SheddingSettings
from haltguard.gateway.runtime import VenueRuntime
from haltguard.web.asgi import BodyLimits


def create_venue_app(
    runtime: VenueRuntime,
    admin_token: str,
    *,
    load_shedding: SheddingSettings | None = None,
    body_limits: BodyLimits = VENUE_BODY_LIMITS,
) -> FastAPI:
    """The venue API for ``runtime`` (:func:`haltguard.gateway.app.create_venue_api`) whose
    load guard raises ``load.*`` and ``security.request_flood`` signals to the detection
    service and enforces its rules' client actions once attached
    (``venue_context_of(app).load_guard.attach(service)``)."""
    settings = load_shedding or SheddingSettings()
    return create_venue_api(
        runtime, admin_token, load_signals=venue_load_signals(settings),
        load_shedding=settings, body_limits=body_limits,
    )
