"""Point-in-time state: rebuilt from snapshot + journal, equal to the live venue at that point."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from impact_support import COIN_JPY, JPY, SECOND, START_TS, LiveVenue, golden_incident

from haltguard.impact.analysis import analyse
from haltguard.impact.errors import InvalidWindowError, OutsideJournalError, UnknownNameError
from haltguard.impact.models import ImpactWindow
from haltguard.impact.state import journal_range, state_at
from haltguard.journal.snapshots import list_snapshots
from haltguard.venue.commands import AddAsset, CompensationLine, CreditCompensation, Deposit
from haltguard.venue.types import MarketState


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> LiveVenue:
    return golden_incident(tmp_path_factory.mktemp("impact") / "venue")


def test_state_at_every_seq_equals_what_the_live_venue_held_then(golden: LiveVenue) -> None:
    assert list_snapshots(golden.data_dir), "the story takes a snapshot: both paths are used"
    for seq, seen in golden.seen.items():
        state = state_at(golden.data_dir, seq=seq)
        assert (state.seq, state.ts_ns) == (seq, seen.ts)
        assert state.state_hash() == seen.state_hash, seq
        assert {asset: state.balance_parts(asset) for asset in state.assets()} == seen.balances
        assert state.open_orders() == seen.open_orders
        assert {m: state.book(m, 10) for m in state.markets()} == seen.books


def test_balances_are_available_plus_locked_per_account(golden: LiveVenue) -> None:
    state = state_at(golden.data_dir, seq=golden.marks["halt"])
    parts = state.balance_parts("JPY")
    assert parts[1] == (1_000_000 - 300, 300)  # the resting buy of 3 COIN at 100 locks 300
    assert state.balances("JPY")[1] == 1_000_000
    assert state.market_state(COIN_JPY) is MarketState.HALTED


def test_a_time_names_the_last_record_stamped_at_or_before_it(golden: LiveVenue) -> None:
    halt = golden.marks["halt"]
    exact = state_at(golden.data_dir, ts_ns=golden.seen[halt].ts)
    between = state_at(golden.data_dir, ts_ns=golden.seen[halt].ts + SECOND // 2)
    assert exact.seq == between.seq == halt


def test_asset_decimals_turn_minor_units_into_decimals(golden: LiveVenue) -> None:
    state = state_at(golden.data_dir, seq=golden.marks["halt"])
    assert state.asset_decimals("COIN") == 8
    assert state.to_decimal("COIN", 50 * 10**8) == Decimal("50.00000000")
    spec = state.market_spec(COIN_JPY)
    assert (spec.tick_size, spec.lot_size, spec.base_per_lot) == ("1", "1", 10**8)


def test_a_seq_outside_the_journal_is_refused_naming_the_range(golden: LiveVenue) -> None:
    last = max(golden.seen)
    for seq in (0, last + 1):
        with pytest.raises(OutsideJournalError) as refused:
            state_at(golden.data_dir, seq=seq)
        assert f"seq 1 to {last}" in refused.value.message
        assert refused.value.message_ja
        assert refused.value.details["last_seq"] == last


def test_a_time_before_the_first_or_after_the_last_record_is_refused(golden: LiveVenue) -> None:
    for ts in (START_TS, golden.seen[max(golden.seen)].ts + 1):
        with pytest.raises(OutsideJournalError, match="2026-01-01T00:00:01"):
            state_at(golden.data_dir, ts_ns=ts)


def test_a_seq_and_a_time_together_or_neither_are_refused(golden: LiveVenue) -> None:
    with pytest.raises(InvalidWindowError, match="exactly one"):
        state_at(golden.data_dir, seq=3, ts_ns=START_TS + 3 * SECOND)
    with pytest.raises(InvalidWindowError, match="exactly one"):
        state_at(golden.data_dir)


def test_an_unknown_asset_or_market_is_refused_listing_those_there(golden: LiveVenue) -> None:
    state = state_at(golden.data_dir, seq=golden.marks["halt"])
    with pytest.raises(UnknownNameError, match="JPY, COIN, ETH"):
        state.balances("XRP")
    with pytest.raises(UnknownNameError, match="COIN-JPY, ETH-JPY"):
        state.book("XRP-JPY")


def test_after_retention_the_range_starts_after_the_oldest_kept_snapshot(tmp_path: Path) -> None:
    """Retention removed the segments before the kept snapshot: states before it cannot be
    rebuilt, and saying so names the range that can."""
    live = LiveVenue(tmp_path / "venue", segment_bytes_max=4096, snapshots_keep=1)
    live(AddAsset(JPY))
    for account in range(1, 400):
        live(Deposit(account, "JPY", 1))
    live.checkpoint()
    for account in range(1, 50):
        live(Deposit(account, "JPY", 2))
    live.close()
    snapshot_seq = list_snapshots(live.data_dir)[0][0]
    rng = journal_range(live.data_dir)
    assert rng.first_seq == snapshot_seq + 1
    later = snapshot_seq + 10
    assert state_at(live.data_dir, seq=later).state_hash() == live.seen[later].state_hash
    with pytest.raises(OutsideJournalError, match=f"seq {snapshot_seq + 1} to"):
        state_at(live.data_dir, seq=5)


def test_compensation_credits_are_balance_changes_and_nothing_else(tmp_path: Path) -> None:
    """A credit moves a balance (state at that seq shows it); analysis lists nobody for it."""
    live = LiveVenue(tmp_path / "venue")
    live(AddAsset(JPY))
    live(Deposit(1, "JPY", 100))
    credit = live(CreditCompensation([CompensationLine(1, "JPY", 25, 7, 0)], actor="carol"))
    live.close()
    assert state_at(live.data_dir, seq=credit).balances("JPY") == {1: 125}
    assert state_at(live.data_dir, seq=credit - 1).balances("JPY") == {1: 100}
    assert analyse(live.data_dir, ImpactWindow()).affected == []
