"""``market-volatility``: a price crash in the synthetic flow (manual 1.3, 市場の変動).

The drill plays a panicking market: one account rests a ladder of bids ever further below
the mid (down past the circuit breaker's band), another sells through the public venue API
at a price far below, sweeping the demo book and the ladder. Two guards must act on their
own: the venue's circuit breaker refuses the fill outside its band and pauses the market,
and the detection rule ``market-crash-halt`` sees the move and halts it. The drill then
plays the operators: takes the incident, publishes the update (ja + en) if nothing did,
cancels its ladder, reopens the market through a phased resume and writes the reports.
Customer orders run in the background throughout; every acknowledged one must survive.

With the correction step (``market-volatility-correction``), while the market is halted the
drill also reviews the crash's trades against the market's price before it, and two operators
(the drill playing both) bust the absurd ones under the published erroneous-trade policy; the
report lists the trades busted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

import httpx

from haltguard.common.clock import utc_now
from haltguard.common.units import BPS
from haltguard.corrections import flows as correction_flows
from haltguard.corrections.errors import CorrectionError
from haltguard.corrections.models import BustBody, CorrectionStatus, ReferencePointBody
from haltguard.corrections.settings import CorrectionsSettings
from haltguard.drill.checks import ledger_check, lost_orders, note_played_support, paged_check
from haltguard.drill.load import (
    HTTP_TIMEOUT_S,
    OrderLoad,
    VenueClient,
    background_rate_per_s,
    venue_api_url,
)
from haltguard.drill.observe import (
    count_notices,
    count_pages,
    decisions_seen,
    halted_markets,
    incident_for,
    timeline_times,
    wait_trading,
)
from haltguard.drill.play import (
    DRILL_SECOND_ACTOR,
    ensure_public_update,
    generate_reports,
    play_resume,
    resolve_incident,
    take_incident,
    write_postmortem,
)
from haltguard.drill.scenario import (
    DRILL_ACTOR,
    Check,
    DrillContext,
    DrillResult,
    Measurements,
)
from haltguard.drill.surface import DrillSurface, database
from haltguard.drill.waiting import DrillError, seconds_between, wait_for
from haltguard.incidents import service as incidents
from haltguard.incidents.rules import Category
from haltguard.security.permissions import Role
from haltguard.venue.types import MarketState

NAME = "market-volatility"
NAME_WITH_CORRECTION = "market-volatility-correction"
RULE_ID = "market-crash-halt"
PREFERRED_MARKET = "BTC-JPY"
BUYER_ACCOUNT = 990_001  # rests the ladder of bids the crash sweeps
SELLER_ACCOUNT = 990_002  # the panic seller
LADDER_STEP_BPS = 500  # one bid every 5% below the mid
LADDER_BEYOND_BAND_BPS = 1_000  # the ladder reaches this far past the breaker's band
LADDER_DEPTH_BPS_NO_BREAKER = 3_000
LOT_MULTIPLE = 10  # each ladder bid is this many minimum quantities
DEPTH_LEVELS = 500  # the venue's most
LOAD_SHARE_BEFORE_CRASH = 4  # a quarter of the load is acknowledged before the crash


class MarketVolatilityScenario:
    name = NAME
    title_en = "Market volatility: a price crash trips the breaker and the volatility rule"
    title_ja = "市場の急変動: 価格急落でサーキットブレーカーと急変動ルールが発動"

    def __init__(self, *, correct_trades: bool = False) -> None:
        self.correct_trades = correct_trades
        if correct_trades:
            self.name = NAME_WITH_CORRECTION
            self.title_en = self.title_en + ", and its absurd trades are busted"
            self.title_ja = self.title_ja + "、異常約定を取消し"

    def run(self, context: DrillContext) -> DrillResult:
        system, scale, progress = context.system, context.scale, context.progress
        result = DrillResult(NAME, None, Measurements(), [], started_at=utc_now())
        with VenueClient.for_system(system) as client:
            symbol, spec = _pick_market(client)
            progress(f"{NAME}: customer load on the venue, then a crash in {symbol}")
            load = OrderLoad(venue_api_url(system), orders=max(scale.orders, 4),
                             prefix="drill-volatility",
                             rate_per_s=background_rate_per_s(system)).start()
            try:
                load_wait = scale.timeout_s
                wait_for(
                    lambda: load.acknowledged_count >= load.orders // LOAD_SHARE_BEFORE_CRASH,
                    load_wait, "customer orders acknowledged before the crash",
                    seen=load.describe)
                mid = _mid_price(client, symbol)
                ladder = _rest_ladder(client, symbol, spec)
                progress(f"{NAME}: {len(ladder)} bids down to {ladder[-1]}; selling through them")
                crash_at = utc_now()
                crash = _crash(client, symbol, spec, ladder)
                self._respond(context, result, client=client, symbol=symbol, crash=crash,
                              crash_at=crash_at, load=load, mid=mid)
            finally:
                load.stop()
        result.finished_at = utc_now()
        return result

    def _respond(self, context: DrillContext, result: DrillResult, *, client: VenueClient,
                 symbol: str, crash: dict[str, Any], crash_at: datetime,
                 load: OrderLoad, mid: Decimal | None = None) -> None:
        system, scale, progress = context.system, context.scale, context.progress
        events = crash.get("events", [])
        trades = [e for e in events if e.get("type") == "trade"]
        trips = [e for e in events if e.get("type") == "circuit_breaker_tripped"]
        lowest = min((Decimal(e["price"]) for e in trades), default=None)
        result.measurements.extra["crash_trades"] = str(len(trades))
        result.measurements.extra["lowest_trade_price"] = str(lowest) if lowest else "none"
        result.checks.append(Check(
            "circuit breaker tripped", bool(trips), "the venue's breaker refuses the fill "
            "outside its band and pauses the market",
            f"{len(trips)} trip(s); {len(trades)} trades down to {lowest}",
            name_ja="サーキットブレーカー発動", expected_ja="値幅外の約定を拒否し市場を一時停止",
            seen_ja=f"発動 {len(trips)} 回、約定 {len(trades)} 件(最安値 {lowest})"))

        progress(f"{NAME}: waiting for the volatility rule's incident")
        incident_id = wait_for(
            lambda: incident_for(system, since=crash_at, rule_id=RULE_ID),
            scale.timeout_s, f"an incident from rule {RULE_ID}",
            seen=lambda: decisions_seen(system, crash_at))
        result.incident_id = incident_id
        wait_for(lambda: symbol in halted_markets(system), scale.timeout_s,
                 f"{symbol} halted")
        take_incident(system, incident_id, started_at=crash_at,
                      cause=f"drill: a price crash injected into {symbol}")
        played: list[str] = []
        ensure_public_update(
            system, incident_id, grace_s=min(2.0, scale.timeout_s),
            cause_ja=f"{symbol} の価格急変動", cause_en=f"a sharp price move in {symbol}",
            notes=played)
        note_played_support(result, played)
        _check_classification(system, incident_id, result)
        if self.correct_trades:
            progress(f"{NAME}: reviewing the crash's trades; two operators bust the absurd ones")
            bust_crash_trades(system, result, incident_id=incident_id, symbol=symbol,
                              crash_at=crash_at, mid=mid)

        progress(f"{NAME}: cancelling the drill's ladder, then a phased resume of {symbol}")
        with httpx.Client(base_url=client.base_url, timeout=HTTP_TIMEOUT_S) as http:
            cancelled = http.post(f"/v1/markets/{symbol}/cancel-all",
                                  json={"account": BUYER_ACCOUNT})
        result.note("訓練が置いた買い注文の残りを取消しました。",
                    f"The drill cancelled what was left of its ladder of bids "
                    f"(HTTP {cancelled.status_code}).")
        resume = play_resume(system, incident_id, [symbol],
                             reason="drill: crash contained, book checked")
        result.note("訓練が承認担当者として段階的再開を実行しました。",
                    f"The drill played the approving operator(s) for the phased resume "
                    f"({resume.detail}; second approvals: {resume.approvals}).")
        trading_at = wait_trading(system, [symbol], scale.timeout_s)
        load.wait_done(scale.timeout_s)
        load.stop()
        resolve_incident(system, incident_id, "drill: market reopened after the crash")
        _finish(context, result, incident_id=incident_id, crash_at=crash_at,
                trading_at=trading_at, load=load, symbol=symbol)

        progress(f"{NAME}: reports")
        write_postmortem(
            system, incident_id, summary=f"Drill: a price crash in {symbol}.",
            cause="Aggressive selling through a thin book, injected by the drill.",
            went_well=["The breaker and the volatility rule stopped the market on their own."],
            went_badly=[])
        if context.report_dir is not None:
            result.report_paths += [str(p) for p in generate_reports(
                system, incident_id, context.report_dir)]


def _pick_market(client: VenueClient) -> tuple[str, dict[str, Any]]:
    """BTC-JPY when listed and open, else the first open market; a drill needs one."""
    markets = [m for m in client.markets()["markets"] if m["state"] == MarketState.OPEN.value]
    if not markets:
        raise DrillError("no open market to crash; start the system with --demo or open one")
    chosen = next((m for m in markets if m["symbol"] == PREFERRED_MARKET), markets[0])
    return str(chosen["symbol"]), chosen


def _ticks(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).to_integral_value(rounding=ROUND_DOWN) * tick


def _fund(client: VenueClient, account: int, asset: str, amount: Decimal) -> None:
    whole = amount.to_integral_value(rounding=ROUND_UP) + 1
    answer = client.admin_post("deposits", {"account": account, "asset": asset,
                                            "amount": str(whole), "reference": "drill funding"})
    if answer.status_code != 200:
        raise DrillError(f"funding drill account {account} with {whole} {asset} was refused: "
                         f"HTTP {answer.status_code} {answer.text[:200]}")


def _rest_ladder(client: VenueClient, symbol: str, spec: dict[str, Any]) -> list[Decimal]:
    """Bids every 5% below the mid down past the breaker's first band; returns their prices
    (highest first)."""
    detail = client.market(symbol)
    tick = Decimal(str(spec["tick_size"]))
    top = detail.get("best_bid") or detail.get("best_ask")
    if not top:
        raise DrillError(f"{symbol} has an empty book; the crash needs a price to fall from")
    mid = Decimal(str(top))
    breaker = spec.get("breaker") or {}
    bands = breaker.get("band_bps") or []
    depth_bps = min(int(bands[0]) + LADDER_BEYOND_BAND_BPS if bands
                    else LADDER_DEPTH_BPS_NO_BREAKER, BPS - LADDER_STEP_BPS)
    qty = _ladder_qty(spec)
    prices = [_ticks(mid * (BPS - bps) / BPS, tick)
              for bps in range(LADDER_STEP_BPS, depth_bps + 1, LADDER_STEP_BPS)]
    prices = [p for p in prices if p > 0]
    _fund(client, BUYER_ACCOUNT, str(spec["quote"]), sum(prices) * qty * 2)
    stamp = utc_now().strftime("%H%M%S%f")
    for number, price in enumerate(prices):
        answer = client.place_patiently(symbol, {
            "account": BUYER_ACCOUNT, "side": "buy", "qty": str(qty), "price": str(price),
            "client_order_id": f"drill-ladder-{stamp}-{number}"})
        if answer.status_code != 201:
            raise DrillError(f"the drill's bid at {price} in {symbol} was refused: HTTP "
                             f"{answer.status_code} {answer.text[:200]}")
    return prices


def _crash(client: VenueClient, symbol: str, spec: dict[str, Any],
           ladder: list[Decimal]) -> dict[str, Any]:
    """Sell everything bid down to the ladder's foot, below the lowest bid,
    immediate-or-cancel: what is left once the breaker stops the sweep is cancelled."""
    with httpx.Client(base_url=client.base_url, timeout=HTTP_TIMEOUT_S) as http:
        depth = http.get(f"/v1/markets/{symbol}/depth", params={"levels": DEPTH_LEVELS}).json()
    lowest_bid = ladder[-1]
    qty = sum((Decimal(level[1]) for level in depth["bids"] if Decimal(level[0]) >= lowest_bid),
              Decimal(0))
    max_qty = Decimal(str(spec["max_qty"]))
    if len(depth["bids"]) >= DEPTH_LEVELS and Decimal(depth["bids"][-1][0]) > lowest_bid:
        qty = max_qty  # deeper than shown: as much as one order may sell
    qty = min(qty, max_qty)
    tick = Decimal(str(spec["tick_size"]))
    price = max(_ticks(lowest_bid / 2, tick), tick)
    _fund(client, SELLER_ACCOUNT, str(spec["base"]), qty * 2)
    answer = client.place_patiently(symbol, {
        "account": SELLER_ACCOUNT, "side": "sell", "qty": str(qty), "price": str(price),
        "tif": "ioc", "client_order_id": f"drill-crash-{utc_now().strftime('%H%M%S%f')}"})
    if answer.status_code != 201:
        raise DrillError(f"the crash order in {symbol} was refused: HTTP {answer.status_code} "
                         f"{answer.text[:200]}")
    body: dict[str, Any] = answer.json()
    return body


def _ladder_qty(spec: dict[str, Any]) -> Decimal:
    return Decimal(str(spec["min_qty"])) * LOT_MULTIPLE


def _check_classification(system: DrillSurface, incident_id: int, result: DrillResult) -> None:
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        category, severity = incident.category, incident.severity
    result.checks.append(Check(
        "classified as market volatility", category == Category.MARKET_VOLATILITY,
        "category market_volatility (manual 1.3)", f"{category.value} {severity.value}",
        name_ja="分類: 市場の急変動", expected_ja="market_volatility",
        seen_ja=f"{category.value} {severity.value}"))


def _finish(context: DrillContext, result: DrillResult, *, incident_id: int, crash_at: datetime,
            trading_at: datetime, load: OrderLoad, symbol: str) -> None:
    system = context.system
    times = timeline_times(system, incident_id)
    m = result.measurements
    m.time_to_detect_s = seconds_between(crash_at, times.detected_at)
    m.time_to_halt_s = seconds_between(crash_at, times.first_halt_at)
    m.time_to_first_update_s = seconds_between(crash_at, times.first_public_update_at)
    m.recovery_time_s = seconds_between(times.first_halt_at, trading_at)
    lost = lost_orders(system, load.acknowledged)
    m.acknowledged_orders_lost = lost.count
    ledger = ledger_check(system)
    m.ledger_invariant_ok = ledger.ok
    notices = count_notices(system, incident_id)
    m.notices_sent = notices.sent
    pages = count_pages(system, incident_id)
    m.extra["acknowledged_orders"] = str(lost.checked)
    m.extra["pages"] = str(pages)
    result.checks += [
        Check("market halted by the volatility rule", times.first_halt_at is not None,
              f"{symbol} halted by rule {RULE_ID}",
              "halted" if times.first_halt_at else "no halt in the incident's timeline",
              name_ja="急変動ルールによる取引停止", expected_ja=f"{symbol} 停止",
              seen_ja="停止済み" if times.first_halt_at else "停止記録なし"),
        paged_check(pages),
        Check("public update in Japanese and English",
              bool(times.public_update_ja and times.public_update_en),
              "a published update with both texts",
              f"ja: {times.public_update_ja[:60]!r}; en: {times.public_update_en[:60]!r}",
              name_ja="日英の公開告知", expected_ja="日本語と英語の両方",
              seen_ja="あり" if times.public_update_ja and times.public_update_en else "なし"),
        Check("market trading again after a phased resume", times.first_resume_at is not None,
              f"{symbol} reopened through cancel-only and an auction",
              f"open again {m.recovery_time_s:.2f} s after the halt"
              if m.recovery_time_s is not None else "not reopened",
              name_ja="段階的再開", expected_ja="取消のみ→板寄せ→通常",
              seen_ja="再開済み" if times.first_resume_at else "未再開"),
        Check("no acknowledged order lost", lost.count == 0,
              "every acknowledged order in the journal",
              f"{lost.count} of {lost.checked} missing",
              name_ja="受付済み注文の消失なし", expected_ja="0 件",
              seen_ja=f"{lost.checked} 件中 {lost.count} 件消失"),
        Check("ledger invariant after recovery", ledger.ok, "funds conserved, books sane",
              ledger.detail, name_ja="台帳の整合性", expected_ja="整合",
              seen_ja="整合" if ledger.ok else "不整合"),
    ]



def _mid_price(client: VenueClient, symbol: str) -> Decimal | None:
    detail = client.market(symbol)
    top = detail.get("best_bid") or detail.get("best_ask")
    return Decimal(str(top)) if top else None


def bust_crash_trades(system: DrillSurface, result: DrillResult, *, incident_id: int,
                      symbol: str, crash_at: datetime, mid: Decimal | None) -> None:
    """The correction step: review the drill's ladder fills since the crash (5% or more from
    the market's price just before it, given to the review as a reference series), propose
    busting them as one operator and approve as another, as the policy's roles; the check
    passes when the venue journaled the bust."""
    if system.remote_venue_url:
        result.note("取引所が別のマシンにあるため、約定の訂正は行いませんでした。",
                    "The venue runs elsewhere, so the drill could not read its journal to "
                    "correct trades.")
        return
    settings = CorrectionsSettings(journal_dir=system.data_dir)
    series = [] if mid is None else [ReferencePointBody(
        market=symbol, time=crash_at - timedelta(seconds=1), price=str(mid))]
    body = BustBody(
        incident_id=incident_id, reason="drill: trades at absurd prices during the crash",
        from_time=crash_at, to_time=utc_now(), market=symbol, account=BUYER_ACCOUNT,
        deviation_bps_min=LADDER_STEP_BPS - 1, reference_series=series)
    try:
        with database(system) as session:
            proposed = correction_flows.propose_bust(
                session, body, settings=settings, actor=DRILL_ACTOR,
                role=Role.INCIDENT_COMMANDER.value, now=utc_now())
            assert proposed.id is not None
            decided = correction_flows.approve(
                session, proposed.id, digest=proposed.digest, approver=DRILL_SECOND_ACTOR,
                role=Role.INCIDENT_COMMANDER.value, settings=settings,
                venue=system.venue_control, now=utc_now())
    except CorrectionError as exc:
        result.checks.append(Check(
            "absurd trades busted by two operators", False,
            "the crash's trades 5% or more off the prior price busted with four eyes",
            exc.message, name_ja="異常約定の取消(2名承認)",
            expected_ja="急落時の異常約定を2名の承認で取消", seen_ja=exc.message_ja or ""))
        return
    busted = [int(trade["trade_id"]) for trade in decided.plan["trades"]]
    shown = ", ".join(f"{t['trade_id']} @ {t['price_text']} ({t['deviation_bps']} bps)"
                      for t in decided.plan["trades"])
    result.measurements.extra["trades_busted"] = ", ".join(map(str, busted))
    applied = decided.status is CorrectionStatus.APPLIED
    result.checks.append(Check(
        "absurd trades busted by two operators", applied and bool(busted),
        "the crash's trades 5% or more off the prior price busted with four eyes",
        f"{decided.status}: {len(busted)} trade(s) {shown} {decided.detail}".strip(),
        name_ja="異常約定の取消(2名承認)", expected_ja="急落時の異常約定を2名の承認で取消",
        seen_ja=f"{decided.status}: {len(busted)} 件"))
    result.note(f"訓練が2名の担当者として異常約定 {len(busted)} 件を取り消しました"
                f"(約定番号 {', '.join(map(str, busted))})。",
                f"The drill played two operators: trades {', '.join(map(str, busted))} busted "
                f"(proposed by {DRILL_ACTOR}, approved by {DRILL_SECOND_ACTOR}).")


SCENARIO = MarketVolatilityScenario()
SCENARIO_WITH_CORRECTION = MarketVolatilityScenario(correct_trades=True)
