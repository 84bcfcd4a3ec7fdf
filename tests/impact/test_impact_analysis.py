"""Impact analysis of the golden incident (impact_support.py), worked out by hand."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from impact_support import COIN_JPY, ETH_JPY, INCIDENT, SECOND, LiveVenue, golden_incident

from haltguard.impact.analysis import analyse
from haltguard.impact.errors import (
    InvalidWindowError,
    NoJournalError,
    OutsideJournalError,
    UnknownNameError,
)
from haltguard.impact.models import (
    AffectedAccount,
    AffectReason,
    CaughtOrder,
    ImpactWindow,
    RefusedOrder,
    RefusedWithdrawal,
    UncancellableOrder,
)
from haltguard.impact.service import csv_text

R = AffectReason


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> LiveVenue:
    return golden_incident(tmp_path_factory.mktemp("impact") / "venue")


def test_the_affected_accounts_and_why(golden: LiveVenue) -> None:
    m = golden.marks
    report = analyse(golden.data_dir, ImpactWindow(from_seq=m["halt"]))
    assert report.affected == [
        AffectedAccount(1, (R.CANCEL_REFUSED, R.RESTING_ORDER_IN_HALTED_MARKET), 0, 1, 0, 1,
                        m["halt"]),
        AffectedAccount(2, (R.RESTING_ORDER_IN_HALTED_MARKET,), 0, 0, 0, 1, m["halt"]),
        AffectedAccount(3, (R.ORDER_REFUSED,), 2, 0, 0, 0, m["refused_3"]),
        AffectedAccount(4, (R.ORDER_REFUSED, R.WITHDRAWAL_REFUSED), 1, 0, 1, 0,
                        m["withdraw_refused_4"]),
        AffectedAccount(5, (R.RESTING_ORDER_IN_HALTED_MARKET,), 0, 0, 0, 2, m["kill"]),
    ]
    counts = report.counts
    assert (counts.affected_accounts, counts.orders_refused, counts.cancels_refused,
            counts.withdrawals_refused, counts.resting_orders_caught) == (5, 3, 1, 1, 4)
    assert counts.refused_by_code == {"cancels_refused": 1, "kill_switch_engaged": 1,
                                      "market_cancel_only": 1, "market_halted": 1,
                                      "withdrawals_frozen": 1}


def test_refused_orders_carry_their_terms_time_and_reason(golden: LiveVenue) -> None:
    m, ts = golden.marks, golden.seen
    report = analyse(golden.data_dir, ImpactWindow(from_seq=m["halt"]))
    assert report.refused_orders == [
        RefusedOrder(m["refused_3"], ts[m["refused_3"]].ts, 3, COIN_JPY, "buy", "limit", 1, 105,
                     "market_halted", ""),
        RefusedOrder(m["refused_cancel_only_3"], ts[m["refused_cancel_only_3"]].ts, 3,
                     COIN_JPY, "buy", "limit", 1, 105, "market_cancel_only", ""),
        RefusedOrder(m["refused_4"], ts[m["refused_4"]].ts, 4, ETH_JPY, "sell", "limit", 1, 40,
                     "kill_switch_engaged", ""),
    ]
    assert report.refused_withdrawals == [
        RefusedWithdrawal(m["withdraw_refused_4"], ts[m["withdraw_refused_4"]].ts, 4, "JPY",
                          1_000, "withdrawals_frozen"),
    ]


def test_a_resting_order_whose_cancel_was_refused_is_listed(golden: LiveVenue) -> None:
    m = golden.marks
    report = analyse(golden.data_dir, ImpactWindow(from_seq=m["halt"]))
    seq = m["cancel_refused_1"]
    assert report.uncancellable_orders == [
        UncancellableOrder(seq, golden.seen[seq].ts, 1, COIN_JPY, m["buy_1"], "buy", 100, 3,
                           "cancels_refused"),
    ]


def test_orders_resting_when_a_market_halts_are_caught_once(golden: LiveVenue) -> None:
    m = golden.marks
    report = analyse(golden.data_dir, ImpactWindow(from_seq=m["halt"]))
    halt_ts, kill_ts = golden.seen[m["halt"]].ts, golden.seen[m["kill"]].ts
    assert report.caught_orders == [
        CaughtOrder(m["halt"], halt_ts, 1, COIN_JPY, m["buy_1"], "buy", 100, 3, "halted"),
        CaughtOrder(m["halt"], halt_ts, 2, COIN_JPY, m["sell_2"], "sell", 110, 3, "halted"),
        CaughtOrder(m["kill"], kill_ts, 5, ETH_JPY, m["eth_buy_5"], "buy", 50, 1, "halted"),
        CaughtOrder(m["kill"], kill_ts, 5, ETH_JPY, m["eth_rest_5"], "buy", 40, 1, "halted"),
    ]
    changes = [(c.seq, c.market, c.change, c.incident_id) for c in report.state_changes]
    assert changes[:3] == [(m["halt"], COIN_JPY, "halted", INCIDENT),
                           (m["freeze"], "", "withdrawals_frozen:JPY", INCIDENT),
                           (m["cancel_only"], COIN_JPY, "cancel_only", INCIDENT)]


def test_a_window_starting_inside_a_halt_catches_the_orders_resting_there(
    golden: LiveVenue,
) -> None:
    m = golden.marks
    report = analyse(golden.data_dir, ImpactWindow(from_seq=m["halt"] + 1, to_seq=m["freeze"]))
    caught = [(order.seq, order.order_id) for order in report.caught_orders]
    assert caught == [(m["halt"], m["buy_1"]), (m["halt"], m["sell_2"])]
    assert (report.journal.first_seq, report.journal.last_seq) == (m["halt"] + 1, m["freeze"])


def test_before_the_halt_nobody_is_affected(golden: LiveVenue) -> None:
    report = analyse(golden.data_dir, ImpactWindow(to_seq=golden.marks["halt"] - 1))
    assert report.affected == []
    assert report.counts.affected_accounts == 0


def test_a_time_window_reads_the_same_records_as_the_seq_window(golden: LiveVenue) -> None:
    m, seen = golden.marks, golden.seen
    by_seq = analyse(golden.data_dir, ImpactWindow(from_seq=m["halt"], to_seq=m["reopen"]))
    by_time = analyse(golden.data_dir, ImpactWindow(
        from_ts_ns=seen[m["halt"]].ts - SECOND // 2, to_ts_ns=seen[m["reopen"]].ts + 1))
    assert by_time.journal == by_seq.journal
    assert by_time.affected == by_seq.affected
    assert by_time.refused_orders == by_seq.refused_orders


def test_a_time_window_may_end_after_the_journal_up_to_now(golden: LiveVenue) -> None:
    last = max(golden.seen)
    halt_ts, end_ts = golden.seen[golden.marks["halt"]].ts, golden.seen[last].ts
    report = analyse(golden.data_dir,
                     ImpactWindow(from_ts_ns=halt_ts, to_ts_ns=end_ts + 3600 * SECOND))
    assert report.journal.last_seq == last


def test_a_market_filter_keeps_only_that_markets_orders(golden: LiveVenue) -> None:
    report = analyse(golden.data_dir, ImpactWindow(markets=frozenset({ETH_JPY})))
    assert [a.account for a in report.affected] == [4, 5]
    assert {order.market for order in report.refused_orders} == {ETH_JPY}
    assert report.markets == (ETH_JPY,)


def test_an_asset_filter_keeps_only_that_assets_withdrawals(golden: LiveVenue) -> None:
    report = analyse(golden.data_dir, ImpactWindow(assets=frozenset({"COIN"})))
    assert report.refused_withdrawals == []
    assert 4 in [a.account for a in report.affected]  # still affected: its ETH sell


def test_load_shedding_is_said_to_be_outside_the_journal(golden: LiveVenue) -> None:
    report = analyse(golden.data_dir, ImpactWindow())
    assert report.load_shedding.in_journal is False
    assert report.load_shedding.count is None
    assert "load shedding" in report.load_shedding.note_en
    assert "負荷制御" in report.load_shedding.note_ja


def test_bad_windows_are_refused_saying_why(golden: LiveVenue) -> None:
    last = max(golden.seen)
    with pytest.raises(OutsideJournalError, match=f"seq 1 to {last}"):
        analyse(golden.data_dir, ImpactWindow(from_seq=1, to_seq=last + 5))
    with pytest.raises(OutsideJournalError, match="outside the journal"):
        analyse(golden.data_dir, ImpactWindow(from_ts_ns=golden.seen[1].ts - SECOND))
    with pytest.raises(InvalidWindowError, match="not both"):
        analyse(golden.data_dir, ImpactWindow(from_seq=3, to_ts_ns=golden.seen[9].ts))
    with pytest.raises(InvalidWindowError, match="no record"):
        analyse(golden.data_dir, ImpactWindow(from_seq=9, to_seq=3))
    with pytest.raises(UnknownNameError, match="XRP-JPY"):
        analyse(golden.data_dir, ImpactWindow(markets=frozenset({"XRP-JPY"})))


def test_a_directory_without_a_journal_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoJournalError, match="no durable journal"):
        analyse(tmp_path, ImpactWindow())


def test_the_lists_export_as_csv_with_times(golden: LiveVenue) -> None:
    report = analyse(golden.data_dir, ImpactWindow(from_seq=golden.marks["halt"]))
    rows = list(csv.reader(io.StringIO(csv_text(report, "accounts"))))
    assert rows[0] == ["account", "reasons", "orders_refused", "cancels_refused",
                       "withdrawals_refused", "resting_orders_caught", "first_seq"]
    assert rows[1][:2] == ["1", "cancel_refused;resting_order_in_halted_market"]
    assert len(rows) == 1 + 5
    refused = list(csv.reader(io.StringIO(csv_text(report, "refused_orders"))))
    assert refused[0][:3] == ["seq", "ts_ns", "time_utc"]
    assert refused[1][2] == "2026-01-01T00:00:26.000000000Z"
    with pytest.raises(UnknownNameError, match="choose one of accounts"):
        csv_text(report, "everything")
