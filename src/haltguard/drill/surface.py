"""What a drill may touch of the running system: :class:`DrillSurface`.

A drill injects a fault and then observes and plays the people the manual asks for. It does
both through this surface and nothing else: the addresses the system answers on, the
:class:`~haltguard.venue.control.VenueControl` the operators' protective actions go through,
a unit of work on the operations database (the domains' ``service.py`` functions run on it),
the settings the drills read, and the few hooks a fault needs (the supervised venue process
to kill, the gateway's load guard, the detection service, the database engine to cut off).

``haltguard serve``'s :class:`~haltguard.app.system.System` implements it structurally; the
drill package never imports ``haltguard.app``, so the dependency points one way (app → drill).
Every member is typed and always present: where a system has no such part (no supervised
venue, no detection), the member is ``None`` and the scenario says what it needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.session import session_scope

if TYPE_CHECKING:
    from haltguard.common.clock import Clock
    from haltguard.detection.service import DetectionService
    from haltguard.detection.signals import Signal
    from haltguard.drill.scenario import Targets
    from haltguard.gateway.shedding import LoadGuard
    from haltguard.responders.settings import ResponderSettings
    from haltguard.security.throttle import LoginThrottle
    from haltguard.status.settings import StatusSettings
    from haltguard.venue.control import VenueControl


class SupervisedVenue(Protocol):
    """The venue as a supervised child process: what ``server-down`` kills and waits for."""

    @property
    def restarts(self) -> int:
        """Unasked exits the supervisor restarted the venue after, so far."""
        ...

    @property
    def pid(self) -> int | None:
        """The running child's process id (``None`` while none runs)."""
        ...

    @property
    def running(self) -> bool: ...

    def kill(self, sig: int) -> None:
        """Send ``sig`` to the child, as a crash would; the supervisor restarts it."""
        ...

    def wait_ready(self, timeout_s: float) -> None:
        """Return once the current child answers; TimeoutError with the reason otherwise."""
        ...


class DrillSurface(Protocol):
    """Everything a drill scenario, the drill runner and ``/api/drills`` use of a system."""

    # -- where it answers ------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The operations service (``/api``, ``/status``); "" until it is served."""
        ...

    @property
    def venue_api_url(self) -> str:
        """Where ``{venue_api_url}/v1/...`` answers; "" until it is served."""
        ...

    @property
    def venue_admin_token(self) -> str: ...

    @property
    def remote_venue_url(self) -> str:
        """The venue's address when it runs on another machine ("" when it runs here, on
        :attr:`data_dir`): a drill reads the journal only where it can."""
        ...

    # -- the venue and the operations side -------------------------------------------------

    @property
    def venue_control(self) -> VenueControl: ...

    @property
    def session_factory(self) -> sessionmaker[Session]:
        """Sessions on the operations database; the domains' services run on them."""
        ...

    @property
    def clock(self) -> Clock: ...

    @property
    def database_engine(self) -> Engine:
        """The operations database's engine (``database-down`` makes it unreachable)."""
        ...

    @property
    def detection(self) -> DetectionService | None: ...

    @property
    def load_guard(self) -> LoadGuard[Signal] | None:
        """Load shedding and the request-flood limiter in front of the venue, where this
        process runs them."""
        ...

    @property
    def login_throttle(self) -> LoginThrottle | None:
        """The operations service's login throttle (its blocks), where this process runs it."""
        ...

    @property
    def supervisor(self) -> SupervisedVenue | None: ...

    # -- settings --------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The system's data directory: the venue's journal when it runs here, and where the
        drills' reports go."""
        ...

    @property
    def order_capacity_per_s(self) -> int: ...

    @property
    def demo_rate_per_s(self) -> float: ...

    @property
    def responder_settings(self) -> ResponderSettings: ...

    @property
    def status_settings(self) -> StatusSettings: ...

    @property
    def drill_targets(self) -> Targets: ...

    @property
    def drills_enabled(self) -> bool: ...

    @property
    def drill_token(self) -> str: ...


@contextmanager
def database(surface: DrillSurface) -> Iterator[Session]:
    """One unit of work on the operations database."""
    with session_scope(surface.session_factory) as session:
        yield session
