"""The one door through which the rest of haltguard works the venue's brakes.

The operations service calls this protocol; the gateway provides an in-process adapter (the
venue running in this process) and an HTTP adapter (a venue running elsewhere). Every call is
journaled by the venue with the actor, the reason and the incident id, and returns the events
it caused so the caller can put them in the incident timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol, runtime_checkable

import msgspec

from haltguard.venue.commands import (
    AdjustTrade,
    BustTrade,
    CompensationLine,
    ResumePhase,
    RollbackTo,
)
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


TradeCorrection = BustTrade | AdjustTrade | RollbackTo


class CorrectionCursor(msgspec.Struct, frozen=True):
    """Where the venue stands for a correction plan: its last seq, the id its next trade
    gets, and how many corrections it applied (a rollback names the last two it saw)."""

    last_seq: int
    next_trade_id: int
    corrections_applied: int


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

    def freeze_account_withdrawals(
        self, account: int, frozen: bool, *, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]:
        """Freeze (or unfreeze) every withdrawal of one customer account, journaled like
        the asset-wide freeze; the other accounts keep withdrawing."""
        ...

    def withdraw(
        self, account: int, asset: str, amount_minor: int, *, destination: str, reference: str
    ) -> list[Event]:
        """Debit a customer's withdrawal the operations side approved (the customer's own
        checks, second factor and address hold, are done before this is called); the
        venue still refuses a frozen asset or account and an amount above the available."""
        ...

    def correct_trades(self, command: TradeCorrection) -> list[Event]:
        """Apply one bust, re-pricing or rollback as a journaled command; its events, or
        :class:`VenueControlError` with the venue's reason when it refused."""
        ...

    def correction_cursor(self) -> CorrectionCursor:
        """The venue's last seq, next trade id and count of corrections applied."""
        ...


class VenueHealth(msgspec.Struct, frozen=True):
    """Whether the venue answers and takes commands now, and how far its sequence went."""

    reachable: bool
    taking_commands: bool
    last_seq: int
    detail: str = ""


FEED_KINDS: Final = frozenset({
    "order_accepted", "order_refused", "order_cancelled", "trade", "state_changed",
    "kill_switch", "withdrawals", "other",
})
"""What a feed event is about, in the contract's words, whatever the venue calls it."""


class FeedEvent(msgspec.Struct, frozen=True):
    """One event of the venue's feed. ``seq`` is the venue's own, strictly increasing
    position (for haltguard's venue, the journaled command's seq, with ``index`` numbering
    that command's events); ``kind`` is one of :data:`FEED_KINDS`; ``data`` is the event as
    the venue wrote it."""

    seq: int
    index: int
    kind: str
    market: str
    data: dict[str, Any]

    @property
    def position(self) -> tuple[int, int]:
        return (self.seq, self.index)


class EventPage(msgspec.Struct, frozen=True):
    """Events after a cursor, in order; ``cursor`` is where the next read resumes (every
    event at or before it was delivered, none after)."""

    events: list[FeedEvent]
    cursor: int


@runtime_checkable
class VenueObservation(Protocol):
    """The reading half of the contract: health and the event feed with resume."""

    def health(self) -> VenueHealth: ...

    def read_events(self, after_seq: int, limit: int) -> EventPage:
        """Events whose seq is after ``after_seq``, at most about ``limit`` of them (a venue
        may finish the command it is in), oldest first. Reading again from the returned
        cursor after any disconnect gives neither a gap nor a duplicate."""
        ...


class VenueContract(VenueControl, VenueObservation, Protocol):
    """The whole contract an operations feature may rely on: the brakes and the readings."""
