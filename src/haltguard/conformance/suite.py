"""The venue contract's behaviours, checked against any venue through its adapter.

``haltguard venue conformance --adapter FILE`` runs :func:`run_conformance`: each check
drives the venue only through the adapter (brakes, market states, health, the event feed,
and the file's ``place_order``/``cancel_order`` calls a customer would send) and says what
held and what did not. A check that fails leaves the others to run; every check starts by
opening the conformance market and the suite ends by opening it again, so a venue is left
as it was found (trading in that market), apart from the few orders it placed and
cancelled. Run it against a test or staging venue, never production: it halts markets and
pulls the kill switch.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from haltguard.adapters.control import AdapterVenueControl, ProbeAnswer
from haltguard.adapters.feed import EventFollower
from haltguard.venue.commands import ResumePhase
from haltguard.venue.control import FeedEvent, VenueControlError
from haltguard.venue.types import MarketState

ACTOR: Final = "conformance"
AUCTION_S: Final = 0.4
REOPEN_AUCTION_S: Final = 0.05
SETTLE_S_MAX: Final = 5.0
FEED_ORDERS: Final = 30
FEED_WAIT_S_MAX: Final = 10.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CheckResult:
    """One behaviour of the contract: whether it held, and what was seen."""

    name: str
    title_en: str
    title_ja: str
    holds: bool
    detail: str
    elapsed_ms: float


@dataclass
class ConformanceReport:
    adapter: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(result.holds for result in self.results)

    def failed(self) -> list[CheckResult]:
        return [result for result in self.results if not result.holds]


class CheckFailedError(Exception):
    """A behaviour did not hold; the message says what was seen instead."""


@dataclass
class _Run:
    control: AdapterVenueControl
    market: str
    account: int | str
    buy_price: str
    sell_price: str
    qty: str
    asset: str
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    orders: int = 0

    def open_market(self, market: str = "") -> None:
        """Back to trading the contract's way: a short auction, then open."""
        market = market or self.market
        if self.control.market_states().get(market) is MarketState.OPEN:
            return
        self.control.start_resume_plan(
            market, [ResumePhase(MarketState.AUCTION, int(REOPEN_AUCTION_S * 1e9)),
                     ResumePhase(MarketState.OPEN, 0)],
            actor=ACTOR, reason="conformance: back to trading")
        deadline = time.monotonic() + REOPEN_AUCTION_S + SETTLE_S_MAX
        while self.control.market_states().get(market) is not MarketState.OPEN:
            if time.monotonic() > deadline:
                raise CheckFailedError(f"{market} did not reopen within {SETTLE_S_MAX:g} s of its "
                                  "resume plan")
            time.sleep(0.01)

    def place(self, side: str = "buy") -> ProbeAnswer:
        self.orders += 1
        return self.control.probe("place_order", {
            "market": self.control.spec.venue_market(self.market), "side": side,
            "price": self.buy_price if side == "buy" else self.sell_price, "qty": self.qty,
            "client_order_id": f"conf-{self.tag}-{self.orders}", "account": self.account})

    def cancel(self, order_id: str) -> ProbeAnswer:
        return self.control.probe("cancel_order", {
            "market": self.control.spec.venue_market(self.market), "order_id": order_id,
            "account": self.account})

    def resting_order(self) -> str:
        answer = self.place()
        if not answer.accepted:
            raise CheckFailedError(f"an order in the open market {self.market} was refused: "
                              f"{answer.detail}")
        return answer.order_id

    def halt(self) -> None:
        self.control.set_market_state(self.market, MarketState.HALTED, actor=ACTOR,
                                      reason="conformance: halt")


def _check_health(run: _Run) -> str:
    health = run.control.health()
    if not (health.reachable and health.taking_commands):
        raise CheckFailedError(f"health says: {health.detail or 'not taking commands'}")
    states = run.control.market_states()
    if run.market not in states:
        raise CheckFailedError(f"the market states do not list {run.market}: {sorted(states)}")
    return f"reachable, {len(states)} markets, last seq {health.last_seq}"


