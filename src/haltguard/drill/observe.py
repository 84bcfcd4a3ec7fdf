"""Observing the system a drill disturbed: the venue's market states over its API, and the
operations side's record through its domains' services (incidents, detection, status,
notify), never their tables.

The figures a drill reports come from here: when the incident was detected, first halted,
first told to the public and resumed (its own timeline), which rule opened it, how many
notices went out and how many pages.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from haltguard.common.clock import utc_now
from haltguard.detection import records as decision_records
from haltguard.drill.load import HTTP_TIMEOUT_S, VenueClient
from haltguard.drill.surface import DrillSurface, database
from haltguard.drill.waiting import POLL_INTERVAL_S, DrillError, wait_for
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineEntry, TimelineKind
from haltguard.incidents.rules import Category
from haltguard.notify import service as notify
from haltguard.status import service as status
from haltguard.status.notices import notice_key
from haltguard.venue.types import MarketState

TRADING_STATES = frozenset({MarketState.OPEN, MarketState.LIMIT_ONLY, MarketState.POST_ONLY})
HALT_STATES = frozenset({MarketState.HALTED, MarketState.CANCEL_ONLY, MarketState.CLOSED})


# --- the venue's state, watched -------------------------------------------------------------

@dataclass
class MarketWatch:
    """Polls the venue's market states in the background and remembers when things changed:
    when the venue stopped answering, when it answered again, and when each market was first
    seen halted and later trading again."""

    client: VenueClient
    interval_s: float = POLL_INTERVAL_S
    down_at: datetime | None = None
    back_at: datetime | None = None
    halted_at: dict[str, datetime] = field(default_factory=dict)
    trading_again_at: dict[str, datetime] = field(default_factory=dict)
    states_after_restart: dict[str, MarketState] = field(default_factory=dict)
    last: str = "not polled yet"
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> MarketWatch:
        self._thread = threading.Thread(target=self._run, name="drill-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(HTTP_TIMEOUT_S + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)

    def poll(self) -> None:
        now = utc_now()
        try:
            states = self.client.market_states()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            self.last = f"venue not answering: {type(exc).__name__}"
            if self.down_at is None:
                self.down_at = now
            return
        if self.down_at is not None and self.back_at is None:
            self.back_at = now
            self.states_after_restart = dict(states)
        self.last = ", ".join(f"{symbol} {state.value}" for symbol, state in sorted(states.items()))
        for symbol, state in states.items():
            if state in HALT_STATES:
                self.halted_at.setdefault(symbol, now)
            elif state in TRADING_STATES and symbol in self.halted_at:
                self.trading_again_at.setdefault(symbol, now)


# --- the incident record --------------------------------------------------------------------


def incident_for(
    system: DrillSurface,
    *,
    since: datetime,
    rule_id: str | None = None,
    signal: str | None = None,
    category: Category | None = None,
    labels: dict[str, str] | None = None,
) -> int | None:
    """The incident a detection decision (by rule or signal name, and the signal's
    ``labels`` if given) opened or updated since ``since``; or, by ``category``, the first
    incident of that category detected since."""
    with database(system) as session:
        if rule_id is not None or signal is not None:
            query = decision_records.decisions_query(rule_id=rule_id)
            rows = session.scalars(query.limit(200))
            for row in sorted(rows, key=lambda r: r.id):
                if row.incident_id is None or row.decided_at < since:
                    continue
                if signal is not None and row.signal_name != signal:
                    continue
                if labels and any(row.labels.get(k) != v for k, v in labels.items()):
                    continue
                return int(row.incident_id)
        if category is not None:
            return incidents.first_detected_since(session, category, since)
    return None


def decisions_seen(system: DrillSurface, since: datetime) -> str:
    """The rules that fired since ``since``, for an error message."""
    with database(system) as session:
        rows = list(session.scalars(decision_records.decisions_query().limit(20)))
    fired = [f"{row.rule_id} ({row.signal_name}, incident {row.incident_id})"
             for row in rows if row.decided_at >= since]
    return "; ".join(fired) or "no detection decision"


@dataclass(frozen=True)
class TimelineTimes:
    """When the incident's record says each step happened."""

    detected_at: datetime | None
    first_halt_at: datetime | None
    first_public_update_at: datetime | None
    first_resume_at: datetime | None
    kinds: tuple[str, ...]
    public_update_ja: str
    public_update_en: str


HALT_ENTRY_KINDS = frozenset({"market_action", "kill_switch", "venue_event_linked", "detection"})
"""Timeline kinds that may record a halt (``detection``: automatic actions, where recorded)."""


