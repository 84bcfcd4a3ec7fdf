"""The trade log the review reads: its review equals the journal-replay review (busts and
re-pricings included), it follows the journal as it grows, and it repairs itself from the
journal when cut short, missing or ahead of the journal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from corrections_support import (
    MARKET,
    SPEC,
    TEST_POLICY,
    Story,
    _cross,
    flash_crash,
)

from haltguard.corrections import tradelog
from haltguard.corrections.policy import parse_policy
from haltguard.corrections.review import (
    ADJUSTED,
    BUSTED,
    ReferencePoint,
    ReviewRequest,
    review,
)
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.venue.commands import AdjustTrade, BustTrade
from haltguard.venue.corrections import trade_facts
from haltguard.venue.types import Side

POLICY = parse_policy(TEST_POLICY)


@pytest.fixture
def corrected(tmp_path: Path) -> Iterator[tuple[VenueRuntime, Story]]:
    """The flash crash with its first absurd trade busted and its second re-priced."""
    runtime = VenueRuntime(tmp_path / "venue").start()
    try:
        story = flash_crash(runtime)
        control = InProcessVenueControl(runtime)
        found, _ = review(tmp_path / "venue", ReviewRequest(*_ns(story)), POLICY, replay=True)
        first, second = (f.trade for f in found.findings)
        control.correct_trades(BustTrade([first], "alice", "carol", "crash", POLICY.name))
        control.correct_trades(AdjustTrade(second, SPEC.to_ticks("14900000"), "alice",
                                           "carol", "crash", POLICY.name))
        yield runtime, story
    finally:
        runtime.stop()


def _ns(story: Story) -> tuple[int, int]:
    return (int(story.crash_from.timestamp() * 1e6) * 1_000,
            int(story.crash_to.timestamp() * 1e6) * 1_000)


def _requests(story: Story) -> list[ReviewRequest]:
    from_ns, to_ns = _ns(story)
    return [
        ReviewRequest(from_ns, to_ns),
        ReviewRequest(from_ns, to_ns + 10**12),
        ReviewRequest(from_ns, to_ns, account=4),
        ReviewRequest(from_ns, to_ns, account=5),
        ReviewRequest(from_ns, to_ns, market=MARKET, deviation_bps_min=8_800),
        ReviewRequest(from_ns, to_ns, market="ETH-JPY"),
        ReviewRequest(from_ns, to_ns, reference_series=[
            ReferencePoint(MARKET, from_ns - 1, SPEC.to_ticks("1600000"))]),
        ReviewRequest(to_ns, to_ns + 10**12),
    ]


def _assert_log_equals_replay(data_dir: Path, story: Story) -> None:
    for request in _requests(story):
        from_log, _ = review(data_dir, request, POLICY)
        by_replay, _ = review(data_dir, request, POLICY, replay=True)
        assert from_log == by_replay, request


def test_the_log_review_equals_the_replay_review_with_busts_and_adjustments(
    corrected: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    _, story = corrected

    result, _ = review(tmp_path / "venue", ReviewRequest(*_ns(story)), POLICY)

    assert [f.status for f in result.findings] == [BUSTED, ADJUSTED]
    assert result.findings[1].settled_price == SPEC.to_ticks("14900000")
    _assert_log_equals_replay(tmp_path / "venue", story)


def test_the_log_follows_the_journal_as_trades_are_added(
    corrected: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    runtime, story = corrected
    data_dir = tmp_path / "venue"
    review(data_dir, ReviewRequest(*_ns(story)), POLICY)
    before = (data_dir / "tradelog" / "trades.bin").stat().st_size // tradelog.RECORD_BYTES

    _cross(runtime, 1, 2, SPEC.to_ticks("30000000"), SPEC.to_lots("0.01"))
    _cross(runtime, 3, 5, SPEC.to_ticks("15000000"), SPEC.to_lots("0.01"))
    from_ns, _ = _ns(story)
    later, _ = review(data_dir, ReviewRequest(from_ns, from_ns + 10**15), POLICY)

    after = (data_dir / "tradelog" / "trades.bin").stat().st_size // tradelog.RECORD_BYTES
    assert after == before + 2
    assert later.findings[-1].trade.price == SPEC.to_ticks("30000000")
    _assert_log_equals_replay(data_dir, story)


def test_records_past_the_covered_seq_are_cut_off_and_read_again(
    corrected: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    _, story = corrected
    data_dir = tmp_path / "venue"
    review(data_dir, ReviewRequest(*_ns(story)), POLICY)
    trades, covered = data_dir / "tradelog" / "trades.bin", data_dir / "tradelog" / "covered"
    first, through = map(int, covered.read_text().split())
    records = trades.read_bytes()
    last_seq = tradelog.RECORD.unpack_from(records, len(records) - tradelog.RECORD_BYTES)[0]
    # as if a catch-up stopped after writing the last trades but before saying so
    covered.write_text(f"{first} {last_seq - 1}\n")
    with trades.open("ab") as out:
        out.write(b"\x07" * (tradelog.RECORD_BYTES // 2))  # and a torn record

    _assert_log_equals_replay(data_dir, story)

    assert trades.read_bytes() == records
    assert covered.read_text().split() == [str(first), str(through)]


def test_a_log_missing_or_ahead_of_the_journal_is_rebuilt_from_the_journal(
    corrected: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    _, story = corrected
    data_dir = tmp_path / "venue"
    review(data_dir, ReviewRequest(*_ns(story)), POLICY)
    trades, covered = data_dir / "tradelog" / "trades.bin", data_dir / "tradelog" / "covered"
    records = trades.read_bytes()
    first, through = covered.read_text().split()

    covered.write_text(f"{first} {int(through) + 50}\n")  # from a longer, other journal
    trades.write_bytes(records + records)
    _assert_log_equals_replay(data_dir, story)
    assert trades.read_bytes() == records

    trades.unlink()
    covered.unlink()
    _assert_log_equals_replay(data_dir, story)
    assert trades.read_bytes() == records


def test_a_record_keeps_every_field_of_its_trade(
    corrected: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    runtime, story = corrected
    data_dir = tmp_path / "venue"
    by_replay, _ = review(data_dir, ReviewRequest(*_ns(story)), POLICY, replay=True)
    last_seq = runtime.read(lambda venue: venue.last_seq)
    tradelog.catch_up(data_dir, 1, last_seq)

    records = [tradelog.unpack(record) for chunk in tradelog.chunks(data_dir, 1, last_seq)
               for record in tradelog.RECORD.iter_unpack(chunk)]

    by_id = {trade.trade_id: (seq, ts, trade) for seq, ts, trade in records}
    for finding in by_replay.findings:
        seq, ts, trade = by_id[finding.trade.trade_id]
        assert (seq, ts, trade_facts(trade)) == (finding.seq, finding.ts_ns, finding.trade)
        assert trade.taker_side == Side.BUY and trade.market == MARKET
    assert sorted(by_id) == sorted(story.steady_trade_ids + story.crash_trade_ids)


def test_a_data_dir_where_the_log_cannot_be_written_is_reviewed_by_replay(
    corrected: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    _, story = corrected
    data_dir = tmp_path / "venue"
    (data_dir / tradelog.DIR_NAME).write_text("not a folder")  # as if read-only to us

    from_log, _ = review(data_dir, ReviewRequest(*_ns(story)), POLICY)

    by_replay, _ = review(data_dir, ReviewRequest(*_ns(story)), POLICY, replay=True)
    assert from_log == by_replay and len(from_log.findings) == 2
