"""What every drill scenario needs: load, waiting, reading the record, playing the operator.

A scenario injects a fault and then only observes and plays the people the manual asks for.
These helpers do both the same way for every scenario: the order load goes over HTTP like
a customer's; the times come from the incident's own timeline; the ledger and the lost
orders are judged on a copy of the venue's journal; the resume goes through the incident
flows (four eyes after a SEV1), with the drill named as the operator in every record.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from haltguard.db.session import session_scope
from haltguard.detection import records as decision_records
from haltguard.detection.load import LoadGuard
from haltguard.drill.scenario import DRILL_ACTOR, Check, DrillContext, DrillResult
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import (
    ApprovalAction,
    Incident,
    IncidentCreate,
    IncidentUpdate,
    PostmortemWrite,
    ResumePhaseSpec,
    ResumeRequest,
    TimelineEntry,
    TimelineKind,
)
from haltguard.incidents.rules import OPEN_STATUSES, Category, IncidentStatus, Severity
from haltguard.journal import JournalReader
from haltguard.journal.segments import COMMIT_MARK_NAME, segments_dir
from haltguard.journal.snapshots import snapshots_dir
from haltguard.journal.verify import verify
from haltguard.notify.models import Delivery, DeliveryStatus, StoredNotice
from haltguard.reports import postmortem, regulatory
from haltguard.status import service as status
from haltguard.status.models import IncidentDraftRequest, StatusUpdate
from haltguard.status.rules import UpdateStatus
from haltguard.status.settings import StatusSettings
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.types import MarketState

if TYPE_CHECKING:
    from haltguard.app.system import System

log = logging.getLogger(__name__)

T = TypeVar("T")

DRILL_SECOND_ACTOR = "drill (playing the second approving operator)"
"""The four-eyes approver after a SEV1: a different name from :data:`DRILL_ACTOR`."""
DRILL_SUPPORT_ACTOR = "drill (playing customer support)"
"""Who publishes the public update when nothing did it by itself (manual 2.3)."""

POLL_INTERVAL_S = 0.05
PROGRESS_EVERY_S = 5.0  # how often a long wait says what it still waits for
NOTICE_WAIT_S = 10.0  # longest wait for queued notices to be delivered before counting
HTTP_TIMEOUT_S = 10.0
LOAD_WORKERS_DEFAULT = 4
BACKGROUND_SHARE = 0.5
BACKGROUND_RATE_PER_S_MIN = 5.0
LOAD_BACKOFF_S = 0.05  # after a refusal or a failed connection, before the next order
PRICE_OFFSET_TICKS_MAX = 20  # how far from the mid the load places its orders
TRADING_STATES = frozenset({MarketState.OPEN, MarketState.LIMIT_ONLY, MarketState.POST_ONLY})
VENUE_FILES = ("quarantine.json",)  # files beside the journal that recovery reads
HALT_STATES = frozenset({MarketState.HALTED, MarketState.CANCEL_ONLY, MarketState.CLOSED})
RESUME_PHASES_DEFAULT = (
    ResumePhaseSpec(state=MarketState.CANCEL_ONLY, min_seconds=1),
    ResumePhaseSpec(state=MarketState.AUCTION, min_seconds=1),
    ResumePhaseSpec(state=MarketState.OPEN, min_seconds=0),
)


SHED_STATUSES = frozenset({429, 503})
"""Answers of a gateway shedding load: the order was not queued, send it again later."""
SHED_WAIT_S_MAX = 30.0
SHED_RETRY_S_MAX = 2.0

class DrillError(RuntimeError):
    """A drill step that could not be done; the message says what was awaited or tried and
    what was seen instead."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def wait_for(
    predicate: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    seen: Callable[[], str] | None = None,
    interval_s: float = POLL_INTERVAL_S,
    progress: Callable[[str], None] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    An exception from the predicate counts as "not yet" (the thing watched may be down on
    purpose) and is what the error reports as last seen. With ``progress``, a line says
    every few seconds what is still awaited (a long step shows it moves). On timeout raises
    :class:`DrillError` naming ``what`` and the last thing seen.
    """
    deadline = time.monotonic() + timeout_s
    next_report = time.monotonic() + PROGRESS_EVERY_S
    last = "nothing yet"
    while True:
        try:
            value = predicate()
        except Exception as exc:  # the watched part may be down on purpose
            value = None
            last = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                return value
            if seen is not None:
                try:
                    last = seen()
                except Exception as exc:
                    last = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now >= deadline:
            raise DrillError(f"waited {timeout_s:g} s for {what}; last seen: {last}")
        if progress is not None and now >= next_report:
            progress(f"still waiting for {what}: {last}")
            next_report = now + PROGRESS_EVERY_S
        time.sleep(interval_s)


@contextmanager
def database(system: System) -> Iterator[Session]:
    """One unit of work on the operations database."""
    with session_scope(system.operations.state.session_factory) as session:
        yield session


# --- the venue over HTTP --------------------------------------------------------------------


def background_rate_per_s(system: System) -> float:
    """The pace of a drill's background customers: half of the order capacity the demo flow
    may leave, so the background alone never trips load shedding or the capacity rule."""
    spare = float(system.config.order_capacity_per_s) - float(system.config.demo_rate_per_s)
    return max(BACKGROUND_RATE_PER_S_MIN, spare * BACKGROUND_SHARE)


def venue_api_url(system: System) -> str:
    """Where the public venue API answers (``{url}/v1/...``)."""
    url = str(getattr(system, "venue_api_url", "") or getattr(system, "api_url", ""))
    if not url:
        raise DrillError(
            "the system has no venue API address (venue_api_url); the drill needs the "
            "system served over HTTP (haltguard serve, or the drill's own server)"
        )
    return url.rstrip("/")


class VenueClient:
    """The venue's public and admin HTTP API, as the drill uses it."""

    def __init__(self, base_url: str, admin_token: str = "", timeout_s: float = HTTP_TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self._admin = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}

    @classmethod
    def for_system(cls, system: System) -> VenueClient:
        return cls(venue_api_url(system), system.venue_admin_token)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> VenueClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def markets(self) -> dict[str, Any]:
        """``GET /v1/markets``: {"seq", "markets": [...]}; raises on any failure."""
        response = self._client.get("/v1/markets")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def market_states(self) -> dict[str, MarketState]:
        return {m["symbol"]: MarketState(m["state"]) for m in self.markets()["markets"]}

    def last_seq(self) -> int:
        return int(self.markets()["seq"])

    def market(self, symbol: str) -> dict[str, Any]:
        response = self._client.get(f"/v1/markets/{symbol}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def healthy(self) -> bool:
        try:
            return self._client.get("/v1/health").status_code == 200
        except httpx.HTTPError:
            return False

    def place(self, symbol: str, body: dict[str, Any]) -> httpx.Response:
        """One order, answered as the venue answers it (the background load counts refusals
        as they come)."""
        return self._client.post(f"/v1/markets/{symbol}/orders", json=body)

    def place_patiently(self, symbol: str, body: dict[str, Any], *,
                        wait_s_max: float = SHED_WAIT_S_MAX) -> httpx.Response:
        """One order from a well-behaved client: a 429 or 503 (load shed, nothing queued) is
        sent again after its ``Retry-After``, for up to ``wait_s_max`` in all. The order's
        client order id makes a repeat harmless; the last answer is returned."""
        deadline = time.monotonic() + wait_s_max
        while True:
            response = self.place(symbol, body)
            if response.status_code not in SHED_STATUSES or time.monotonic() >= deadline:
                return response
            retry_after_s = float(response.headers.get("retry-after", "1") or 1)
            time.sleep(min(retry_after_s, max(0.0, deadline - time.monotonic()),
                           SHED_RETRY_S_MAX))

    def admin_get(self, path: str) -> httpx.Response:
        return self._client.get(f"/v1/admin/{path}", headers=self._admin)

    def admin_post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._client.post(f"/v1/admin/{path}", json=body, headers=self._admin)

    def admin_delete(self, path: str) -> httpx.Response:
        return self._client.delete(f"/v1/admin/{path}", headers=self._admin)


# --- background order load ------------------------------------------------------------------


@dataclass(frozen=True)
class AcknowledgedOrder:
    """An order the venue answered 201 for: durable at ``seq`` by the venue's own promise."""

    seq: int
    order_id: int
    client_order_id: str
    market: str
    account: int


@dataclass(frozen=True)
class _MarketGrid:
    symbol: str
    tick: Decimal
    qty: str
    mid: Decimal


def _grid(client: VenueClient, spec: dict[str, Any]) -> _MarketGrid:
    symbol = str(spec["symbol"])
    tick = Decimal(str(spec["tick_size"]))
    detail = client.market(symbol)
    bid, ask = detail.get("best_bid"), detail.get("best_ask")
    mid = (Decimal(bid) + Decimal(ask)) / 2 if bid and ask else Decimal(bid or ask or "0")
    if mid <= 0:
        mid = tick * 100_000
    mid = (mid / tick).to_integral_value(rounding=ROUND_DOWN) * tick
    return _MarketGrid(symbol, tick, str(spec["min_qty"]), mid)


class OrderLoad:
    """Customer orders over HTTP in the background, remembering every acknowledged one.

    Workers place small limit orders near each market's mid until ``orders`` were
    acknowledged (or :meth:`stop`). A refusal (halted market, overload) or a dropped
    connection is counted and followed by a short pause, never retried with a new id, so
    the acknowledged list is exactly what the venue promised to keep.
    """

    def __init__(
        self,
        base_url: str,
        *,
        orders: int,
        accounts: int = 50,
        markets: Sequence[str] | None = None,
        workers: int = LOAD_WORKERS_DEFAULT,
        prefix: str = "drill",
        seed: int = 7,
        rate_per_s: float = 0.0,
    ) -> None:
        if orders < 1:
            raise ValueError("the order load needs at least one order")
        if rate_per_s < 0:
            raise ValueError(f"rate_per_s must be 0 (unpaced) or more, got {rate_per_s}")
        self.rate_per_s = rate_per_s
        self._next_send = 0.0
        self.base_url = base_url
        self.orders = orders
        self.accounts = accounts
        self.workers = workers
        self.prefix = f"{prefix}-{int(time.time()) % 100_000}"
        self._wanted_markets = list(markets) if markets else None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._acknowledged: list[AcknowledgedOrder] = []
        self.refused: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._grids: list[_MarketGrid] = []

    # -- control ---------------------------------------------------------------------------

    def start(self) -> OrderLoad:
        with VenueClient(self.base_url) as client:
            specs = [m for m in client.markets()["markets"]
                     if self._wanted_markets is None or m["symbol"] in self._wanted_markets]
            if not specs:
                raise DrillError(f"the venue at {self.base_url} lists no market to load")
            self._grids = [_grid(client, spec) for spec in specs]
        self._threads = [threading.Thread(target=self._work, name=f"drill-load-{index}",
                                          daemon=True) for index in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(HTTP_TIMEOUT_S + 1)

    def wait_done(self, timeout_s: float, progress: Callable[[str], None] | None = None) -> None:
        """Wait until the wanted number of orders were acknowledged; raises DrillError."""
        wait_for(lambda: self.done, timeout_s,
                 f"{self.orders} acknowledged orders from the load", seen=self.describe,
                 progress=progress)

    @property
    def done(self) -> bool:
        return len(self._acknowledged) >= self.orders

    @property
    def acknowledged(self) -> list[AcknowledgedOrder]:
        with self._lock:
            return list(self._acknowledged)

    @property
    def acknowledged_count(self) -> int:
        return len(self._acknowledged)

    def describe(self) -> str:
        refused = ", ".join(f"{code} {n}" for code, n in self.refused.most_common(4))
        failed = ", ".join(f"{code} {n}" for code, n in self.failed.most_common(3))
        return (f"{self.acknowledged_count}/{self.orders} acknowledged"
                + (f"; refused: {refused}" if refused else "")
                + (f"; failed: {failed}" if failed else ""))

    # -- the workers -----------------------------------------------------------------------

    def _next_order(self) -> tuple[str, dict[str, Any]]:
        with self._lock:
            number = next(self._numbers)
            grid = self._rng.choice(self._grids)
            side = self._rng.choice(("buy", "sell"))
            offset = self._rng.randint(-2, PRICE_OFFSET_TICKS_MAX)
            account = self._rng.randint(1, self.accounts)
        sign = -1 if side == "buy" else 1
        price = grid.mid + sign * offset * grid.tick
        if price <= 0:
            price = grid.tick
        return grid.symbol, {
            "account": account, "side": side, "qty": grid.qty, "price": str(price),
            "client_order_id": f"{self.prefix}-{number}",
        }

    def _work(self) -> None:
        with VenueClient(self.base_url) as client:
            while not self._stop.is_set() and not self.done:
                self._wait_for_slot()
                symbol, body = self._next_order()
                started = time.perf_counter()
                try:
                    response = client.place(symbol, body)
                except httpx.HTTPError as exc:
                    self._count(self.failed, type(exc).__name__)
                    self._stop.wait(LOAD_BACKOFF_S)
                    continue
                if response.status_code == 201:
                    self._record(response.json(), symbol, body, started)
                    continue
                self._count(self.refused if response.status_code < 500 else self.failed,
                            _error_code(response))
                self._stop.wait(LOAD_BACKOFF_S)

    def _wait_for_slot(self) -> None:
        """Paced load: the workers share one schedule of ``rate_per_s`` sends a second, so
        the drill's customers stay within the venue's capacity unless a scenario means them
        not to."""
        if not self.rate_per_s:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(self._next_send, now)
            self._next_send = slot + 1.0 / self.rate_per_s
        self._stop.wait(max(0.0, slot - now))

    def _record(self, answer: dict[str, Any], symbol: str, body: dict[str, Any],
                started: float) -> None:
        order = answer.get("order") or {}
        acked = AcknowledgedOrder(
            seq=int(answer["seq"]), order_id=int(order.get("order_id") or 0),
            client_order_id=str(body["client_order_id"]), market=symbol,
            account=int(body["account"]),
        )
        with self._lock:
            if len(self._acknowledged) < self.orders:
                self._acknowledged.append(acked)
            self.latencies_ms.append((time.perf_counter() - started) * 1000)

    def _count(self, counter: Counter[str], key: str) -> None:
        with self._lock:
            counter[key] += 1


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except Exception:
        return f"http_{response.status_code}"


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
    system: System,
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
            found = session.scalar(
                select(Incident.id)
                .where(Incident.category == category, Incident.detected_at >= since)
                .order_by(Incident.id)
                .limit(1)
            )
            return None if found is None else int(found)
    return None


def decisions_seen(system: System, since: datetime) -> str:
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


def timeline_times(system: System, incident_id: int) -> TimelineTimes:
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


def note_on_incident(system: System, incident_id: int, text: str) -> None:
    """A comment from the drill, so the record says what the drill did and why."""
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        if incident.status != IncidentStatus.CLOSED:
            incidents.comment(session, incident, text, actor=DRILL_ACTOR, now=utc_now())


def take_incident(system: System, incident_id: int, *, started_at: datetime, cause: str) -> None:
    """Play the incident commander's first minutes: record when the impact started (the
    drill knows: it caused it) and the cause, and move the incident to ``identified``."""
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        if incident.status not in OPEN_STATUSES:
            return
        now = utc_now()
        started = min(started_at, incident.detected_at)
        incidents.update(session, incident, IncidentUpdate(started_at=started, cause=cause),
                         actor=DRILL_ACTOR, now=now)
        if incident.status in {IncidentStatus.DETECTED, IncidentStatus.INVESTIGATING}:
            incidents.transition(session, incident, IncidentStatus.IDENTIFIED, actor=DRILL_ACTOR,
                                 now=now, note="drill: cause known, it was injected")


# --- public updates -------------------------------------------------------------------------


def status_settings(system: System) -> StatusSettings:
    settings = getattr(system.operations.state, "status_settings", None)
    return settings if isinstance(settings, StatusSettings) else StatusSettings()


def first_public_update_after(system: System, incident_id: int, since: datetime) -> datetime | None:
    """When the incident's first public update (ja and en) was recorded, if it was."""
    with database(system) as session:
        entry = session.scalar(
            select(TimelineEntry)
            .where(TimelineEntry.incident_id == incident_id,
                   TimelineEntry.kind == TimelineKind.PUBLIC_UPDATE, TimelineEntry.at >= since)
            .order_by(TimelineEntry.id)
            .limit(1)
        )
        return None if entry is None else entry.at


def publish_update(
    system: System, incident_id: int, update_status: UpdateStatus, *,
    cause_ja: str | None = None, cause_en: str | None = None,
) -> int:
    """Draft the incident's public update from the status page's bilingual template and
    publish it, as the drill playing customer support; returns the update's id."""
    settings = status_settings(system)
    with database(system) as session:
        now = utc_now()
        draft = status.draft_incident_update(
            session, incident_id,
            IncidentDraftRequest(status=update_status, cause_ja=cause_ja, cause_en=cause_en),
            actor=DRILL_SUPPORT_ACTOR, now=now, settings=settings,
        )
        published = status.publish(session, draft.id, actor=DRILL_SUPPORT_ACTOR, now=now,
                                   settings=settings)
        return int(published.id)


def ensure_public_update(
    system: System, incident_id: int, *, grace_s: float, cause_ja: str, cause_en: str,
    notes: list[str] | None = None, note: Callable[[str, str], None] | None = None,
) -> datetime:
    """The first public update: waited for ``grace_s`` in case the system publishes one by
    itself, else published by the drill playing support (said in ``notes`` in English, or
    through ``note`` in both languages)."""
    since = datetime.min.replace(tzinfo=UTC)
    try:
        return wait_for(lambda: first_public_update_after(system, incident_id, since), grace_s,
                        "a public update published by the system")
    except DrillError:
        pass
    publish_update(system, incident_id, UpdateStatus.IDENTIFIED, cause_ja=cause_ja,
                   cause_en=cause_en)
    played_en = ("No public update was published automatically; the drill played customer "
                 "support and published the status page's template (ja + en) at once.")
    if notes is not None:
        notes.append(played_en)
    if note is not None:
        note("公開情報が自動で掲載されなかったため、訓練がサポート担当としてステータスページの"
             "定型文(日英)を直ちに掲載した。", played_en)
    at = first_public_update_after(system, incident_id, since)
    if at is None:
        raise DrillError("published a public update but the incident's timeline does not show it")
    return at


# --- notices --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeCounts:
    notices: int
    queued: int
    sent: int


def count_notices(system: System, incident_id: int) -> NoticeCounts:
    """The subscriber notices of the incident's published updates and their deliveries."""
    with database(system) as session:
        update_ids = list(session.scalars(
            select(StatusUpdate.id).where(StatusUpdate.incident_id == incident_id)
        ))
        keys = [f"status-update-{update_id}" for update_id in update_ids]
        if not keys:
            return NoticeCounts(0, 0, 0)
        notice_ids = list(session.scalars(
            select(StoredNotice.id).where(StoredNotice.key.in_(keys))
        ))
        if not notice_ids:
            return NoticeCounts(0, 0, 0)
        statuses = list(session.scalars(
            select(Delivery.status).where(Delivery.notice_id.in_(notice_ids))
        ))
        sent = sum(1 for value in statuses if value == DeliveryStatus.SENT.value)
        return NoticeCounts(len(notice_ids), len(statuses), sent)


def notices_delivered(system: System, incident_id: int, timeout_s: float) -> NoticeCounts:
    """The incident's notice counts once every queued delivery was sent (or ``timeout_s``
    passed: the counts as they are then)."""
    def all_sent() -> NoticeCounts | None:
        counts = count_notices(system, incident_id)
        return counts if counts.sent >= counts.queued else None

    try:
        return wait_for(all_sent, timeout_s, "the notices to be delivered")
    except DrillError:
        return count_notices(system, incident_id)


def count_pages(system: System, incident_id: int) -> int:
    """Timeline entries about paging the on-call (sent or failed: both are in the record)."""
    with database(system) as session:
        return sum(1 for entry in incidents.timeline(session, incident_id)
                   if entry.kind == TimelineKind.PAGE)


# --- the resume -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResumeOutcome:
    markets: tuple[str, ...]
    approvals: int  # 0: one operator sufficed; 1: a second one approved (SEV1)
    detail: str


def play_resume(
    system: System,
    incident_id: int,
    markets: Sequence[str],
    *,
    reason: str,
    phases: Sequence[ResumePhaseSpec] = RESUME_PHASES_DEFAULT,
) -> ResumeOutcome:
    """Reopen ``markets`` through a phased resume plan, as the manual's operators would:
    the drill asks as :data:`DRILL_ACTOR`; after a SEV1 the request waits for a second
    operator, played as :data:`DRILL_SECOND_ACTOR`. Raises DrillError if the venue refuses."""
    request = ResumeRequest(markets=list(markets), reason=reason, phases=list(phases))
    venue = system.venue_control
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        if incident.status not in OPEN_STATUSES:
            raise DrillError(f"{incident.ref} is {incident.status}; a resume needs it open")
        outcome = incident_flows.resume_markets(session, venue, incident, request,
                                                actor=DRILL_ACTOR, now=utc_now())
        approvals = 0
        if outcome.approval is not None:
            approval = incident_flows.get_approval(session, outcome.approval.id)
            if approval.action != ApprovalAction.MARKET_RESUME:
                raise DrillError(f"unexpected approval {approval.action} for a resume")
            outcome = incident_flows.approve(
                session, venue, approval, approver=DRILL_SECOND_ACTOR, now=utc_now(),
                note="drill: second operator approves the phased resume")
            approvals = 1
    refused = [result for result in outcome.results if not result.ok]
    if refused:
        raise DrillError("the venue refused the resume: " + "; ".join(
            f"{result.target}: {result.detail}" for result in refused))
    shown = " -> ".join(f"{phase.state.value} {phase.min_seconds} s" for phase in phases)
    return ResumeOutcome(tuple(markets), approvals, shown)


def wait_trading(system: System, markets: Sequence[str], timeout_s: float) -> datetime:
    """Wait until every market in ``markets`` is open again; returns when it was seen."""
    def all_open() -> datetime | None:
        states = system.venue_control.market_states()
        return utc_now() if all(states.get(m) == MarketState.OPEN for m in markets) else None

    def seen() -> str:
        states = system.venue_control.market_states()
        return ", ".join(f"{m} {states.get(m, 'unknown')}" for m in markets)

    return wait_for(all_open, timeout_s, f"{', '.join(markets)} open again", seen=seen)


def halted_markets(system: System) -> list[str]:
    """The markets the venue reports in a state that takes no new orders."""
    return sorted(symbol for symbol, state in system.venue_control.market_states().items()
                  if state in HALT_STATES)


def resolve_incident(system: System, incident_id: int, note: str) -> None:
    """Monitoring, then resolved (the holds are checked against the venue's states)."""
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        now = utc_now()
        if incident.status not in OPEN_STATUSES:
            return
        if incident.status != IncidentStatus.MONITORING:
            incidents.transition(session, incident, IncidentStatus.MONITORING, actor=DRILL_ACTOR,
                                 now=now, note=note)
        incidents.transition(session, incident, IncidentStatus.RESOLVED, actor=DRILL_ACTOR,
                             now=now, note=note,
                             market_states=system.venue_control.market_states())


# --- the ledger and the acknowledged orders -------------------------------------------------


@dataclass(frozen=True)
class LedgerCheck:
    ok: bool
    detail: str
    last_seq: int
    state_hash: str


@dataclass(frozen=True)
class LostOrders:
    lost: list[AcknowledgedOrder]
    checked: int
    journal_last_seq: int
    venue_last_seq: int

    @property
    def count(self) -> int:
        return len(self.lost)


@contextmanager
def journal_copy(data_dir: Path) -> Iterator[Path]:
    """A copy of the venue's journal, snapshots and quarantine list, so checks never touch
    the live files. The commit mark is copied before the segments, so the copy holds at
    least every record the mark promises even while the venue keeps writing."""
    with tempfile.TemporaryDirectory(prefix="haltguard-drill-") as temp:
        copy = Path(temp) / "venue"
        copy.mkdir()
        for name in VENUE_FILES:
            if (data_dir / name).is_file():
                shutil.copy2(data_dir / name, copy / name)
        live_segments, copied_segments = segments_dir(data_dir), segments_dir(copy)
        copied_segments.mkdir()
        mark = live_segments / COMMIT_MARK_NAME
        if mark.exists():
            shutil.copy2(mark, copied_segments / COMMIT_MARK_NAME)
        for path in sorted(live_segments.glob("*")):
            if path.is_file() and path.name != COMMIT_MARK_NAME:
                shutil.copy2(path, copied_segments / path.name)
        if snapshots_dir(data_dir).is_dir():
            shutil.copytree(snapshots_dir(data_dir), snapshots_dir(copy))
        yield copy


def venue_data_dir(system: System) -> Path:
    """Where the venue's journal lives (the supervised child uses the system's data dir)."""
    if system.config.venue_url:
        raise DrillError(
            f"the venue runs elsewhere ({system.config.venue_url}); the drill can only check "
            "a journal it can read: run the drill on the venue's host"
        )
    return system.config.data_dir


def ledger_check(system: System) -> LedgerCheck:
    """Recover a copy of the journal (snapshot + replay) and check the venue's invariants:
    funds conserved, no negative balance, books not crossed, holds matching orders."""
    with journal_copy(venue_data_dir(system)) as copy:
        report = verify(copy)
    detail = ("invariants hold" if report.ok else "; ".join(report.problems[:5]))
    detail += f" (replayed to seq {report.last_seq}, {report.records_replayed} records)"
    return LedgerCheck(report.ok, detail, report.last_seq, report.state_hash)


def lost_orders(system: System, acknowledged: Sequence[AcknowledgedOrder]) -> LostOrders:
    """Every acknowledged order checked against a copy of the journal: the record at its
    seq must be that very order (same client order id, account and market). The live
    venue must also have come back at or past the highest acknowledged seq."""
    with VenueClient.for_system(system) as client:
        venue_seq = wait_for(client.last_seq, HTTP_TIMEOUT_S, "the venue's last seq")
    wanted: dict[int, list[AcknowledgedOrder]] = {}
    for order in acknowledged:
        wanted.setdefault(order.seq, []).append(order)
    found: set[AcknowledgedOrder] = set()
    last_seq = 0
    with journal_copy(venue_data_dir(system)) as copy:
        reader = JournalReader(copy)
        try:
            while True:
                entries = reader.read_available()
                if not entries:
                    break
                for sequenced, _events in entries:
                    last_seq = sequenced.seq
                    command = sequenced.command
                    if type(command) is not PlaceOrder:
                        continue
                    found.update(
                        order for order in wanted.get(sequenced.seq, ())
                        if command.client_order_id == order.client_order_id
                        and command.account == order.account and command.market == order.market
                    )
        finally:
            reader.close()
    lost = [order for order in acknowledged if order not in found or order.seq > venue_seq]
    return LostOrders(lost, len(acknowledged), last_seq, venue_seq)


# --- the reports ----------------------------------------------------------------------------


def write_postmortem(system: System, incident_id: int, *, summary: str, cause: str,
                     went_well: list[str], went_badly: list[str]) -> None:
    """The postmortem the reports are built from, written by the drill (a resolved incident)."""
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        incidents.write_postmortem(session, incident, PostmortemWrite(
            summary=summary, cause=cause, went_well=went_well, went_badly=went_badly,
            recurrence_prevention=["Run this drill regularly (haltguard drill)."],
        ), actor=DRILL_ACTOR, now=utc_now())


def generate_reports(system: System, incident_id: int, report_dir: Path) -> list[Path]:
    """The incident's postmortem (English) and regulatory report (Japanese), as Markdown and
    HTML files in ``report_dir``; each generation is noted on the timeline."""
    report_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        for name, module in (("postmortem", postmortem), ("regulatory", regulatory)):
            document = module.build(session, incident)
            for suffix, render in (("md", module.render_markdown), ("html", module.render_html)):
                path = report_dir / f"{incident.ref}-{name}.{suffix}"
                path.write_text(render(document), encoding="utf-8")
                written.append(path)
            incidents.record_report(session, incident, report=name, output="markdown+html",
                                    actor=DRILL_ACTOR, now=utc_now())
    return written


def close_incident_record(
    system: System, result_notes: Callable[[str, str], None], incident_id: int, *,
    report_dir: Path | None, summary: str, cause: str, went_well: list[str],
    went_badly: list[str],
) -> list[Path]:
    """The end of the manual's chapter 2 as the drill plays it: resolve the incident (its
    markets must be open again), publish the resolved update, write the postmortem and
    generate the postmortem and regulatory reports. Returns the report files."""
    resolve_incident(system, incident_id, "drill: trading restored and checked")
    publish_update(system, incident_id, UpdateStatus.RESOLVED)
    result_notes("訓練がサポート担当として解決済みの公開情報を掲載した。",
                 "The drill, playing support, published the resolved update.")
    write_postmortem(system, incident_id, summary=summary, cause=cause, went_well=went_well,
                     went_badly=went_badly or ["Nothing failed in this drill."])
    if report_dir is None:
        return []
    return generate_reports(system, incident_id, report_dir)


# --- checks every scenario makes --------------------------------------------------------


def public_update_check(ja: str, en: str) -> Check:
    ok = bool(ja.strip()) and bool(en.strip()) and ja != en
    return Check(
        "public update in Japanese and English", ok,
        "a published update with both texts", f"ja {len(ja)} chars, en {len(en)} chars",
        name_ja="日英の公開情報", expected_ja="日本語と英語の両方の本文を掲載",
        seen_ja=f"日本語 {len(ja)} 文字、英語 {len(en)} 文字")


def paged_check(pages: int) -> Check:
    return Check("on-call paged", pages >= 1, "at least one page in the timeline", str(pages),
                 name_ja="当番への呼び出し", expected_ja="1 件以上", seen_ja=str(pages))


def note_played_support(result: DrillResult, played: list[str]) -> None:
    """Carry the toolkit's note that the drill published the first update, in both
    languages."""
    for line in played:
        result.note("自動の公開告知がなかったため、訓練がサポート担当として日英の定型文を公開"
                    "しました。", line)


def timeline_check(kinds: tuple[str, ...], wanted: tuple[str, ...]) -> Check:
    missing = [kind for kind in wanted if kind not in kinds]
    return Check(
        "incident timeline complete", not missing, f"entries {', '.join(wanted)}",
        f"missing {', '.join(missing)}" if missing else f"{len(kinds)} kinds: {', '.join(kinds)}",
        name_ja="インシデントの時系列記録", expected_ja=f"{', '.join(wanted)} の記録",
        seen_ja=f"不足: {', '.join(missing)}" if missing else f"{len(kinds)} 種類の記録")


def reports_check(paths: Sequence[Path]) -> Check:
    names = sorted(path.name for path in paths)
    ok = len(paths) == 4
    return Check(
        "postmortem and regulatory report written", ok,
        "postmortem and regulatory report, Markdown and HTML", ", ".join(names) or "none",
        name_ja="事後報告書とシステム障害報告書", expected_ja="両報告書を Markdown と HTML で作成",
        seen_ja=", ".join(names) or "なし")


def rules_for_signal(system: System, signal: str) -> list[str]:
    """The ids of the rules in force that act on ``signal`` (empty: nothing turns it into
    an incident)."""
    if system.detection is None:
        return []
    return [rule.id for rule in system.detection.rules.rules if rule.signal == signal]


def open_incident_by_hand(
    system: System, note: Callable[[str, str], None], *, title: str, category: Category,
    severity: Severity, markets: Sequence[str] = (), components: Sequence[str] = (),
) -> int:
    """Open the incident as the incident commander would when detection did not: the rest
    of the response is still rehearsed, and the drill says it stepped in."""
    note("自動検知でインシデントが開かれなかったため、訓練がインシデントコマンダーとして"
         "手動で起票した。",
         "No incident was opened by detection, so the drill opened it by hand as the "
         "incident commander would.")
    with database(system) as session:
        incident = incident_flows.open_incident(
            session, IncidentCreate(title=title, category=category, severity=severity,
                                    affected_markets=list(markets),
                                    affected_components=list(components)),
            actor=DRILL_ACTOR, clock=system.operations.state.clock,
            responder_settings=system.config.paging)
        return int(incident.id)


# --- attacks that go on while the drill responds ------------------------------------------


def load_guard(system: Any) -> LoadGuard | None:
    """The gateway's load guard (its limiter holds the blocks), where this process has it."""
    guard = getattr(system, "load_guard", None)
    if guard is None and getattr(system, "venue_app", None) is not None:
        guard = getattr(system.venue_app.state, "load_guard", None)
    return guard if isinstance(guard, LoadGuard) else None


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(max(1, math.ceil(len(ordered) * share)), len(ordered)) - 1]


class Background(Generic[T]):
    """``work`` on a thread of its own: the attack goes on while the drill responds."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._work = work
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="drill-attack", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to whoever waits for the result
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def first_response(context: DrillContext, result: DrillResult, attack_at: datetime, *,
                   rule_id: str, cause_en: str, cause_ja: str) -> int | DrillError:
    """While the attack runs: wait for ``rule_id``'s incident, take it as its commander and
    publish the first update (ja + en) if nothing did. The incident, or why not."""
    system, scale, progress = context.system, context.scale, context.progress
    progress(f"{result.scenario}: waiting for rule {rule_id}'s incident while the attack goes on")
    try:
        incident_id = wait_for(
            lambda: incident_for(system, since=attack_at, rule_id=rule_id),
            scale.timeout_s, f"an incident from rule {rule_id}",
            seen=lambda: decisions_seen(system, attack_at))
        take_incident(system, incident_id, started_at=attack_at,
                              cause=f"drill: {cause_en}")
        played: list[str] = []
        ensure_public_update(system, incident_id, grace_s=min(2.0, scale.timeout_s),
                                     cause_ja=cause_ja, cause_en=cause_en, notes=played)
    except DrillError as exc:
        return exc
    note_played_support(result, played)
    return incident_id


def unfinished(exc: DrillError) -> Check:
    """The drill could not finish the incident: a failed check saying why, so the figures
    measured so far stay in the report."""
    return Check("incident handled end to end", False, "every step of the response done",
                 str(exc), name_ja="インシデント対応の完了", expected_ja="全手順の完了",
                 seen_ja=str(exc))


def milliseconds(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "n/a"


def finish_incident(context: DrillContext, result: DrillResult, incident_id: int, *,
                    cause_en: str, went_well: list[str]) -> None:
    """Close the drill's incident with its postmortem and reports (a check that they were
    written), then count the notices delivered for it."""
    system, scale = context.system, context.scale
    paths = close_incident_record(
        system, result.note, incident_id, report_dir=context.report_dir,
        summary=f"Drill {result.scenario}: {cause_en}", cause=cause_en, went_well=went_well,
        went_badly=[check.name for check in result.checks if not check.passed])
    result.report_paths += [str(path) for path in paths]
    result.checks.append(reports_check(paths))
    notices = notices_delivered(system, incident_id, min(scale.timeout_s, NOTICE_WAIT_S))
    result.measurements.notices_sent = notices.sent
    result.measurements.extra["notices queued"] = str(notices.queued)


async def read_http_answer(reader: asyncio.StreamReader,
                           bytes_max: int) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length (every answer of haltguard's APIs has one),
    for the drills' raw clients, which send faster than an HTTP library can; a body over
    ``bytes_max`` is refused rather than read."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length > bytes_max:
        raise ValueError(f"an answer of {length} bytes is more than the {bytes_max} expected")
    return status, headers, await reader.readexactly(length)
