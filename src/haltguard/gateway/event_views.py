"""``GET /v1/admin/events``: the venue's event feed, read with a cursor (polling).

Each event carries the seq of the command that caused it and its index among that
command's events, its kind in the venue contract's words (``feed_kind``) and the event as
the other routes render it (decimal strings on the market's grid). ``cursor`` is the
``after_seq`` of the next read.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from haltguard.gateway.context import venue_context
from haltguard.gateway.event_log import PAGE_EVENTS_MAX, feed_kind
from haltguard.gateway.views import require_admin
from haltguard.web.errors import ApiError

events_router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)]
)


@events_router.get("/events", summary="Events after a cursor, oldest first")
def read_events(
    request: Request,
    after_seq: Annotated[int, Query(ge=0, description="Resume after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_EVENTS_MAX)] = 1000,
) -> dict[str, Any]:
    context = venue_context(request)
    if context.event_log is None:
        raise ApiError(404, "no_event_feed", "this venue API was built without an event feed")
    commands, cursor = context.event_log.read(after_seq, limit)
    units = context.runtime.units()
    events: list[dict[str, Any]] = []
    for seq, command_events in commands:
        for index, event in enumerate(command_events):
            data = units.render_event(event)
            events.append({"seq": seq, "index": index, "kind": feed_kind(event),
                           "market": str(data.get("market", "")), "event": data})
    return {"events": events, "cursor": cursor,
            "last_seq": context.runtime.status().last_seq}