def _check_halt_refuses_orders(run: _Run) -> str:
    run.resting_order()
    run.halt()
    refused = run.place()
    if refused.accepted:
        raise CheckFailedError(f"the halted market accepted order {refused.order_id}")
    return f"refused: {refused.detail[:120]}"


def _check_halt_allows_cancels(run: _Run) -> str:
    order_id = run.resting_order()
    run.halt()
    cancelled = run.cancel(order_id)
    if not cancelled.accepted:
        raise CheckFailedError(f"cancelling order {order_id} in the halted market was refused: "
                          f"{cancelled.detail}")
    return f"order {order_id} cancelled while halted"


def _check_resume_through_auction(run: _Run) -> str:
    run.halt()
    run.control.start_resume_plan(
        run.market, [ResumePhase(MarketState.AUCTION, int(AUCTION_S * 1e9)),
                     ResumePhase(MarketState.OPEN, 0)],
        actor=ACTOR, reason="conformance: resume through an auction")
    seen: list[MarketState] = []
    deadline = time.monotonic() + AUCTION_S + SETTLE_S_MAX
    while time.monotonic() < deadline:
        state = run.control.market_states().get(run.market)
        if state is not None and (not seen or seen[-1] is not state):
            seen.append(state)
        if state is MarketState.OPEN:
            break
        time.sleep(0.01)
    path = " -> ".join(state.value for state in seen)
    if MarketState.AUCTION not in seen or seen[-1] is not MarketState.OPEN:
        raise CheckFailedError(f"the market went {path or 'nowhere'}; expected auction, then open")
    if seen.index(MarketState.AUCTION) > seen.index(MarketState.OPEN):
        raise CheckFailedError(f"the market opened before its auction: {path}")
    return f"states seen: {path}"


def _check_kill_switch(run: _Run) -> str:
    before = run.control.market_states()
    run.control.kill_switch(True, actor=ACTOR, reason="conformance: kill switch")
    try:
        states = run.control.market_states()
        trading = sorted(m for m, s in states.items() if s is not MarketState.HALTED
                         and s is not MarketState.CLOSED)
        if trading:
            raise CheckFailedError(f"markets still trading under the kill switch: {trading}")
        refused = run.place()
        if refused.accepted:
            raise CheckFailedError(
                f"an order was accepted under the kill switch ({refused.order_id})")
    finally:
        run.control.kill_switch(False, actor=ACTOR, reason="conformance: release")
        for market, state in before.items():
            if state is MarketState.OPEN:
                run.open_market(market)
    return f"{len(states)} markets stopped, an order refused, released and reopened"


def _check_cancel_all(run: _Run) -> str:
    first, second = run.resting_order(), run.resting_order()
    run.control.cancel_all(market=run.market, account=int(run.account)
                           if str(run.account).isdigit() else 0,
                           actor=ACTOR, reason="conformance: cancel all")
    for order_id in (first, second):
        if run.cancel(order_id).accepted:
            raise CheckFailedError(f"order {order_id} could still be cancelled after cancel-all")
    return "both resting orders were gone"


def _check_withdrawal_freeze(run: _Run) -> str:
    run.control.freeze_withdrawals(run.asset, True, actor=ACTOR, reason="conformance: freeze")
    run.control.freeze_withdrawals(run.asset, False, actor=ACTOR, reason="conformance: unfreeze")
    return f"{run.asset} withdrawals frozen and released"


def _feed_end(run: _Run) -> int:
    cursor = 0
    while True:
        page = run.control.read_events(cursor, 5000)
        if not page.events or page.cursor == cursor:
            return page.cursor
        cursor = page.cursor


