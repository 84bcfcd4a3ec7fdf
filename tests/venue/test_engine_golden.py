"""Golden event streams: the exact events each order type, STP mode and state produces.

Each scenario runs on a fresh funded venue; the commands and every event they caused are
compared with ``golden/<scenario>.json``. A change in any event (a field, the order, a
fee) fails the test. After an intended change, regenerate the files with

    HALTGUARD_UPDATE_GOLDEN=1 .venv/bin/pytest tests/venue/test_engine_golden.py

and review the diff like code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from venue_support import MARKET, SECOND, Harness, funded, order

from haltguard.venue.commands import (
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    Heartbeat,
    KillSwitch,
    ResumePhase,
    SetMarketState,
    StartResumePlan,
    Uncross,
    Withdraw,
)
from haltguard.venue.markets import BreakerConfig
from haltguard.venue.types import MarketState, OrderType, SelfTradePrevention, Side, TimeInForce

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("HALTGUARD_UPDATE_GOLDEN") == "1"
OPS = {"actor": "ops@example.com", "reason": "golden", "incident_id": "INC-1"}
BUY, SELL = Side.BUY, Side.SELL
LIMIT = OrderType.LIMIT

# A step is a command, or (command, nanoseconds since the previous step).
Step = Command | tuple[Command, int]


def limit_rest_and_cancel(first: int) -> list[Step]:
    return [order(1, BUY, 3, 990), order(2, SELL, 2, 1_010), CancelOrder(MARKET, 1, first)]


def partial_fills(first: int) -> list[Step]:
    return [
        order(1, SELL, 2, 1_000),
        order(2, SELL, 3, 1_001),
        order(3, BUY, 4, 1_005),  # fills 2 @1000 and 2 @1001, rests nothing
        order(3, BUY, 4, 1_001),  # fills the last 1 @1001, rests 3 @1001
    ]


def market_orders(first: int) -> list[Step]:
    return [
        Deposit(7, "JPY", 2_500),
        order(1, SELL, 1, 1_000),
        order(1, SELL, 5, 1_100),
        order(7, BUY, 3),  # runs out of JPY after 2 lots
        order(2, SELL, 2),  # nothing bid: cancelled unfilled
        order(2, BUY, 1, 0, tif=TimeInForce.FOK),
    ]


def ioc_and_fok(first: int) -> list[Step]:
    return [
        order(1, SELL, 2, 1_000),
        order(2, BUY, 3, 1_000, tif=TimeInForce.IOC),
        order(1, SELL, 2, 1_000),
        order(2, BUY, 3, 1_000, tif=TimeInForce.FOK),  # only 2 there: rejected
        order(2, BUY, 2, 1_000, tif=TimeInForce.FOK),
    ]


def post_only(first: int) -> list[Step]:
    return [
        order(1, SELL, 2, 1_000),
        order(2, BUY, 1, 1_000, post_only=True),
        order(2, BUY, 1, 999, post_only=True),
        order(2, BUY, 1, 999, post_only=True, tif=TimeInForce.IOC),
    ]


def self_trade_prevention(first: int) -> list[Step]:
    return [
        order(1, SELL, 2, 1_000),
        order(1, BUY, 1, 1_000, stp=SelfTradePrevention.CANCEL_TAKER),
        order(2, SELL, 1, 1_000),
        order(1, BUY, 2, 1_000, stp=SelfTradePrevention.CANCEL_MAKER),
        order(1, SELL, 1, 1_002),
        order(1, BUY, 1, 1_002, stp=SelfTradePrevention.CANCEL_BOTH),
    ]


def client_order_ids(first: int) -> list[Step]:
    return [
        order(1, BUY, 1, 990, client_order_id="c-1"),
        order(1, BUY, 1, 990, client_order_id="c-1"),
        CancelOrder(MARKET, 1, client_order_id="c-1"),
        order(1, BUY, 1, 990, client_order_id="c-1"),
        CancelOrder(MARKET, 2, first),
    ]


def client_order_id_reuse(first: int) -> list[Step]:
    return [
        order(1, BUY, 1, 990, client_order_id="r-1"),
        order(1, BUY, 2, 991, client_order_id="r-1"),  # other price and quantity: refused
        order(1, BUY, 1, 990, client_order_id="r-1"),  # the same terms: a repeat
        order(9, BUY, 1, 990, client_order_id="r-1"),  # an account the venue never funded
        Withdraw(9, "JPY", 1),
    ]


def cancels_and_funds(first: int) -> list[Step]:
    return [
        order(1, BUY, 1, 990),
        order(2, BUY, 1, 991),
        order(1, SELL, 1, 1_010),
        CancelAll(account=1, market=MARKET, **OPS),
        Withdraw(2, "JPY", 10_000_000),  # part of it is held by the bid
        Withdraw(2, "JPY", 5_000, "bank-1", "w-1"),
        CancelAll(market=MARKET, **OPS),
    ]


def halts(first: int) -> list[Step]:
    return [
        order(1, BUY, 1, 990),
        SetMarketState(MARKET, MarketState.HALTED, cancels_allowed=False, **OPS),
        order(2, SELL, 1, 990),
        CancelOrder(MARKET, 1, first),
        SetMarketState(MARKET, MarketState.OPEN, **OPS),
        SetMarketState(MARKET, MarketState.CANCEL_ONLY, **OPS),
        CancelOrder(MARKET, 1, first),
        KillSwitch(True, **OPS),
        order(2, SELL, 1, 990),
        KillSwitch(False, **OPS),
    ]


def auction(first: int) -> list[Step]:
    return [
        order(1, SELL, 2, 1_000),
        order(2, BUY, 2, 1_000),
        SetMarketState(MARKET, MarketState.AUCTION, auction_ns=60 * SECOND, **OPS),
        order(1, BUY, 5, 1_010),
        order(2, SELL, 3, 995),
        order(3, SELL, 1, 1_005),
        order(3, BUY, 1, 0),  # market orders wait for no auction
        (Heartbeat(), 60 * SECOND),
    ]


def manual_uncross(first: int) -> list[Step]:
    return [
        SetMarketState(MARKET, MarketState.AUCTION, **OPS),
        order(1, BUY, 2, 1_003),
        order(2, SELL, 2, 1_001),
        Uncross(MARKET, **OPS),
    ]


def breaker(first: int) -> list[Step]:
    return [
        order(1, SELL, 1, 1_000),
        order(2, BUY, 1, 1_000),  # reference 1000, band 900..1100
        order(1, SELL, 2, 1_150),
        order(2, BUY, 2, 1_200),  # trips: auction for 60 s
        (Heartbeat(), 60 * SECOND),
    ]


def resume_plan(first: int) -> list[Step]:
    phases = [
        ResumePhase(MarketState.CANCEL_ONLY, 10 * SECOND),
        ResumePhase(MarketState.AUCTION, 5 * SECOND),
        ResumePhase(MarketState.OPEN, 0),
    ]
    return [
        order(1, BUY, 2, 1_000),
        SetMarketState(MARKET, MarketState.HALTED, **OPS),
        StartResumePlan(MARKET, phases, **OPS),
        (Heartbeat(), 10 * SECOND),
        order(2, SELL, 1, 990),
        (Heartbeat(), 5 * SECOND),
    ]


SCENARIOS: dict[str, Callable[[int], list[Step]]] = {
    "limit_rest_and_cancel": limit_rest_and_cancel,
    "partial_fills": partial_fills,
    "market_orders": market_orders,
    "ioc_and_fok": ioc_and_fok,
    "post_only": post_only,
    "self_trade_prevention": self_trade_prevention,
    "client_order_ids": client_order_ids,
    "client_order_id_reuse": client_order_id_reuse,
    "cancels_and_funds": cancels_and_funds,
    "halts": halts,
    "auction": auction,
    "manual_uncross": manual_uncross,
    "breaker": breaker,
    "resume_plan": resume_plan,
}


def run(name: str) -> list[object]:
    config = BreakerConfig(band_bps=[1_000], pause_ns=60 * SECOND, reference="static")
    harness: Harness = funded(breaker=config if name == "breaker" else None)
    record: list[object] = []
    for step in SCENARIOS[name](harness.seq + 1):
        command, after_ns = step if isinstance(step, tuple) else (step, 1)
        events = harness(command, after_ns=after_ns)
        record.append(
            {
                "seq": harness.seq,
                "command": msgspec.to_builtins(command),
                "events": msgspec.to_builtins(events),
            }
        )
    assert harness.venue.check_invariants() == []
    return record


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_event_stream_matches_golden_file(name: str) -> None:
    path = GOLDEN_DIR / f"{name}.json"
    actual = run(name)
    if UPDATE:
        path.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n")
    assert path.exists(), f"{path} is missing: run with HALTGUARD_UPDATE_GOLDEN=1 to create it"
    assert actual == json.loads(path.read_text()), f"{name} events changed; see {path}"


def test_every_golden_file_belongs_to_a_scenario() -> None:
    assert {path.stem for path in GOLDEN_DIR.glob("*.json")} <= set(SCENARIOS)
