"""Market detectors fire on their pattern and stay quiet on a normal trading day."""

from __future__ import annotations

from decimal import Decimal

from detection_support import DAY_START_NS, EXAMPLE_RULES, NS, replay_day, rules

from haltguard.detection.decisions import Decision
from haltguard.detection.feed import VenueFeed
from haltguard.detection.market import (
    COMMAND_QUARANTINED,
    VENUE_SELF_ACTOR,
    BookDetector,
    PriceMoveDetector,
    TradeRateDetector,
)
from haltguard.detection.rulesfile import load_rules_file
from haltguard.detection.service import DetectionService
from haltguard.venue.commands import Deposit, Heartbeat, PlaceOrder, SetMarketState
from haltguard.venue.markets import BreakerConfig
from haltguard.venue.types import MarketState, OrderType, Side, TimeInForce
from haltguard.venue.workload import WORKLOAD_MARKET

LEVELS = [Decimal(300), Decimal(500), Decimal(1000)]
NORMAL_DAY_COMMANDS = 20_000


def test_price_crash_within_the_window_is_reported_at_each_level_it_crosses() -> None:
    detector = PriceMoveDetector("BTC-JPY", 60 * NS, LEVELS)
    prices = [100_000, 100_100, 99_900, 97_000, 94_900, 89_000]
    signals = [detector.on_trade(i * NS, price) for i, price in enumerate(prices)]
    reported = [(s.value, s.labels["direction"], s.details["reference_price"])
                for s in signals if s is not None]
    assert reported == [(Decimal(0), "down", "100000"), (Decimal(309), "down", "100100"),
                        (Decimal(519), "down", "100100"), (Decimal(1108), "down", "100100")]
    assert signals[-1] is not None
    assert signals[-1].labels == {"market": "BTC-JPY", "base": "BTC", "quote": "JPY",
                                  "direction": "down"}


def test_price_rise_is_reported_as_up_and_a_return_below_the_level_is_reported_too() -> None:
    detector = PriceMoveDetector("BTC-JPY", 60 * NS, [Decimal(500)])
    up = detector.on_trade(0, 100_000), detector.on_trade(NS, 106_000)
    assert up[0] is not None and up[0].value == 0  # the first look is always told
    assert up[1] is not None
    assert (up[1].value, up[1].labels["direction"]) == (Decimal(600), "up")
    back = detector.on_trade(120 * NS, 106_000)  # the window has forgotten the low
    assert back is not None and back.value == 0


def test_slow_decline_spread_over_more_than_the_window_stays_quiet() -> None:
    detector = PriceMoveDetector("BTC-JPY", 60 * NS, [Decimal(500)])
    price = 100_000
    assert detector.on_trade(0, price) is not None  # the first look: 0 bps
    for second in range(1, 1_200):  # -20% over twenty minutes: about 1% per minute
        price -= price // 5_400
        assert detector.on_trade(second * NS, price) is None


