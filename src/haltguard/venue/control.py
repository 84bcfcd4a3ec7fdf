"""The one door through which the rest of haltguard works the venue's brakes.

The operations service calls this protocol; the gateway provides an in-process adapter (the
venue running in this process) and an HTTP adapter (a venue running elsewhere). Every call is
journaled by the venue with the actor, the reason and the incident id, and returns the events
it caused so the caller can put them in the incident timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import msgspec

from haltguard.venue.commands import CompensationLine, ResumePhase
from haltguard.venue.events import (
    CommandRejected,
    CompensationCredited,
    CompensationRefused,
    Event,
)
from haltguard.venue.types import MarketState, RejectReason


class VenueControlError(RuntimeError):
    """The venue refused or could not take the command; the message says why and what next."""


CREDITED: Final = "credited"
ALREADY_CREDITED: Final = RejectReason.ALREADY_CREDITED.value


class CreditOutcome(msgspec.Struct, frozen=True):
    """What the venue did with one compensation line: ``outcome`` is ``credited`` or the
    venue's reason for not crediting it now (``already_credited``, ``unknown_asset``,
    ``invalid_amount``, ``invalid_account``, ``invalid_reference``)."""

    run_id: int
    line_no: int
    outcome: str
    detail: str = ""

    @property
    def paid(self) -> bool:
        """Credited by this call or an earlier one: either way the line must not be sent
        again."""
        return self.outcome in (CREDITED, ALREADY_CREDITED)


def credit_outcomes(events: Sequence[Event], lines_count: int) -> list[CreditOutcome]:
    """Each line's outcome, in the order sent, from a ``CreditCompensation``'s events;
    :class:`VenueControlError` if the venue refused the command as a whole."""
    outcomes: list[CreditOutcome] = []
    for event in events:
        if type(event) is CompensationCredited:
            outcomes.append(CreditOutcome(event.run_id, event.line_no, CREDITED))
        elif type(event) is CompensationRefused:
            outcomes.append(
                CreditOutcome(event.run_id, event.line_no, event.reason.value, event.detail)
            )
        elif type(event) is CommandRejected:
            raise VenueControlError(f"{event.reason.value}: {event.detail}")
    if len(outcomes) != lines_count:
        raise VenueControlError(
            f"the venue answered {len(outcomes)} outcomes for {lines_count} compensation "
            "lines; check what it credited (credited_line_ranges) before sending them again"
        )
    return outcomes


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

    def credit_compensation(
        self, lines: Sequence[CompensationLine], *, actor: str, reason: str = ""
    ) -> list[CreditOutcome]:
        """Credit up to ``COMPENSATION_LINES_MAX`` lines as one journaled command; one
        outcome per line, in order. A line credited before answers ``already_credited``."""
        ...

    def credited_line_ranges(self, run_id: int) -> list[tuple[int, int]]:
        """The line numbers of ``run_id`` credited so far, as ascending inclusive ranges."""
        ...
