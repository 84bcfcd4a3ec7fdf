"""The erroneous-trade review and the rollback plan, read from a real venue's journal, and the
strict loading of the published policy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from corrections_support import (
    MARKET,
    NORMAL_PRICE,
    SPEC,
    TEST_POLICY,
    Story,
    flash_crash,
)

from haltguard.corrections.errors import PolicyError, RollbackTargetError
from haltguard.corrections.policy import load_policy, parse_policy
from haltguard.corrections.review import (
    BUSTED,
    STANDS,
    ReferencePoint,
    ReviewRequest,
    plan_rollback,
    review,
)
from haltguard.corrections.settings import POLICY_FILE_SHIPPED
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.impact.analysis import analyse
from haltguard.impact.models import AffectReason, ImpactWindow
from haltguard.venue.commands import BustTrade

POLICY = parse_policy(TEST_POLICY)


@pytest.fixture
def crashed(tmp_path: Path) -> Iterator[tuple[VenueRuntime, Story]]:
    runtime = VenueRuntime(tmp_path / "venue").start()
    try:
        yield runtime, flash_crash(runtime)
    finally:
        runtime.stop()


def _ns(story: Story) -> tuple[int, int]:
    return (int(story.crash_from.timestamp() * 1e6) * 1_000,
            int(story.crash_to.timestamp() * 1e6) * 1_000)


def test_the_review_finds_the_trades_outside_the_band_with_both_accounts(
    crashed: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    _, story = crashed
    from_ns, to_ns = _ns(story)

    result, _ = review(tmp_path / "venue", ReviewRequest(from_ns, to_ns), POLICY)

    assert result.references == {MARKET: NORMAL_PRICE}
    assert [f.trade.trade_id for f in result.findings] == story.crash_trade_ids
    first = result.findings[0]
    assert (first.trade.maker_account, first.trade.taker_account) == (3, 4)
    assert first.deviation_bps == 9_000 and first.status == STANDS
    # the buyer paid 15,000 JPY and a 15 JPY fee for 0.01 BTC (JPY in 1/10,000)
    assert {(c.asset, c.account): c.amount for c in first.changes} == {
        ("BTC", 3): -1_000_000, ("BTC", 4): 1_000_000, ("JPY", 0): 150_000,
        ("JPY", 3): 150_000_000, ("JPY", 4): -150_150_000,
    }
    assert result.trades_reviewed == 2


def test_the_review_filters_by_account_and_deviation(
    crashed: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    _, story = crashed
    from_ns, to_ns = _ns(story)

    by_account, _ = review(tmp_path / "venue", ReviewRequest(from_ns, to_ns, account=5), POLICY)
    wider, _ = review(tmp_path / "venue",
                      ReviewRequest(from_ns, to_ns, deviation_bps_min=8_800), POLICY)

    assert [f.trade.maker_account for f in by_account.findings] == [5]
    assert [f.deviation_bps for f in wider.findings] == [9_000]


def test_an_imported_reference_series_replaces_the_vwap(
    crashed: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    _, story = crashed
    from_ns, to_ns = _ns(story)
    series = [ReferencePoint(MARKET, from_ns - 1, SPEC.to_ticks("1600000"))]

    result, _ = review(tmp_path / "venue",
                       ReviewRequest(from_ns, to_ns, reference_series=series), POLICY)

    # Against 1,600,000 the 1,500,000 trade is inside the band; 2,000,000 (+25%) is not.
    assert [(f.trade.price, f.deviation_bps) for f in result.findings] == [
        (SPEC.to_ticks("2000000"), 2_500)]


def test_a_busted_trade_shows_as_busted_in_the_review(
    crashed: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    runtime, story = crashed
    from_ns, to_ns = _ns(story)
    found, _ = review(tmp_path / "venue", ReviewRequest(from_ns, to_ns), POLICY)
    InProcessVenueControl(runtime).correct_trades(BustTrade(
        [found.findings[0].trade], "alice", "carol", "flash crash", POLICY.name))

    again, _ = review(tmp_path / "venue", ReviewRequest(from_ns, to_ns), POLICY)

    assert [f.status for f in again.findings] == [BUSTED, STANDS]
    assert again.findings[0].changes == []


def test_a_rollback_plan_undoes_the_orders_and_trades_after_the_point(
    crashed: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    runtime, story = crashed

    plan = plan_rollback(tmp_path / "venue", story.before_crash_seq, actor="alice",
                         approver="carol", reason="flash crash", rule=POLICY.name)

    assert plan.trades_to_bust == len(story.crash_trade_ids) + 1  # and the steady one after
    assert plan.orders_to_cancel == 1  # account 6's bid
    assert plan.command.first_trade_id == story.crash_trade_ids[0]
    assert set(plan.accounts) == {0, 1, 2, 3, 4, 5, 6}
    events = InProcessVenueControl(runtime).correct_trades(plan.command)
    assert type(events[-1]).__name__ == "VenueRolledBack"
    assert runtime.read(lambda venue: venue.check_invariants()) == []


def test_a_rollback_target_after_the_last_seq_or_before_the_oldest_state_is_refused(
    crashed: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    runtime, _ = crashed
    last = runtime.read(lambda venue: venue.last_seq)
    for target in (last, last + 10, 0):
        with pytest.raises(RollbackTargetError, match="cannot roll back to seq"):
            plan_rollback(tmp_path / "venue", target, actor="alice", approver="carol",
                          reason="r", rule="p")


def test_the_shipped_policy_loads_and_names_its_bands() -> None:
    policy, sha256 = load_policy(POLICY_FILE_SHIPPED)

    assert policy.band_bps("BTC-JPY") == 500 and policy.band_bps("XRP-JPY") == 1_000
    assert policy.text.ja and policy.text.en and len(sha256) == 64


@pytest.mark.parametrize(("change", "problem"), [
    (("allow_debit: false", "allow_debit: false\nsurprise: 1"), "unknown field"),
    (("band_bps_default: 1000", "band_bps_default: 0"), "band_bps_default must be 1..10000"),
    (("may_approve: [incident_commander, admin]", "may_approve: [janitor]"), "janitor"),
    (("version: 2", "version: 2\nversion: 3"), "given twice"),
    (("correct_within_minutes: 60", "correct_within_minutes: '60'"), "Expected `int`"),
])
def test_a_policy_with_any_problem_is_refused_whole(change: tuple[str, str], problem: str
                                                     ) -> None:
    with pytest.raises(PolicyError, match=problem):
        parse_policy(TEST_POLICY.replace(*change))


def test_the_window_is_resolved_in_the_journal_range(
    crashed: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    _, story = crashed
    result, _ = review(tmp_path / "venue", ReviewRequest(
        int((story.crash_from - timedelta(seconds=0)).timestamp() * 1e6) * 1_000,
        _ns(story)[1]), POLICY)
    assert result.from_seq == story.before_crash_seq + 1


def test_the_impact_analysis_lists_busted_trades_as_a_cause(
    crashed: tuple[VenueRuntime, Story], tmp_path: Path,
) -> None:
    runtime, story = crashed
    from_ns, to_ns = _ns(story)
    found, _ = review(tmp_path / "venue", ReviewRequest(from_ns, to_ns), POLICY)
    InProcessVenueControl(runtime).correct_trades(BustTrade(
        [found.findings[0].trade], "alice", "carol", "flash crash", POLICY.name))

    report = analyse(tmp_path / "venue", ImpactWindow(from_seq=story.before_crash_seq + 1))

    busted = {row.account for row in report.affected
              if AffectReason.TRADE_BUSTED in row.reasons}
    assert busted == {3, 4}  # both sides of the busted trade; not the fee account
