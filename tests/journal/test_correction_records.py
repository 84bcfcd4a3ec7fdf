"""Trade corrections in the journal: busts, re-pricings and a rollback are ordinary records,
so recovery (snapshot + log) and the journal reader reach exactly the venue that applied
them, and the reader regenerates their events for every consumer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haltguard.journal import recover
from haltguard.journal.codec import (
    HEAD_BYTES,
    RECORD_PAYLOAD_BYTES_MAX,
    decode_record,
    encode_record,
)
from haltguard.journal.reader import JournalReader
from haltguard.venue.commands import (
    ROLLBACK_REVERSALS_MAX,
    AdjustTrade,
    BalanceChange,
    BustTrade,
    Command,
    RollbackTo,
    TradeFacts,
)
from haltguard.venue.corrections import rollback_command, trade_facts
from haltguard.venue.engine import Venue
from haltguard.venue.events import Trade, TradeAdjusted, TradeBusted, VenueRolledBack
from haltguard.venue.types import INT64_MAX

from .support import ts_of, workload, write_journal

FOUR_EYES: dict[str, Any] = {"actor": "alice", "approver": "bob", "reason": "erroneous",
                             "rule": "band"}


def corrected_history() -> tuple[list[Command], Venue]:
    """A workload with a bust, a re-pricing and a rollback among its orders."""
    flow = workload(900)
    venue = Venue()
    commands: list[Command] = []
    trades: list[TradeFacts] = []

    def apply(command: Command) -> None:
        commands.append(command)
        seq = len(commands)
        events = venue.apply(seq, ts_of(seq), command)
        trades.extend(trade_facts(e) for e in events if isinstance(e, Trade))

    for command in flow[:500]:
        apply(command)
    assert len(trades) > 10, "the workload should trade"
    apply(BustTrade([trades[3]], **FOUR_EYES, allow_debit=True))
    apply(AdjustTrade(trades[5], trades[5].price + 1, **FOUR_EYES, allow_debit=True))
    target, first_trade_id = len(commands), venue.next_trade_id
    for command in flow[500:800]:
        apply(command)
    since = [t for t in trades if t.trade_id >= first_trade_id]
    apply(rollback_command(
        venue.markets, since, venue.corrections, target_seq=target,
        first_trade_id=first_trade_id, last_trade_id=venue.next_trade_id - 1,
        allow_debit=True, **FOUR_EYES,
    ))
    for command in flow[800:]:
        apply(command)
    assert venue.check_invariants() == []
    return commands, venue


def test_recovery_replays_busts_adjustments_and_a_rollback_to_the_same_hash(
    tmp_path: Path,
) -> None:
    commands, applied = corrected_history()
    snapshot_after = 600  # between the re-pricing and the rollback

    written = write_journal(tmp_path, commands, checkpoint_at=(snapshot_after,))
    recovered, _ = recover(tmp_path)

    assert written.state_hash() == applied.state_hash()
    assert recovered.state_hash() == applied.state_hash()
    assert recovered.check_invariants() == []
    assert recovered.corrections.count == 3


def test_the_reader_regenerates_every_correction_event(tmp_path: Path) -> None:
    commands, applied = corrected_history()
    write_journal(tmp_path, commands)
    reader = JournalReader(tmp_path)
    kinds: list[type] = []
    try:
        reader.seek(1)
        while entries := reader.read_available():
            for _, events in entries:
                kinds += [type(e) for e in events
                          if type(e) in (TradeBusted, TradeAdjusted, VenueRolledBack)]
        assert reader.venue.state_hash() == applied.state_hash()
    finally:
        reader.close()
    assert kinds == [TradeBusted, TradeAdjusted, VenueRolledBack]


def test_a_rollback_with_the_most_balance_changes_fits_one_record() -> None:
    change = BalanceChange("ABCDEFGHIJKL", INT64_MAX, -INT64_MAX)
    command = RollbackTo(INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX,
                         [change] * ROLLBACK_REVERSALS_MAX, **FOUR_EYES)

    record = encode_record(9, 10, command, {})

    assert len(record) - 8 - HEAD_BYTES <= RECORD_PAYLOAD_BYTES_MAX
    assert decode_record(record) == (9, 10, command)