def _check_feed_resumes(run: _Run) -> str:
    start = _feed_end(run)
    delivered: list[FeedEvent] = []
    got = threading.Condition()

    def take(events: list[FeedEvent]) -> None:
        with got:
            delivered.extend(events)
            got.notify_all()

    follower = EventFollower(run.control, take, after_seq=start).start()
    try:
        for number in range(FEED_ORDERS):
            order_id = run.resting_order()
            run.cancel(order_id)
            if number == FEED_ORDERS // 2:
                follower.drop_connection()
        truth: list[FeedEvent] = []
        cursor = start
        while True:
            page = run.control.read_events(cursor, 5000)
            truth += page.events
            if not page.events:
                break
            cursor = page.cursor
        with got:
            got.wait_for(lambda: len(delivered) >= len(truth), FEED_WAIT_S_MAX)
    finally:
        follower.stop()
    positions = [event.position for event in delivered]
    expected = [event.position for event in truth]
    if len(set(positions)) != len(positions):
        raise CheckFailedError(f"{len(positions) - len(set(positions))} events delivered twice")
    if positions[:len(expected)] != expected:
        missing = sorted(set(expected) - set(positions))[:5]
        raise CheckFailedError(f"the followed feed differs from a fresh read: missing {missing}")
    accepted = sum(1 for event in truth if event.kind == "order_accepted")
    if accepted < FEED_ORDERS:
        raise CheckFailedError(f"the feed shows {accepted} accepted orders of {FEED_ORDERS} placed")
    return (f"{len(delivered)} events in order across a dropped connection "
            f"({follower.reconnects} reconnects, {follower.duplicates_dropped} repeats dropped)")


CHECKS: Final[tuple[tuple[str, str, str, Callable[[_Run], str]], ...]] = (
    ("health", "the venue answers and lists the market", "取引所が応答し市場を返す",
     _check_health),
    ("halt_refuses_orders", "a halt refuses new orders", "停止中は新規注文を拒否する",
     _check_halt_refuses_orders),
    ("halt_allows_cancels", "a halt still allows cancels", "停止中も取消はできる",
     _check_halt_allows_cancels),
    ("resume_through_auction", "resuming goes through the auction", "再開は板寄せを経る",
     _check_resume_through_auction),
    ("kill_switch", "the kill switch stops everything", "キルスイッチで全市場が止まる",
     _check_kill_switch),
    ("cancel_all", "cancel-all removes resting orders", "一括取消で注文が消える",
     _check_cancel_all),
    ("withdrawal_freeze", "withdrawals freeze and unfreeze", "出金を凍結・解除できる",
     _check_withdrawal_freeze),
    ("feed_resumes", "the event feed resumes without gaps or duplicates",
     "イベント配信が欠落・重複なく再開する", _check_feed_resumes),
)
CHECK_NAMES: Final = tuple(name for name, *_ in CHECKS)


def run_conformance(control: AdapterVenueControl, *, only: tuple[str, ...] = (),
                    progress: Progress | None = None) -> ConformanceReport:
    """Run the checks (all, or those named in ``only``) against ``control``'s venue."""
    settings = control.spec.conformance
    for needed in ("market", "account", "buy_price", "sell_price", "qty"):
        if needed not in settings:
            raise VenueControlError(
                f"the adapter file has no conformance.{needed}; the suite needs a market, an "
                "account and an order's prices and quantity to trade with")
    account = settings["account"]
    run = _Run(control, settings["market"], int(account) if account.isdigit() else account,
               settings["buy_price"], settings["sell_price"], settings["qty"],
               settings.get("asset", settings["market"].split("-")[0]))
    report = ConformanceReport(control.spec.name)
    for name, title_en, title_ja, check in CHECKS:
        if only and name not in only:
            continue
        if progress is not None:
            progress(f"checking: {title_en}")
        began = time.perf_counter()
        try:
            run.open_market()
            detail, holds = check(run), True
        except (CheckFailedError, VenueControlError) as exc:
            detail, holds = str(exc), False
        report.results.append(CheckResult(name, title_en, title_ja, holds, detail,
                                          (time.perf_counter() - began) * 1000))
    try:
        run.open_market()
    except VenueControlError as exc:
        if progress is not None:
            progress(f"could not reopen {run.market} at the end: {exc}")
    return report
