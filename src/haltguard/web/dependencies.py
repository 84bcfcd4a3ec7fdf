"""What routes receive: a database session per request, the clock and the venue control."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.session import session_scope
from haltguard.venue.control import VenueControl
from haltguard.web.clock import Clock
from haltguard.web.errors import ApiError


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed before the answer is sent, rolled back on error.

    Used with ``scope="function"`` so the commit happens before the response goes out: a
    client that got 200 knows its change is durable.
    """
    factory: sessionmaker[Session] = request.app.state.session_factory
    with session_scope(factory) as session:
        yield session


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def get_venue_control(request: Request) -> VenueControl:
    venue: VenueControl | None = request.app.state.venue_control
    if venue is None:
        raise ApiError(
            503, "venue_not_connected",
            "this service has no venue connection; start it with a venue (in-process or "
            "--venue-url) to take protective actions",
        )
    return venue


def get_optional_venue(request: Request) -> VenueControl | None:
    """The venue control where one is connected; routes that can work without it ask this."""
    venue: VenueControl | None = request.app.state.venue_control
    return venue


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ClockDep = Annotated[Clock, Depends(get_clock)]
VenueDep = Annotated[VenueControl, Depends(get_venue_control)]