def _halted(entry: TimelineEntry) -> bool:
    """A protective action the venue took: an operator's or a rule's halt, cancel-only or
    kill switch, or a venue event linked to the incident that stopped a market."""
    if entry.kind.value not in HALT_ENTRY_KINDS:
        return False
    details = entry.details or {}
    ok = details.get("ok")
    if ok is None:
        ok = (details.get("outcome") or {}).get("ok")
    text = entry.message.lower()
    stopped = any(word in text for word in ("halt", "cancel_only", "cancel-only", "kill switch"))
    return bool(stopped and ok is not False and "not done" not in text
                and "refused" not in text)


def timeline_times(system: DrillSurface, incident_id: int) -> TimelineTimes:
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        entries = incidents.timeline(session, incident_id)
        halts = [entry.at for entry in entries if _halted(entry)]
        updates = [entry for entry in entries if entry.kind == TimelineKind.PUBLIC_UPDATE]
        resumes = [entry.at for entry in entries
                   if entry.kind == TimelineKind.RESUME and (entry.details or {}).get("ok")]
        first_update = updates[0] if updates else None
        details = first_update.details if first_update is not None else {}
        return TimelineTimes(
            detected_at=incident.detected_at,
            first_halt_at=min(halts) if halts else None,
            first_public_update_at=first_update.at if first_update is not None else None,
            first_resume_at=min(resumes) if resumes else None,
            kinds=tuple(dict.fromkeys(entry.kind.value for entry in entries)),
            public_update_ja=str(details.get("message_ja", "")),
            public_update_en=str(details.get("message_en", "")),
        )


def first_public_update_after(system: DrillSurface, incident_id: int,
                              since: datetime) -> datetime | None:
    """When the incident's first public update (ja and en) was recorded, if it was."""
    with database(system) as session:
        return next((entry.at for entry in incidents.timeline(session, incident_id)
                     if entry.kind == TimelineKind.PUBLIC_UPDATE and entry.at >= since), None)


# --- notices and pages ------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeCounts:
    notices: int
    queued: int
    sent: int


def count_notices(system: DrillSurface, incident_id: int) -> NoticeCounts:
    """The subscriber notices of the incident's published updates and their deliveries."""
    with database(system) as session:
        updates = session.scalars(status.updates_query(incident_id=incident_id))
        keyed = notify.notices_by_key(
            session, [notice_key(update.id) for update in updates])
    deliveries = keyed.deliveries
    queued = (deliveries.pending + deliveries.sending + deliveries.sent + deliveries.failed
              + deliveries.skipped)
    return NoticeCounts(keyed.notices, queued, deliveries.sent)


def notices_delivered(system: DrillSurface, incident_id: int, timeout_s: float) -> NoticeCounts:
    """The incident's notice counts once every queued delivery was sent (or ``timeout_s``
    passed: the counts as they are then)."""
    def all_sent() -> NoticeCounts | None:
        counts = count_notices(system, incident_id)
        return counts if counts.sent >= counts.queued else None

    try:
        return wait_for(all_sent, timeout_s, "the notices to be delivered")
    except DrillError:
        return count_notices(system, incident_id)


def count_pages(system: DrillSurface, incident_id: int) -> int:
    """Timeline entries about paging the on-call (sent or failed: both are in the record)."""
    with database(system) as session:
        return sum(1 for entry in incidents.timeline(session, incident_id)
                   if entry.kind == TimelineKind.PAGE)


# --- market states ----------------------------------------------------------------------


def wait_trading(system: DrillSurface, markets: Sequence[str], timeout_s: float) -> datetime:
    """Wait until every market in ``markets`` is open again; returns when it was seen."""
    def all_open() -> datetime | None:
        states = system.venue_control.market_states()
        return utc_now() if all(states.get(m) == MarketState.OPEN for m in markets) else None

    def seen() -> str:
        states = system.venue_control.market_states()
        return ", ".join(f"{m} {states.get(m, 'unknown')}" for m in markets)

    return wait_for(all_open, timeout_s, f"{', '.join(markets)} open again", seen=seen)


def halted_markets(system: DrillSurface) -> list[str]:
    """The markets the venue reports in a state that takes no new orders."""
    return sorted(symbol for symbol, state in system.venue_control.market_states().items()
                  if state in HALT_STATES)


def rules_for_signal(system: DrillSurface, signal: str) -> list[str]:
    """The ids of the rules in force that act on ``signal`` (empty: nothing turns it into
    an incident)."""
    if system.detection is None:
        return []
    return [rule.id for rule in system.detection.rules.rules if rule.signal == signal]
