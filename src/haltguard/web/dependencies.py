"""What routes receive: a database session per request, the clock and the venue control, all
read from the app's one :class:`~haltguard.web.context.OperationsContext`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from haltguard.common.clock import Clock
from haltguard.db.session import session_scope
from haltguard.venue.control import VenueControl
from haltguard.web.context import OperationsContext, context
from haltguard.web.errors import ApiError

ContextDep = Annotated[OperationsContext, Depends(context)]


def get_session(operations: ContextDep) -> Iterator[Session]:
    """One transaction per request: committed before the answer is sent, rolled back on error.

    Used with ``scope="function"`` so the commit happens before the response goes out: a
    client that got 200 knows its change is durable.
    """
    with session_scope(operations.session_factory) as session:
        yield session


def get_clock(operations: ContextDep) -> Clock:
    return operations.clock


def get_venue_control(operations: ContextDep) -> VenueControl:
    venue = operations.venue_control
    if venue is None:
        raise ApiError(
            503, "venue_not_connected",
            "this service has no venue connection; start it with a venue (in-process or "
            "--venue-url) to take protective actions",
        )
    return venue


def get_optional_venue(operations: ContextDep) -> VenueControl | None:
    """The venue control where one is connected; routes that can work without it ask this."""
    return operations.venue_control


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ClockDep = Annotated[Clock, Depends(get_clock)]
VenueDep = Annotated[VenueControl, Depends(get_venue_control)]
