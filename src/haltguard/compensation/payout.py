"""Paying an approved compensation run into the venue, exactly once, resumably.

The venue makes a payout exactly-once, not this module: each line travels with its (run id,
line number), the venue journals the credit with that reference and refuses the reference
for ever after with ``already_credited``. A retried batch, a payout restarted after a crash
(of the venue or of the caller) or a second ``pay`` of the same run therefore pays nobody
twice, and :func:`pay` counts ``already_credited`` as paid, never as an error.

So that a restart does not send a million lines again, :func:`pay` first asks the venue which
lines of each run it has credited (``credited_line_ranges``, a handful of ranges) and skips
them. Lines go in batches of at most ``batch_lines_max`` (capped by the venue's
``COMPENSATION_LINES_MAX``), one journaled command per batch. A venue error (unreachable,
restarting, overloaded) stops the payout at once with what was confirmed paid so far; the
batch in flight may or may not have been credited, which the next ``pay`` reads from the
venue. Amounts are integers in the asset's minor units throughout.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from haltguard.venue.commands import COMPENSATION_LINES_MAX, CompensationLine
from haltguard.venue.control import (
    ALREADY_CREDITED,
    CREDITED,
    CreditOutcome,
    VenueControl,
    VenueControlError,
)

PAYOUT_ACTOR_DEFAULT = "compensation"
REFUSED_KEPT_MAX = 1_000
"""How many refused lines a report lists (all are counted): enough to fix a bad run, bounded
for a run where every line is refused."""


class PayoutLine(NamedTuple):
    """One line of an approved run, as the venue is to credit it."""

    run_id: int
    line_no: int
    account: int
    asset: str
    amount_minor: int


class RefusedLine(NamedTuple):
    """A line the venue would not credit, and why (``unknown_asset``, ``invalid_amount`` ...)."""

    run_id: int
    line_no: int
    reason: str
    detail: str


@dataclass
class PayoutReport:
    """How far a payout got. ``lines_paid`` counts every line that is paid now, whether this
    call credited it or an earlier attempt did; ``amounts_paid_minor`` sums those per asset."""

    lines_seen: int = 0
    lines_credited: int = 0  # credited by this call
    lines_already_credited: int = 0  # paid before: skipped after reading the venue, or refused so
    lines_refused: int = 0  # not credited for another reason: the run needs fixing
    refused: list[RefusedLine] = field(default_factory=list)  # the first REFUSED_KEPT_MAX
    amounts_paid_minor: dict[str, int] = field(default_factory=dict)
    batches_sent: int = 0
    error: str = ""  # the venue error that stopped the payout; empty if it ran to the end

    @property
    def lines_paid(self) -> int:
        return self.lines_credited + self.lines_already_credited

    @property
    def complete(self) -> bool:
        """Every line seen is paid and nothing stopped the payout."""
        return not self.error and self.lines_paid == self.lines_seen


class _CreditedLines:
    """A run's credited line numbers as the venue reported them: sorted inclusive ranges."""

    __slots__ = ("firsts", "lasts")

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        ordered = sorted(ranges)
        self.firsts = [first for first, _ in ordered]
        self.lasts = [last for _, last in ordered]

    def __contains__(self, line_no: int) -> bool:
        index = bisect_right(self.firsts, line_no) - 1
        return index >= 0 and line_no <= self.lasts[index]


def pay(
    lines: Iterable[PayoutLine],
    venue: VenueControl,
    *,
    batch_lines_max: int,
    on_progress: Callable[[PayoutReport], None] | None = None,
    actor: str = PAYOUT_ACTOR_DEFAULT,
    reason: str = "",
) -> PayoutReport:
    """Credit every line not yet credited; return how far it got (see the module docstring).

    ``lines`` is read once, lazily, so a run of a million lines need not be in memory.
    ``on_progress`` gets the report after each batch (and once the lines are exhausted).
    Raises ``ValueError`` for a ``batch_lines_max`` below 1; everything the venue says is
    in the report.
    """
    if batch_lines_max < 1:
        raise ValueError(f"batch_lines_max must be at least 1, not {batch_lines_max}")
    batch_max = min(batch_lines_max, COMPENSATION_LINES_MAX)
    report = PayoutReport()
    credited_before: dict[int, _CreditedLines] = {}
    batch: list[PayoutLine] = []
    try:
        for line in lines:
            report.lines_seen += 1
            known = credited_before.get(line.run_id)
            if known is None:
                known = credited_before[line.run_id] = _CreditedLines(
                    venue.credited_line_ranges(line.run_id)
                )
            if line.line_no in known:
                report.lines_already_credited += 1
                _add_paid(report, line)
                continue
            batch.append(line)
            if len(batch) >= batch_max:
                _send(batch, venue, report, actor, reason)
                batch = []
                if on_progress is not None:
                    on_progress(report)
        if batch:
            _send(batch, venue, report, actor, reason)
    except VenueControlError as exc:
        report.error = str(exc)
    if on_progress is not None:
        on_progress(report)
    return report


def _send(
    batch: list[PayoutLine], venue: VenueControl, report: PayoutReport, actor: str, reason: str
) -> None:
    """One journaled credit for ``batch``; its outcomes counted into ``report``."""
    outcomes = venue.credit_compensation(
        [CompensationLine(x.account, x.asset, x.amount_minor, x.run_id, x.line_no) for x in batch],
        actor=actor, reason=reason,
    )
    report.batches_sent += 1
    if [(o.run_id, o.line_no) for o in outcomes] != [(x.run_id, x.line_no) for x in batch]:
        raise VenueControlError(
            "the venue answered for other compensation lines than those sent; stop and check "
            "the venue's journal before paying again"
        )
    for line, outcome in zip(batch, outcomes, strict=True):
        _count(line, outcome, report)


def _count(line: PayoutLine, outcome: CreditOutcome, report: PayoutReport) -> None:
    if outcome.outcome == CREDITED:
        report.lines_credited += 1
        _add_paid(report, line)
    elif outcome.outcome == ALREADY_CREDITED:
        report.lines_already_credited += 1
        _add_paid(report, line)
    else:
        report.lines_refused += 1
        if len(report.refused) < REFUSED_KEPT_MAX:
            report.refused.append(
                RefusedLine(line.run_id, line.line_no, outcome.outcome, outcome.detail)
            )


def _add_paid(report: PayoutReport, line: PayoutLine) -> None:
    amounts = report.amounts_paid_minor
    amounts[line.asset] = amounts.get(line.asset, 0) + line.amount_minor
