"""A small golden incident, journaled by driving a real venue: what impact analysis reads.

:class:`LiveVenue` is a sequencer done by hand: every command is journaled (group commit per
command) and applied to a live venue, and what the live venue held after each seq is kept,
so a test can compare the state rebuilt from disk with the state the venue really had.

The incident (times are one second apart from ``START_TS``; the seqs are listed in
:data:`SEQ` once the story is built):

- COIN-JPY and ETH-JPY open; accounts 1..5 funded in JPY (0 decimals), COIN (8) and ETH (8).
- Account 1 rests a buy of 3 COIN at 100, account 2 rests a sell of 5 at 110, account 3
  buys 2 at 110 (fills against 2's sell: 3 left), account 5 rests a buy in ETH-JPY.
- A snapshot, then COIN-JPY is halted refusing cancels (incident INC-1).
- Account 3 tries to buy: refused ``market_halted``. Account 1 tries to cancel its buy:
  refused ``cancels_refused``.
- Account 5 sells in ETH-JPY against its own buy (cancelled by self-trade prevention) and
  rests another buy there.
- JPY withdrawals are frozen; account 4 tries to withdraw: refused ``withdrawals_frozen``.
- COIN-JPY goes to cancel-only: account 1 cancels its buy; account 3 tries to buy again:
  refused ``market_cancel_only``. Then limit-only, then open.
- The kill switch is engaged: account 2's sell (still resting) is caught again (counted
  once), account 5's ETH buy is caught; account 4 tries to sell ETH: refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from haltguard.journal import Journal
from haltguard.venue.commands import (
    AddAsset,
    AddMarket,
    CancelOrder,
    Command,
    Deposit,
    FreezeWithdrawals,
    KillSwitch,
    PlaceOrder,
    SetMarketState,
    Withdraw,
)
from haltguard.venue.engine import Depth, OrderView, Venue
from haltguard.venue.markets import Asset, MarketSpec, make_market
from haltguard.venue.types import MarketState, Side

SECOND = 1_000_000_000
START_TS = 1_767_225_600 * SECOND  # 2026-01-01T00:00:00Z
JPY = Asset("JPY", 0)
COIN = Asset("COIN", 8)
ETH = Asset("ETH", 8)
COIN_JPY = "COIN-JPY"
ETH_JPY = "ETH-JPY"
INCIDENT = "INC-1"


@dataclass
class Seen:
    """What the live venue held right after one seq."""

    ts: int
    balances: dict[str, dict[int, tuple[int, int]]]
    open_orders: list[OrderView]
    books: dict[str, Depth]
    state_hash: str


@dataclass
class LiveVenue:
    data_dir: Path
    venue: Venue = field(default_factory=Venue)
    seen: dict[int, Seen] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)
    segment_bytes_max: int = 64 << 20
    snapshots_keep: int = 3

    def __post_init__(self) -> None:
        self.journal = Journal(self.data_dir, segment_bytes_max=self.segment_bytes_max,
                               snapshots_keep=self.snapshots_keep, unsafe_skip_fsync=True)

    def __call__(self, command: Command, mark: str = "") -> int:
        seq = self.venue.last_seq + 1
        ts = START_TS + seq * SECOND
        self.journal.append(seq, ts, command)
        self.journal.sync()
        self.venue.apply(seq, ts, command)
        venue = self.venue
        self.seen[seq] = Seen(
            ts=ts,
            balances={asset: venue.holdings(asset) for asset in venue.assets},
            open_orders=sorted(
                (o for m in venue.markets for o in venue.resting_orders(m)),
                key=lambda o: o.order_id,
            ),
            books={m: venue.depth(m, 10) for m in venue.markets},
            state_hash=venue.state_hash(),
        )
        if mark:
            self.marks[mark] = seq
        return seq

    def checkpoint(self) -> None:
        self.journal.checkpoint(self.venue, self.venue.last_ts)

    def close(self) -> None:
        self.journal.close()


def _spec(symbol: str, base: Asset) -> MarketSpec:
    """1 tick = 1 JPY, 1 lot = 1 coin."""
    return make_market(symbol, base, JPY, tick_size="1", lot_size="1", min_qty="1",
                       max_qty="1000")


def buy(account: int, market: str, lots: int, price: int) -> PlaceOrder:
    return PlaceOrder(market, account, Side.BUY, lots, price)


def sell(account: int, market: str, lots: int, price: int) -> PlaceOrder:
    return PlaceOrder(market, account, Side.SELL, lots, price)


def golden_incident(data_dir: Path) -> LiveVenue:
    """Journal the story of the module docstring into ``data_dir``; return the live venue."""
    live = LiveVenue(data_dir)
    live(AddAsset(JPY))
    live(AddAsset(COIN))
    live(AddAsset(ETH))
    live(AddMarket(_spec(COIN_JPY, COIN), MarketState.OPEN))
    live(AddMarket(_spec(ETH_JPY, ETH), MarketState.OPEN))
    for account in range(1, 6):
        live(Deposit(account, "JPY", 1_000_000))
        live(Deposit(account, "COIN", 50 * 10**8))
        live(Deposit(account, "ETH", 50 * 10**8))
    live(buy(1, COIN_JPY, 3, 100), "buy_1")
    live(sell(2, COIN_JPY, 5, 110), "sell_2")
    live(buy(3, COIN_JPY, 2, 110), "trade_3")
    live(buy(5, ETH_JPY, 1, 50), "eth_buy_5")
    live.checkpoint()
    live(SetMarketState(COIN_JPY, MarketState.HALTED, "alice", "matching fault", INCIDENT,
                        cancels_allowed=False), "halt")
    live(buy(3, COIN_JPY, 1, 105), "refused_3")
    live(CancelOrder(COIN_JPY, 1, live.marks["buy_1"]), "cancel_refused_1")
    live(sell(5, ETH_JPY, 1, 50), "eth_self_trade_5")
    live(buy(5, ETH_JPY, 1, 40), "eth_rest_5")
    live(FreezeWithdrawals("JPY", True, "alice", "wallet check", INCIDENT), "freeze")
    live(Withdraw(4, "JPY", 1_000), "withdraw_refused_4")
    live(SetMarketState(COIN_JPY, MarketState.CANCEL_ONLY, "bob", "fixed", INCIDENT),
         "cancel_only")
    live(CancelOrder(COIN_JPY, 1, live.marks["buy_1"]), "cancel_1")
    live(buy(3, COIN_JPY, 1, 105), "refused_cancel_only_3")
    live(SetMarketState(COIN_JPY, MarketState.LIMIT_ONLY, "bob", "reopening", INCIDENT))
    live(SetMarketState(COIN_JPY, MarketState.OPEN, "bob", "reopened", INCIDENT), "reopen")
    live(KillSwitch(True, "alice", "second fault", INCIDENT), "kill")
    live(sell(4, ETH_JPY, 1, 40), "refused_4")
    live(FreezeWithdrawals("JPY", False, "bob", "wallet fine", INCIDENT), "end")
    live.close()
    return live
