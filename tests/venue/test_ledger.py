"""The ledger: deposits, withdrawals, holds, and the conservation check."""

from __future__ import annotations

import pytest

from haltguard.venue.ledger import FEE_ACCOUNT, Ledger, LedgerError


def ledger_with(asset: str = "JPY") -> Ledger:
    ledger = Ledger()
    ledger.add_asset(asset)
    return ledger


def test_deposit_adds_to_available_and_to_the_total() -> None:
    ledger = ledger_with()
    ledger.deposit("JPY", 1, 500)
    assert ledger.available("JPY", 1) == 500
    assert ledger.deposited["JPY"] == 500
    assert ledger.check() == []


def test_withdrawal_beyond_available_is_refused_and_changes_nothing() -> None:
    ledger = ledger_with()
    ledger.deposit("JPY", 1, 500)
    ledger.hold(ledger.row("JPY", 1), 300)
    with pytest.raises(LedgerError, match="exceeds the available"):
        ledger.withdraw("JPY", 1, 201)
    assert (ledger.available("JPY", 1), ledger.held("JPY", 1)) == (200, 300)
    assert ledger.withdrawn["JPY"] == 0


def test_hold_and_release_move_between_available_and_held() -> None:
    ledger = ledger_with()
    ledger.deposit("JPY", 1, 500)
    row = ledger.row("JPY", 1)
    ledger.hold(row, 120)
    ledger.release(row, 20)
    assert row == [400, 100]
    assert ledger.check() == []


def test_holding_more_than_available_is_refused() -> None:
    ledger = ledger_with()
    ledger.deposit("JPY", 1, 10)
    with pytest.raises(LedgerError):
        ledger.hold(ledger.row("JPY", 1), 11)


def test_non_positive_amounts_are_refused() -> None:
    ledger = ledger_with()
    with pytest.raises(LedgerError):
        ledger.deposit("JPY", 1, 0)
    with pytest.raises(LedgerError):
        ledger.withdraw("JPY", 1, -5)


def test_check_reports_money_that_appeared_from_nowhere() -> None:
    ledger = ledger_with()
    ledger.deposit("JPY", 1, 100)
    ledger.row("JPY", FEE_ACCOUNT)[0] += 1
    assert ledger.check() == [
        "JPY: balances sum to 101 but deposits minus withdrawals is 100"
    ]


def test_check_reports_a_negative_balance() -> None:
    ledger = ledger_with()
    ledger.deposit("JPY", 1, 100)
    row = ledger.row("JPY", 1)
    row[0] -= 150
    row[1] += 150
    problems = ledger.check()
    assert any("negative balance" in problem for problem in problems)


def test_balances_list_only_assets_the_account_holds() -> None:
    ledger = ledger_with()
    ledger.add_asset("BTC")
    ledger.deposit("BTC", 2, 7)
    ledger.row("JPY", 2)  # touched but empty
    assert ledger.balances(2) == {"BTC": (7, 0)}


def test_adding_an_asset_twice_is_refused() -> None:
    ledger = ledger_with()
    with pytest.raises(LedgerError, match="already exists"):
        ledger.add_asset("JPY")
