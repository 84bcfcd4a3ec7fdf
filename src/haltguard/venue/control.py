"""The one door through which the rest of haltguard works the venue's brakes.

The operations service calls this protocol; the gateway provides an in-process adapter (the
venue running in this process) and an HTTP adapter (a venue running elsewhere). Every call is
journaled by the venue with the actor, the reason and the incident id, and returns the events
it caused so the caller can put them in the incident timeline.
"""

from __future__ import annotations

from typing import Protocol

from haltguard.venue.commands import ResumePhase
from haltguard.venue.events import Event
from haltguard.venue.types import MarketState


class VenueControlError(RuntimeError):
    """The venue refused or could not take the command; the message says why and what next."""


class VenueControl(Protocol):
    def market_states(self) -> dict[str, MarketState]: ...

    def set_market_state(
        self,
        market: str,
        state: MarketState,
        *,
        actor: str,
        reason: str,
        incident_id: str = "",
        cancels_allowed: bool = True,
        auction_ns: int = 0,
    ) -> list[Event]: ...

    def kill_switch(
        self, engaged: bool, *, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]: ...

    def freeze_withdrawals(
        self, asset: str, frozen: bool, *, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]: ...

    def start_resume_plan(
        self,
        market: str,
        phases: list[ResumePhase],
        *,
        actor: str,
        reason: str,
        incident_id: str = "",
    ) -> list[Event]: ...

    def cancel_all(
        self, *, market: str = "", account: int = 0, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]: ...
