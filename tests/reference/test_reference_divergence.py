"""The divergence detector on replayed market data read through CCXT: our market falling
12% away from three reference markets (two bitFlyer-format, one Coincheck-format) for
longer than the hold time trips the shipped rule into a halt; the same markets wandering
together with normal noise do not."""

from __future__ import annotations

from decimal import Decimal

from exchange_replay import ExchangeReplay, Print
from reference_support import (
    CRASH_AT_NS,
    CRASH_FALL_NS,
    CRASH_HOLD_NS,
    STEP_NS,
    STEPS,
    T0_NS,
    crash_factor,
    venue_series,
    world_path,
)

from haltguard.detection.decisions import ActionKind, Decision, DecisionKind
from haltguard.detection.divergence import DivergenceDetector
from haltguard.detection.policies import PolicyEngine
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, load_rules_file
from haltguard.detection.signals import Signal
from haltguard.reference.markets import CcxtReference
from haltguard.reference.models import Quote, ReferenceMarket
from haltguard.reference.poller import ReferencePoller

HOLD_S = 30.0


def _replay(ours: list[Print], signals: list[Signal] | None = None) -> list[Decision]:
    """Replay four minutes: the references through CCXT and the poller, our market's prints
    straight into the detector; the shipped rules' decisions and when they came."""
    path = world_path()
    one, two = {"bitflyer": venue_series(path, 11)}, {"bitflyer": venue_series(path, 12)}
    two["coincheck"] = venue_series(path, 13)
    detector = DivergenceDetector("BTC-JPY", hold_s=HOLD_S, stale_s=10.0, references_min=2)
    engine = PolicyEngine(load_rules_file(DEFAULT_RULES_PATH))
    decisions: list[Decision] = []

    def judge(signal: Signal | None) -> None:
        if signal is not None:
            decisions.extend(engine.evaluate(signal))
            if signals is not None:
                signals.append(signal)

    def take(quote: Quote) -> None:
        judge(detector.on_reference(quote.market.name, quote.price, quote.ts_ns))

    with ExchangeReplay(one) as first, ExchangeReplay(two) as second:
        sources = [
            CcxtReference(ReferenceMarket("bitflyer", "BTC/JPY", "BTC-JPY", first.url),
                          rate_limit_ms=1),
            CcxtReference(ReferenceMarket("bitflyer", "BTC/JPY", "BTC-JPY", second.url),
                          rate_limit_ms=1),
            CcxtReference(ReferenceMarket("coincheck", "BTC/JPY", "BTC-JPY",
                                          f"{second.url}/api"), rate_limit_ms=1),
        ]
        clock = [0.0]
        poller = ReferencePoller(sources, take, interval_s=STEP_NS / 1e9,
                                 clock=lambda: clock[0])
        for step in range(STEPS):
            first.now_ns = second.now_ns = T0_NS + step * STEP_NS
            clock[0] = step * STEP_NS / 1e9
            poller.poll_due()
            judge(detector.on_ours(ours[step].price, ours[step].ts_ns))
    return decisions


def test_normal_noise_across_the_markets_trips_nothing() -> None:
    ours = venue_series(world_path(), 21)
    signals: list[Signal] = []
    assert _replay(ours, signals) == []
    assert len(signals) > STEPS, "the detector measured all along"
    assert max(int(s.details["divergence_now_bps"]) for s in signals) < 100


def test_a_flash_crash_of_our_market_alone_halts_it_after_the_hold_time() -> None:
    ours = [Print(p.trade_id, p.ts_ns, (p.price * crash_factor(p.ts_ns)).quantize(1), p.qty,
                  p.side) for p in venue_series(world_path(), 21)]
    decisions = _replay(ours)
    fired = [d for d in decisions if d.kind is DecisionKind.FIRED]
    [decision] = fired
    assert decision.rule_id == "market-reference-divergence-halt"
    assert [a for a in decision.actions if a.kind is ActionKind.HALT_MARKET]
    assert decision.title.startswith("BTC-JPY is ")
    assert Decimal(decision.observed) >= 500
    assert decision.signal.labels["direction"] == "below"
    assert CRASH_AT_NS + HOLD_S * 1e9 <= decision.ts_ns <= (
        CRASH_AT_NS + CRASH_FALL_NS + CRASH_HOLD_NS)
