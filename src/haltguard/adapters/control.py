"""The venue contract over any venue's own admin API, as an adapter file describes it.

:class:`AdapterVenueControl` is a :class:`~haltguard.venue.control.VenueContract`: each
brake is one HTTP call built from the file's templates, sent with an idempotency key and
retried with that same key on a timeout, a refused connection, a 5xx or a 429 (at most
``retries.attempts_max`` attempts, backing off). A brake is then **confirmed** by reading the
venue's market states until they show it (``confirm: state`` / ``all_halted``) within
``timeouts.confirm_s``. One that does not show is never assumed: the call raises
:class:`BrakeUnconfirmedError`, the adapter reports it (``brake_unconfirmed``) and a retry
thread keeps checking and re-sending it every ``timeouts.retry_interval_s``
until it shows (``brake_confirmed``) or the retries run out (``brake_abandoned``); a
re-send carries a new key, since it follows a read showing the first did not take. A venue
that cannot be reached is reported once per outage (``unreachable``, then ``reachable``).

The events a brake returns are the contract's own (``MarketStateChanged`` and so on),
built from the state the venue confirmed, since another venue's events are its own.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx

from haltguard.adapters.calls import Request, build_request, read_path
from haltguard.adapters.errors import AdapterUnreachableError, BrakeUnconfirmedError
from haltguard.adapters.pages import read_page
from haltguard.adapters.spec import AdapterSpec, Call
from haltguard.venue.commands import CompensationLine, ResumePhase
from haltguard.venue.control import (
    CorrectionCursor,
    CreditOutcome,
    EventPage,
    TradeCorrection,
    VenueControlError,
    VenueHealth,
)
from haltguard.venue.events import (
    AccountWithdrawalsFrozen,
    Event,
    KillSwitchChanged,
    MarketStateChanged,
    ResumePlanStarted,
    WithdrawalsFrozen,
)
from haltguard.venue.types import MarketState

log = logging.getLogger(__name__)

RETRYABLE_STATUS: Final = frozenset({429, 500, 502, 503, 504})
STOPPED_STATES: Final = frozenset({MarketState.HALTED, MarketState.CLOSED})
BODY_SHOWN_CHARS_MAX: Final = 300


@dataclass(frozen=True)
class AdapterReport:
    """Something the operators must hear about the adapter (it becomes a detection
    signal): ``unreachable``/``reachable``, ``brake_unconfirmed``/``brake_confirmed``/
    ``brake_abandoned``."""

    kind: str
    operation: str
    market: str
    detail: str


ReportSink = Callable[[AdapterReport], None]


@dataclass(frozen=True)
class Answer:
    status: int
    data: Any


@dataclass(frozen=True)
class ProbeAnswer:
    """What the venue said to an order or a cancel the conformance suite sent."""

    accepted: bool
    status: int
    order_id: str
    detail: str


@dataclass
class _PendingBrake:
    operation: str
    market: str
    send: Callable[[], Answer]
    shows: Callable[[dict[str, MarketState]], bool]
    retries: int = 0


class AdapterVenueControl:
    """The venue contract through the HTTP calls of ``spec``; see the module docstring."""

    def __init__(
        self,
        spec: AdapterSpec,
        *,
        transport: httpx.BaseTransport | None = None,
        on_report: ReportSink | None = None,
    ) -> None:
        self.spec = spec
        self.on_report = on_report
        self.client = httpx.Client(timeout=spec.request_s, transport=transport)
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], _PendingBrake] = {}
        self._known_states: dict[str, MarketState] = {}
        self._unreachable = False
        self._keys = itertools.count(1)
        self._key_prefix = secrets.token_hex(6)
        self._stop = threading.Event()
        self._retrier: threading.Thread | None = None

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            retrier = self._retrier
        if retrier is not None:
            retrier.join(5)
        self.client.close()

    def __enter__(self) -> AdapterVenueControl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------------------

    def _values(self, fields: dict[str, Any], key: str) -> dict[str, Any]:
        return {**self.spec.variables, **fields, "idempotency_key": key,
                "timestamp_ms": time.time_ns() // 1_000_000}

    def new_key(self) -> str:
        return f"hg-{self._key_prefix}-{next(self._keys)}"

    def call(self, operation: str, fields: dict[str, Any] | None = None, *,
             key: str = "") -> Answer:
        """One operation, retried on what may pass; :class:`VenueControlError` otherwise."""
        spec_call = self.spec.operations.get(operation)
        if spec_call is None:
            raise VenueControlError(
                f"the adapter {self.spec.name!r} ({self.spec.source.path}) maps no "
                f"{operation!r} operation; add it under operations: to use it")
        key = key or self.new_key()
        attempts = max(1, self.spec.attempts_max)
        problem = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.spec.backoff_s * 2 ** (attempt - 1), self.spec.backoff_s_max))
            request = build_request(spec_call, self.spec.headers, self.spec.signing,
                                    self._values(fields or {}, key))
            try:
                response = self._send(request)
            except httpx.HTTPError as exc:
                problem = (f"cannot reach the venue at {request.url} ({type(exc).__name__}: "
                           f"{exc or 'no answer'})")
                continue
            if response.status_code in RETRYABLE_STATUS:
                problem = (f"the venue answered {response.status_code} to {request.method} "
                           f"{request.url}: {response.text[:BODY_SHOWN_CHARS_MAX]}")
                continue
            self._mark_reachable()
            return self._answer(spec_call, request, response)
        self._mark_unreachable(operation, problem)
        raise VenueControlError(
            f"{problem}; tried {attempts} times with idempotency key {key} "
            f"({self.spec.where(spec_call.key)}); check the venue and the adapter's URL")

    def _send(self, request: Request) -> httpx.Response:
        return self.client.request(request.method, request.url, headers=request.headers,
                                    content=request.content or None)

    def _answer(self, call: Call, request: Request, response: httpx.Response) -> Answer:
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = response.text
        if response.status_code not in call.success_status:
            raise VenueControlError(
                f"the venue refused {request.method} {request.url} with "
                f"{response.status_code}: {response.text[:BODY_SHOWN_CHARS_MAX]}")
        return Answer(response.status_code, data)

    def _mark_unreachable(self, operation: str, detail: str) -> None:
        with self._lock:
            was, self._unreachable = self._unreachable, True
        if not was:
            self._report(AdapterReport("unreachable", operation, "", detail))

    def _mark_reachable(self) -> None:
        with self._lock:
            was, self._unreachable = self._unreachable, False
        if was:
            self._report(AdapterReport("reachable", "", "", "the venue answers again"))

    def _report(self, report: AdapterReport) -> None:
        log.warning("venue adapter %s: %s %s %s", report.kind, report.operation,
                    report.market, report.detail)
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:  # a report sink's trouble must not stop a brake
                log.exception("the adapter's report sink failed")

    def check_reachable(self) -> None:
        """Read the health once at start: :class:`AdapterUnreachableError` naming the
        adapter file's line of the health URL when the venue does not answer."""
        try:
            self.call("health")
        except VenueControlError as exc:
            raise AdapterUnreachableError(
                f"{self.spec.where('operations.health.url')}: {exc}",
                next_step="start the venue or correct the URL (variables or --set base_url=...)",
                message_ja=f"{self.spec.where('operations.health.url')}: 取引所に接続できません",
            ) from exc

    # -- reading ---------------------------------------------------------------------------

    def market_states(self) -> dict[str, MarketState]:
        call = self.spec.operations["market_states"]
        data = self.call("market_states").data
        read = call.read
        try:
            items = read_path(data, read.get("list", "."))
            if isinstance(items, dict):
                pairs = [(str(k), read_path(v, read.get("state", "state")))
                         for k, v in items.items()]
            else:
                pairs = [(str(read_path(item, read.get("symbol", "symbol"))),
                          read_path(item, read.get("state", "state"))) for item in items]
        except (KeyError, TypeError, AttributeError) as exc:
            raise VenueControlError(f"the venue's market states cannot be read with "
                                    f"{self.spec.where(call.key + '.read')}: {exc}") from exc
        states: dict[str, MarketState] = {}
        for venue_symbol, word in pairs:
            state = self.spec.our_state(str(word))
            if state is None:
                raise VenueControlError(
                    f"the venue reports state {word!r} for {venue_symbol}, which the adapter's "
                    f"states: table does not map ({self.spec.where('states')})")
            states[self.spec.our_market(venue_symbol)] = state
        with self._lock:
            self._known_states.update(states)
        return states

    def health(self) -> VenueHealth:
        try:
            answer = self.call("health")
        except VenueControlError as exc:
            return VenueHealth(False, False, 0, str(exc))
        path = self.spec.operations["health"].read.get("last_seq")
        last_seq = 0
        if path:
            try:
                last_seq = int(read_path(answer.data, path))
            except (KeyError, TypeError, ValueError):
                last_seq = 0
        return VenueHealth(True, True, last_seq)

    def read_events(self, after_seq: int, limit: int) -> EventPage:
        return read_page(self.spec, self.client, after_seq, limit)

    # -- brakes ----------------------------------------------------------------------------

    def _brake(self, operation: str, market: str, fields: dict[str, Any],
               shows: Callable[[dict[str, MarketState]], bool] | None) -> dict[str, MarketState]:
        """Send, then confirm; the states that confirmed it (``{}`` for ``confirm: answer``)."""
        key = self.new_key()
        with self._lock:
            self._pending.pop((operation, market), None)  # a newer brake supersedes it

        def send_again() -> Answer:
            # A new key: the venue may remember the first one as done although it shows
            # nothing, and the retry loop only re-sends after reading that it does not show.
            return self.call(operation, fields)

        self.call(operation, fields, key=key)
        if shows is None or self.spec.operations[operation].confirm == "answer":
            return {}
        deadline = time.monotonic() + self.spec.confirm_s
        while True:
            try:
                seen = self.market_states()
                if shows(seen):
                    return seen
            except VenueControlError as exc:
                log.warning("confirming %s: %s", operation, exc)
            if time.monotonic() >= deadline:
                break
            time.sleep(self.spec.confirm_poll_s)
        self._keep_trying(_PendingBrake(operation, market, send_again, shows))
        detail = (f"{operation} {market or 'every market'} was sent (idempotency key {key}) "
                  f"but the venue did not show it within {self.spec.confirm_s:g} s; it is "
                  "NOT assumed applied: the adapter keeps re-checking and re-sending it")
        self._report(AdapterReport("brake_unconfirmed", operation, market, detail))
        raise BrakeUnconfirmedError(f"unconfirmed: {detail}")

    def _keep_trying(self, pending: _PendingBrake) -> None:
        with self._lock:
            self._pending[(pending.operation, pending.market)] = pending
            if self._retrier is None:
                self._retrier = threading.Thread(target=self._retry_loop,
                                                 name="adapter-brake-retries", daemon=True)
                self._retrier.start()

    def unconfirmed(self) -> list[tuple[str, str]]:
        """(operation, market) of each brake sent but not yet shown by the venue."""
        with self._lock:
            return sorted(self._pending)

    def _retry_loop(self) -> None:
        while not self._stop.wait(self.spec.retry_interval_s):
            with self._lock:  # leaving under the lock: a brake added now starts a new loop
                pending = list(self._pending.values())
                if not pending:
                    self._retrier = None
                    return
            for brake in pending:
                self._retry_once(brake)

    def _retry_once(self, brake: _PendingBrake) -> None:
        try:
            if brake.shows(self.market_states()):
                self._settle(brake, "brake_confirmed", "the venue now shows it")
                return
            brake.retries += 1
            brake.send()
        except VenueControlError as exc:
            brake.retries += 1
            log.warning("retrying %s %s: %s", brake.operation, brake.market, exc)
        if brake.retries >= self.spec.background_retries_max:
            self._settle(brake, "brake_abandoned",
                         f"still not shown after {brake.retries} retries; a person must act")

    def _settle(self, brake: _PendingBrake, kind: str, detail: str) -> None:
        with self._lock:
            if self._pending.get((brake.operation, brake.market)) is not brake:
                return
            del self._pending[(brake.operation, brake.market)]
        self._report(AdapterReport(kind, brake.operation, brake.market, detail))

    def _old_state(self, market: str) -> MarketState:
        with self._lock:
            known = self._known_states.get(market)
        return known if known is not None else self.market_states().get(market, MarketState.OPEN)

    def set_market_state(
        self, market: str, state: MarketState, *, actor: str, reason: str,
        incident_id: str = "", cancels_allowed: bool = True, auction_ns: int = 0,
    ) -> list[Event]:
        state = _state(state)
        old = self._old_state(market)
        auction_s = auction_ns / 1e9
        self._brake("set_market_state", market, {
            "market": self.spec.venue_market(market), "state": self.spec.states[state],
            "actor": actor, "reason": reason, "incident_id": incident_id,
            "cancels_allowed": cancels_allowed, "auction_seconds": auction_s,
            "auction_ms": auction_ns // 1_000_000,
        }, lambda states: states.get(market) is state)
        return [MarketStateChanged(market, old, state, actor, reason, incident_id,
                                   cancels_allowed, 0)]

    def kill_switch(self, engaged: bool, *, actor: str, reason: str,
                    incident_id: str = "") -> list[Event]:
        if not isinstance(engaged, bool):
            raise VenueControlError("engaged must be true or false; nothing was sent")
        def shows(states: dict[str, MarketState]) -> bool:
            return bool(states) and all(s in STOPPED_STATES for s in states.values())

        self._brake("kill_switch", "", {"engaged": engaged, "actor": actor, "reason": reason,
                                        "incident_id": incident_id},
                    shows if engaged else None)
        return [KillSwitchChanged(engaged, actor, reason, incident_id)]

    def freeze_withdrawals(self, asset: str, frozen: bool, *, actor: str, reason: str,
                           incident_id: str = "") -> list[Event]:
        self._brake("freeze_withdrawals", asset, {
            "asset": asset, "frozen": frozen, "withdrawals_enabled": not frozen,
            "actor": actor, "reason": reason, "incident_id": incident_id}, None)
        return [WithdrawalsFrozen(asset, frozen, actor, reason, incident_id)]

    def freeze_account_withdrawals(self, account: int, frozen: bool, *, actor: str,
                                   reason: str, incident_id: str = "") -> list[Event]:
        self._brake("freeze_account_withdrawals", str(account), {
            "account": account, "frozen": frozen, "withdrawals_enabled": not frozen,
            "actor": actor, "reason": reason, "incident_id": incident_id}, None)
        return [AccountWithdrawalsFrozen(account, frozen, actor, reason, incident_id)]

    def withdraw(self, account: int, asset: str, amount_minor: int, *, destination: str,
                 reference: str) -> list[Event]:
        raise VenueControlError(
            f"the adapter {self.spec.name!r} does not move customers' money: withdrawals "
            "are the exchange's own; an adapter file maps brakes and readings only")

    def start_resume_plan(self, market: str, phases: list[ResumePhase], *, actor: str,
                          reason: str, incident_id: str = "") -> list[Event]:
        if not phases:
            raise VenueControlError("a resume plan needs at least one phase; nothing was sent")
        auction = next((p for p in phases if _state(p.state) is MarketState.AUCTION), None)
        auction_ns = auction.min_ns if auction is not None else 0
        self._brake("start_resume_plan", market, {
            "market": self.spec.venue_market(market),
            "phases": [{"state": self.spec.states[_state(p.state)],
                        "min_seconds": p.min_ns / 1e9} for p in phases],
            "auction_seconds": auction_ns / 1e9, "auction_ms": auction_ns // 1_000_000,
            "actor": actor, "reason": reason, "incident_id": incident_id,
        }, lambda states: states.get(market) not in STOPPED_STATES | {None})
        return [ResumePlanStarted(market, [_state(p.state).value for p in phases], actor,
                                  reason, incident_id)]

    def cancel_all(self, *, market: str = "", account: int = 0, actor: str, reason: str,
                   incident_id: str = "") -> list[Event]:
        self._brake("cancel_all", market, {
            "market": self.spec.venue_market(market) if market else "", "account": account,
            "actor": actor, "reason": reason, "incident_id": incident_id}, None)
        return []

    def credit_compensation(self, lines: Sequence[CompensationLine], *, actor: str,
                            reason: str = "") -> list[CreditOutcome]:
        raise VenueControlError(
            f"the adapter {self.spec.name!r} does not pay compensation: credits are not part "
            "of what an adapter file maps; pay through the venue's own ledger tools")

    def credited_line_ranges(self, run_id: int) -> list[tuple[int, int]]:
        raise VenueControlError(
            f"the adapter {self.spec.name!r} does not pay compensation, so it has no credited "
            "lines to read")

    def correct_trades(self, command: TradeCorrection) -> list[Event]:
        raise VenueControlError(
            f"the adapter {self.spec.name!r} does not correct trades: busts, re-pricings and "
            "rollbacks are not part of what an adapter file maps; use the venue's own tools")

    def correction_cursor(self) -> CorrectionCursor:
        raise VenueControlError(
            f"the adapter {self.spec.name!r} does not correct trades, so it has no correction "
            "cursor to read")

    # -- probes (the conformance suite's orders) ---------------------------------------------

    def probe(self, operation: str, fields: dict[str, Any]) -> ProbeAnswer:
        """Send an order or a cancel; a refusal is an answer here, not an error."""
        try:
            answer = self.call(operation, fields)
        except VenueControlError as exc:
            if str(exc).startswith("the venue refused"):
                return ProbeAnswer(False, 0, "", str(exc))
            raise
        order_id = ""
        path = self.spec.operations[operation].read.get("order_id")
        if path:
            try:
                order_id = str(read_path(answer.data, path))
            except (KeyError, TypeError):
                return ProbeAnswer(False, answer.status, "", f"no order id at {path!r}")
        return ProbeAnswer(True, answer.status, order_id, "")


def _state(value: MarketState | str) -> MarketState:
    try:
        return MarketState(value)
    except ValueError:
        raise VenueControlError(f"{value!r} is not a market state; nothing was sent") from None
