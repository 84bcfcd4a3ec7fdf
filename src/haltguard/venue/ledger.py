"""Balances: per account and asset, what is available and what open orders hold.

Every amount is a whole number of the asset's minor units. A row is a two-item list
``[available, held]``; rows are created on first use and never replaced, so resting orders
keep direct references to the rows they settle against (no lookup on the hot path).

Account 0 is the exchange's own account: it receives every trading fee, so nothing leaves
the books when a fee is charged. That is what makes conservation hold for every asset::

    sum of (available + held) over all accounts, account 0 included == deposited - withdrawn

and no balance is ever negative. :meth:`Ledger.check` verifies both.

A trade correction (a bust or re-pricing) may take back more than an account still has
available when the policy allows a debit balance: the shortfall is then recorded in
``owed`` instead of making a balance negative, and conservation reads
``sum(available + held) - sum(owed) == deposited - withdrawn``. A later credit from a
correction pays what is owed first.
"""

from __future__ import annotations

FEE_ACCOUNT = 0

AVAILABLE = 0
HELD = 1


class LedgerError(ValueError):
    """A ledger operation that would break an invariant; the engine checks first."""


class Ledger:
    """Rows per asset, keyed by account, plus lifetime totals per asset."""

    __slots__ = ("deposited", "owed", "rows", "withdrawn")

    def __init__(self) -> None:
        self.rows: dict[str, dict[int, list[int]]] = {}
        self.deposited: dict[str, int] = {}
        self.withdrawn: dict[str, int] = {}
        # asset -> account -> minor units owed after a correction (positive; absent: none)
        self.owed: dict[str, dict[int, int]] = {}

    def add_asset(self, asset: str) -> None:
        if asset in self.rows:
            raise LedgerError(f"asset {asset} already exists")
        self.rows[asset] = {}
        self.deposited[asset] = 0
        self.withdrawn[asset] = 0

    def row(self, asset: str, account: int) -> list[int]:
        """The row for (account, asset), created empty on first use."""
        rows = self.rows[asset]
        row = rows.get(account)
        if row is None:
            row = rows[account] = [0, 0]
        return row

    def available(self, asset: str, account: int) -> int:
        row = self.rows[asset].get(account)
        return 0 if row is None else row[AVAILABLE]

    def held(self, asset: str, account: int) -> int:
        row = self.rows[asset].get(account)
        return 0 if row is None else row[HELD]

    def holds_anything(self, account: int) -> bool:
        """Whether ``account`` has a balance, available or held, in any asset.

        Rows of zero count as nothing: a snapshot leaves them out, so the answer is the same
        before and after a restore (the venue knows an account only by what it holds).
        """
        for rows in self.rows.values():
            row = rows.get(account)
            if row is not None and (row[AVAILABLE] or row[HELD]):
                return True
        return False

    def deposit(self, asset: str, account: int, amount: int) -> None:
        if amount <= 0:
            raise LedgerError(f"deposit amount must be positive, got {amount}")
        self.row(asset, account)[AVAILABLE] += amount
        self.deposited[asset] += amount

    def withdraw(self, asset: str, account: int, amount: int) -> None:
        row = self.rows[asset].get(account)
        if amount <= 0:
            raise LedgerError(f"withdrawal amount must be positive, got {amount}")
        if row is None or row[AVAILABLE] < amount:
            raise LedgerError(f"withdrawal of {amount} exceeds the available balance")
        row[AVAILABLE] -= amount
        self.withdrawn[asset] += amount

    def hold(self, row: list[int], amount: int) -> None:
        """Move ``amount`` from available to held (an order being accepted)."""
        if not 0 <= amount <= row[AVAILABLE]:
            raise LedgerError(f"cannot hold {amount} of {row[AVAILABLE]} available")
        row[AVAILABLE] -= amount
        row[HELD] += amount

    def release(self, row: list[int], amount: int) -> None:
        """Move ``amount`` from held back to available (an order cancelled or filled better)."""
        if not 0 <= amount <= row[HELD]:
            raise LedgerError(f"cannot release {amount} of {row[HELD]} held")
        row[HELD] -= amount
        row[AVAILABLE] += amount

    def change(self, asset: str, account: int, amount: int) -> int:
        """Add ``amount`` (negative: take it) to the account's available balance for a
        correction, and return the shortfall recorded as owed (0 when none).

        A credit pays what the account owes in ``asset`` first. A debit takes what is
        available and records the rest as owed; callers that may not create debts check
        :meth:`shortfall` first.
        """
        row = self.row(asset, account)
        owed_rows = self.owed.get(asset)
        if amount >= 0:
            owed = 0 if owed_rows is None else owed_rows.get(account, 0)
            paid = min(owed, amount)
            if paid:
                assert owed_rows is not None
                if owed == paid:
                    del owed_rows[account]
                else:
                    owed_rows[account] = owed - paid
            row[AVAILABLE] += amount - paid
            return 0
        taken = min(row[AVAILABLE], -amount)
        row[AVAILABLE] -= taken
        short = -amount - taken
        if short:
            rows = self.owed.setdefault(asset, {})
            rows[account] = rows.get(account, 0) + short
        return short

    def shortfall(self, asset: str, account: int, amount: int) -> int:
        """How much of a debit of ``-amount`` the account's available balance cannot cover."""
        return max(0, -amount - self.available(asset, account))

    def owed_by(self, account: int) -> dict[str, int]:
        """What ``account`` owes after corrections, per asset (empty: nothing)."""
        return {
            asset: rows[account] for asset, rows in self.owed.items() if account in rows
        }

    def balances(self, account: int) -> dict[str, tuple[int, int]]:
        """Every asset the account has a non-empty row in: ``(available, held)``."""
        result: dict[str, tuple[int, int]] = {}
        for asset, rows in self.rows.items():
            row = rows.get(account)
            if row is not None and (row[AVAILABLE] or row[HELD]):
                result[asset] = (row[AVAILABLE], row[HELD])
        return result

    def total(self, asset: str) -> int:
        return sum(row[AVAILABLE] + row[HELD] for row in self.rows[asset].values())

    def check(self) -> list[str]:
        """Conservation per asset and no negative balance; empty when both hold."""
        problems: list[str] = []
        for asset, rows in self.rows.items():
            expected = self.deposited[asset] - self.withdrawn[asset]
            total = 0
            for account, (available, held) in rows.items():
                total += available + held
                if available < 0 or held < 0:
                    problems.append(
                        f"{asset} account {account}: negative balance "
                        f"(available {available}, held {held})"
                    )
            owed_rows = self.owed.get(asset, {})
            for account, owed in owed_rows.items():
                total -= owed
                if owed <= 0:
                    problems.append(f"{asset} account {account}: owes {owed}, not positive")
            if total != expected:
                problems.append(
                    f"{asset}: balances sum to {total} but deposits minus withdrawals is "
                    f"{expected}"
                )
        return problems