def test_trade_rate_spike_is_reported_only_after_a_whole_baseline() -> None:
    detector = TradeRateDetector("BTC-JPY", window_s=10, baseline_s=300,
                                 levels=[Decimal(500)], min_trades=50)
    early = [detector.on_trade(DAY_START_NS + i * NS // 20) for i in range(200)]
    assert all(s is None for s in early)  # a burst in the first seconds: no baseline yet
    ts = DAY_START_NS + 10 * NS
    steady = []
    for _ in range(300):  # one trade a second for five minutes
        steady.append(detector.on_trade(ts))
        ts += NS
    assert [s.value for s in steady if s is not None] == [Decimal(61)]  # the first look
    spike = []
    for _ in range(12 * 20):  # then twenty a second
        spike.append(detector.on_trade(ts))
        ts += NS // 20
    reported = [s for s in spike if s is not None]
    assert reported and reported[0].value >= 500
    assert reported[0].name == "market.trade_rate_ratio"


def test_spread_blowout_and_depth_collapse_are_reported_from_book_samples() -> None:
    book = BookDetector("BTC-JPY", depth_bps=100, spread_levels=[Decimal(500)],
                        depth_levels=[Decimal(10)])
    normal_bids = [(99_990, 40), (99_950, 60)]
    normal_asks = [(100_010, 40), (100_050, 60)]
    first = book.on_sample(0, normal_bids, normal_asks)  # the first look is always told
    assert [(s.name, s.value) for s in first] == [("market.spread_bps", Decimal(2)),
                                                  ("market.depth_lots", Decimal(100))]
    assert book.on_sample(1, normal_bids, normal_asks) == []
    thin = book.on_sample(1, [(99_990, 3)], [(100_010, 2), (120_000, 900)])
    assert [(s.name, s.value) for s in thin] == [("market.depth_lots", Decimal(2))]
    empty = book.on_sample(2, [], normal_asks)
    # Depth 2 -> 0 stays below the only level (10): nothing new to say about it.
    assert [(s.name, s.value) for s in empty] == [("market.spread_bps", Decimal(10_000))]


def _feed(rules_path_text: str | None = None) -> tuple[DetectionService, VenueFeed]:
    ruleset = load_rules_file(EXAMPLE_RULES) if rules_path_text is None else rules(
        rules_path_text)
    detection = DetectionService(rules=ruleset)
    return detection, VenueFeed(detection)


def test_normal_trading_day_replayed_through_a_real_venue_raises_no_alarm() -> None:
    detection, feed = _feed()
    trades = 0
    last = None
    for venue, seq, ts, events in replay_day(NORMAL_DAY_COMMANDS):
        feed.on_applied(venue, seq, ts, events)
        trades += sum(1 for event in events if type(event).__name__ == "Trade")
        last = (venue, seq, ts)
    assert trades > 1_000, "the replay must actually trade for the test to mean anything"
    assert feed.commands_seen > NORMAL_DAY_COMMANDS
    assert detection.recent_decisions() == []
    # The same detectors, still running, see a crash at the end of that day.
    assert last is not None
    venue, seq, ts = last
    for command in (Deposit(9001, "JPY", 10**12, "test"), Deposit(9002, "SIM", 10**9, "test"),
                    PlaceOrder(WORKLOAD_MARKET, 9001, Side.BUY, 10, 85_000),
                    PlaceOrder(WORKLOAD_MARKET, 9002, Side.SELL, 1_000_000, 85_000,
                               OrderType.LIMIT, TimeInForce.IOC)):
        seq, ts = seq + 1, ts + NS
        feed.on_applied(venue, seq, ts, venue.apply(seq, ts, command))
    fired = [d.rule_id for d in detection.recent_decisions()]
    assert "market-crash-halt" in fired


def test_venue_breaker_trips_become_signals_and_repeated_trips_fire_the_rule() -> None:
    detection, feed = _feed("""
        version: 1
        rules:
          - id: trips
            signal: venue.circuit_breaker_tripped
            when: ">= 1"
            count: 2
            within_s: 3600
            classification: market_volatility
            severity: SEV2
            group_by: [market]
            actions: [open_or_update_incident, {cancel_only: {market: "{market}"}}]
    """)
    breaker = BreakerConfig(band_bps=[300], pause_ns=5 * NS, reference="static")
    day = replay_day(2_000, breaker=breaker, hours=1)
    venue, seq, ts = None, 0, 0
    for venue, seq, ts, events in day:
        feed.on_applied(venue, seq, ts, events)
    assert venue is not None and detection.recent_decisions() == []
    trips = 0
    for _ in range(2):
        # A trade near the old price first: after a trip the breaker takes its reference
        # from the next trade, and the first sweep took the bids near the old price.
        for command in (Deposit(9001, "JPY", 10**12, "t"), Deposit(9002, "SIM", 10**9, "t"),
                        PlaceOrder(WORKLOAD_MARKET, 9001, Side.BUY, 10, 99_000),
                        PlaceOrder(WORKLOAD_MARKET, 9002, Side.SELL, 1, 99_000,
                                   OrderType.LIMIT, TimeInForce.IOC),
                        PlaceOrder(WORKLOAD_MARKET, 9001, Side.BUY, 5, 90_000),
                        PlaceOrder(WORKLOAD_MARKET, 9002, Side.SELL, 1_000_000, 90_000,
                                   OrderType.LIMIT, TimeInForce.IOC)):
            seq, ts = seq + 1, ts + NS
            events = venue.apply(seq, ts, command)
            trips += sum(1 for e in events if type(e).__name__ == "CircuitBreakerTripped")
            feed.on_applied(venue, seq, ts, events)
        while venue.market_state(WORKLOAD_MARKET).state is not MarketState.OPEN:
            seq, ts = seq + 1, ts + 10 * NS  # let the pause end (an auction, then open)
            feed.on_applied(venue, seq, ts, venue.apply(seq, ts, Heartbeat()))
    assert trips == 2
    decisions = detection.recent_decisions()
    assert [(d.rule_id, d.actions[1].target) for d in decisions] == [("trips", WORKLOAD_MARKET)]
    assert decisions[0].signal.details["band_bps"] == "300"


def test_a_fall_from_a_new_high_is_measured_from_that_high() -> None:
    detector = PriceMoveDetector("BTC-JPY", 60 * NS, [Decimal(500)])
    assert detector.on_trade(0, 100_000) is not None  # the first look: 0 bps
    assert detector.on_trade(NS // 10, 99_000) is None  # 100 bps: quiet
    assert detector.on_trade(NS // 5, 103_000) is None  # a new high, 404 bps over the low
    fall = detector.on_trade(NS // 2, 96_500)  # 631 bps below the new high
    assert fall is not None and fall.labels["direction"] == "down"
    assert (fall.value, fall.details["reference_price"]) == (Decimal(631), "103000")


def test_the_way_back_below_a_level_is_reported_once_the_window_forgets_the_move() -> None:
    detector = PriceMoveDetector("BTC-JPY", 2 * NS, [Decimal(500)])
    detector.on_trade(0, 100_000)
    crash = detector.on_trade(NS // 5, 94_000)
    assert crash is not None and crash.value == 600
    assert detector.on_trade(NS + NS // 2, 99_000) is None  # 531 bps up: still above
    back = detector.on_trade(3 * NS + NS // 2, 98_900)  # seconds 0 and 1 have left
    assert back is not None and back.value == 0


def test_a_halt_the_venue_engages_by_itself_opens_a_software_bug_incident() -> None:
    """The runtime halts a market after quarantining a command the engine raised on; the
    shipped rules turn that halt (and only that kind of halt) into an incident."""
    detection, feed = _feed()
    day = replay_day(200, hours=1)
    venue, seq, ts = None, 0, 0
    for venue, seq, ts, events in day:
        feed.on_applied(venue, seq, ts, events)
    assert venue is not None
    operator_halt = SetMarketState(WORKLOAD_MARKET, MarketState.HALTED, actor="alice",
                                   reason="checking a report")
    reopen = SetMarketState(WORKLOAD_MARKET, MarketState.OPEN, actor="alice", reason="checked")
    self_halt = SetMarketState(WORKLOAD_MARKET, MarketState.HALTED, actor=VENUE_SELF_ACTOR,
                               reason=f"software bug: the engine raised on seq {seq}")
    for command in (operator_halt, reopen):
        seq, ts = seq + 1, ts + NS
        feed.on_applied(venue, seq, ts, venue.apply(seq, ts, command))
    def quarantine_decisions() -> list[Decision]:
        return [d for d in detection.recent_decisions()
                if d.rule_id == "venue-command-quarantined"]

    assert quarantine_decisions() == []
    seq, ts = seq + 1, ts + NS
    feed.on_applied(venue, seq, ts, venue.apply(seq, ts, self_halt))
    decisions = quarantine_decisions()
    assert len(decisions) == 1
    assert decisions[0].signal.name == COMMAND_QUARANTINED
    assert decisions[0].signal.labels["market"] == WORKLOAD_MARKET
    assert "software bug" in decisions[0].signal.details["reason"]
