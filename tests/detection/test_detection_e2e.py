"""End to end: a live venue runs the standard flow, a crash arrives in the middle of it, the
volatility rule halts the market, and the record explains it."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from detection_support import EXAMPLE_RULES, protected_venue
from sqlalchemy.orm import Session, sessionmaker

from haltguard.gateway.runtime import CommandResult, VenueRuntime
from haltguard.incidents.models import TimelineKind
from haltguard.journal.reader import Entry, JournalReader
from haltguard.venue.commands import Command, Deposit, PlaceOrder
from haltguard.venue.events import MarketStateChanged, Trade
from haltguard.venue.types import MarketState, OrderType, Side, TimeInForce
from haltguard.venue.workload import WORKLOAD_MARKET, order_flow

FLOW_BEFORE = 4_000
FLOW_AFTER = 2_000
IN_FLIGHT_MAX = 500


def _run(runtime: VenueRuntime, commands: list[Command]) -> list[CommandResult]:
    """Submit at full speed with at most ``IN_FLIGHT_MAX`` commands waiting."""
    pending: list[Future[CommandResult]] = []
    results: list[CommandResult] = []
    for command in commands:
        pending.append(runtime.submit(command))
        if len(pending) >= IN_FLIGHT_MAX:
            results.append(pending.pop(0).result(30))
    results.extend(future.result(30) for future in pending)
    return results


def test_price_crash_in_live_flow_halts_the_market_and_no_trade_follows_the_halt(
    tmp_path: Path, session_factory: sessionmaker[Session],
) -> None:
    protected = protected_venue(tmp_path, session_factory, EXAMPLE_RULES.read_text("utf-8"),
                                in_process=True)
    runtime = protected.runtime
    try:
        first_seq = runtime.status().last_seq + 1
        flow = list(order_flow(5, FLOW_BEFORE + FLOW_AFTER, first_seq=first_seq + 2,
                               accounts=10))
        crash: list[Command] = [
            PlaceOrder(WORKLOAD_MARKET, 9001, Side.BUY, 10, 85_000),
            PlaceOrder(WORKLOAD_MARKET, 9002, Side.SELL, 1_000_000, 85_000, OrderType.LIMIT,
                       TimeInForce.IOC),
        ]
        _run(runtime, [Deposit(9001, "JPY", 10**12, "test"), Deposit(9002, "SIM", 10**9, "t")])
        results = _run(runtime, flow[:FLOW_BEFORE] + crash + flow[FLOW_BEFORE:])
        assert protected.detection.flush(30)
        assert protected.market_state() is MarketState.HALTED
    finally:
        protected.detection.stop()
        runtime.stop()

    crash_seq = next(r.seq for r in results if r.command == crash[1])
    reader = JournalReader(tmp_path / "venue")
    halt_seq, trade_seqs = 0, []
    for sequenced, events in _read_all(reader):
        for event in events:
            if isinstance(event, MarketStateChanged) and event.new is MarketState.HALTED:
                halt_seq = halt_seq or sequenced.seq
                assert event.actor == "system:detection"
                assert "rule market-crash-halt" in event.reason
            elif isinstance(event, Trade):
                trade_seqs.append(sequenced.seq)
    reader.close()
    assert crash_seq < halt_seq
    assert trade_seqs and max(trade_seqs) < halt_seq, "a trade happened after the halt"
    rejected_after = [r for r in results if r.seq > halt_seq and any(
        getattr(e, "reason", None) == "market_halted" for e in r.events)]
    assert rejected_after, "the flow after the halt should be refused by the halted market"

    [incident] = protected.incidents()
    assert incident.category == "market_volatility" and incident.severity == "SEV2"
    entries = protected.timeline(incident.id)
    halt_entry = next(e for e in entries if e.kind is TimelineKind.MARKET_ACTION)
    assert "SIM-JPY open -> halted" in halt_entry.message
    assert halt_entry.details["rule_id"] == "market-crash-halt"
    assert int(halt_entry.details["observed"]) >= 1000
    assert halt_entry.details["condition"] == ">= 1000"
    assert halt_entry.details["labels"]["market"] == WORKLOAD_MARKET
    [audited] = protected.audit("detection.halt_market")
    assert audited.details["rule_id"] == "market-crash-halt"
    assert audited.details["signal"] == "market.price_move_bps"
    # The dry-run pause rule saw the same crash and only wrote it down.
    dry = [d for d in protected.decisions() if d.dry_run]
    assert [d.rule_id for d in dry] == ["market-sharp-move-pause"]


def _read_all(reader: JournalReader) -> list[Entry]:
    """Every durable record of a stopped venue's journal, with its events."""
    reader.seek(1)
    entries: list[Entry] = []
    while chunk := reader.read_available():
        entries.extend(chunk)
    return entries
