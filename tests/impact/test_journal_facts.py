"""One read of the journal for a compensation run: the impact, the balances at a cut-off
anywhere, each refused order's prices, the fees of the window and a VWAP of the venue's own
market, all equal to what the live venue held or did.

The story (a small synthetic market, COIN-JPY: 1 tick = 1 JPY, 1 lot = 1 COIN, JPY without
decimals, taker fee 100 bps, maker fee 50 bps), worked by hand:

- Account 2 rests a sell of 2 COIN at 1,000, account 1 buys them: a trade at 1,000.
  Account 4 rests a buy of 1 COIN at 900 (caught by the halt; it never trades).
- COIN-JPY and DOGE-JPY are halted (the window starts here). Account 3's buy of 5 COIN and
  account 4's sell of 4 COIN are refused; account 3's buy of DOGE is refused too.
- COIN-JPY goes cancel-only, then limit-only (it trades again): account 2 rests a sell of 3
  at 1,200, account 1 buys them: a trade at 1,200 (notional 3,600: taker fee 36 for account
  1, maker fee 18 for account 2). The window ends here. DOGE-JPY never trades again.
- Account 2 rests a sell of 1 at 1,300, account 1 buys it: a trade after the window.

So account 3's refused buy is valued from 1,000 (the last trade before the refusal) to
1,200 (the first trade after the reopening); account 4's refused sell from 1,000 to 1,200 as
well (a move in its favour); the DOGE order has no price either side. The VWAP of COIN-JPY
over the first two trades is (2 x 1,000 + 3 x 1,200) / 5 = 1,120.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from impact_support import COIN, JPY, SECOND, START_TS, LiveVenue, buy, sell

from haltguard.impact.analysis import analyse
from haltguard.impact.errors import OutsideJournalError, UnknownNameError
from haltguard.impact.journal_facts import read_journal_facts
from haltguard.impact.models import FactsRequest, FeesPaid, ImpactWindow, MarketVwapRequest
from haltguard.impact.state import state_at
from haltguard.venue.commands import AddAsset, AddMarket, Deposit, SetMarketState
from haltguard.venue.markets import Asset, make_market
from haltguard.venue.types import MarketState

DOGE = Asset("DOGE", 8)


def _story(data_dir: Path) -> LiveVenue:
    live = LiveVenue(data_dir)
    live(AddAsset(JPY))
    live(AddAsset(COIN))
    live(AddAsset(DOGE))
    for symbol, base in (("COIN-JPY", COIN), ("DOGE-JPY", DOGE)):
        live(AddMarket(make_market(symbol, base, JPY, tick_size="1", lot_size="1", min_qty="1",
                                   max_qty="1000", taker_fee_bps=100, maker_fee_bps=50),
                       MarketState.OPEN))
    for account in range(1, 5):
        live(Deposit(account, "JPY", 1_000_000))
        live(Deposit(account, "COIN", 100 * 10**8))
        live(Deposit(account, "DOGE", 100 * 10**8))
    live(sell(2, "COIN-JPY", 2, 1_000))
    live(buy(1, "COIN-JPY", 2, 1_000), "first_trade")
    live(buy(4, "COIN-JPY", 1, 900), "resting_4")
    live.checkpoint()
    live(SetMarketState("COIN-JPY", MarketState.HALTED, "alice", "fault", "INC-1"), "halt")
    live(SetMarketState("DOGE-JPY", MarketState.HALTED, "alice", "fault", "INC-1"))
    live(buy(3, "COIN-JPY", 5, 1_100), "refused_buy_3")
    live(sell(4, "COIN-JPY", 4, 900), "refused_sell_4")
    live(buy(3, "DOGE-JPY", 1, 10), "refused_doge_3")
    live(SetMarketState("COIN-JPY", MarketState.CANCEL_ONLY, "bob", "fixed", "INC-1"))
    live(SetMarketState("COIN-JPY", MarketState.LIMIT_ONLY, "bob", "reopening", "INC-1"),
         "reopen")
    live(sell(2, "COIN-JPY", 3, 1_200))
    live(buy(1, "COIN-JPY", 3, 1_200), "reopen_trade")
    live(sell(2, "COIN-JPY", 1, 1_300))
    live(buy(1, "COIN-JPY", 1, 1_300), "late_trade")
    live.close()
    return live


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> LiveVenue:
    return _story(tmp_path_factory.mktemp("facts") / "venue")


def _window(story: LiveVenue) -> ImpactWindow:
    return ImpactWindow(from_seq=story.marks["halt"], to_seq=story.marks["reopen_trade"])


def _totals(story: LiveVenue, seq: int, asset: str) -> dict[int, int]:
    return {account: available + locked
            for account, (available, locked) in story.seen[seq].balances[asset].items()}


@pytest.mark.parametrize("cutoff", ["first_trade", "halt", "refused_sell_4", "reopen_trade",
                                    "late_trade"])
def test_one_read_gives_the_impact_and_the_balances_at_a_cut_off_anywhere(
        story: LiveVenue, cutoff: str) -> None:
    """Before, at the start of, inside, at the end of and after the window: the cut-off
    balances are what the live venue held then, and the impact is the analysis's own."""
    seq = story.marks[cutoff]
    facts = read_journal_facts(story.data_dir, FactsRequest(
        _window(story), cutoff_seq=seq, holdings_assets=frozenset({"JPY", "COIN", "NONE"})))
    assert (facts.cutoff.seq, facts.cutoff.ts_ns) == (seq, story.seen[seq].ts)
    assert facts.cutoff.holdings == {asset: _totals(story, seq, asset)
                                     for asset in ("COIN", "JPY")}
    assert facts.cutoff.asset_decimals == {"JPY": 0, "COIN": 8, "DOGE": 8}
    assert facts.report == analyse(story.data_dir, _window(story))
    assert facts.cutoff.holdings["JPY"] == state_at(story.data_dir, seq=seq).balances("JPY")


def test_a_cut_off_in_the_middle_of_a_read_chunk_is_exact(tmp_path: Path) -> None:
    """The whole story is one chunk of the log: the read still stops on the cut-off's seq."""
    story = _story(tmp_path / "venue")
    for seq in range(story.marks["halt"], story.marks["late_trade"] + 1):
        facts = read_journal_facts(story.data_dir, FactsRequest(
            _window(story), cutoff_seq=seq, holdings_assets=frozenset({"JPY"})))
        assert facts.cutoff.holdings["JPY"] == _totals(story, seq, "JPY"), seq


def test_a_refused_order_is_priced_at_the_last_trade_and_the_first_after_reopening(
        story: LiveVenue) -> None:
    facts = read_journal_facts(story.data_dir, FactsRequest(
        _window(story), cutoff_seq=story.marks["halt"], refused_order_prices=True))
    priced = {item.order.seq: item for item in facts.refused_order_prices}
    assert set(priced) == {story.marks[name] for name in
                           ("refused_buy_3", "refused_sell_4", "refused_doge_3")}
    buy_3 = priced[story.marks["refused_buy_3"]]
    assert (buy_3.order.account, buy_3.order.qty_lots) == (3, 5)
    assert (buy_3.price_at_refusal_ticks, buy_3.price_at_reopen_ticks) == (1_000, 1_200)
    reopened = story.marks["reopen_trade"]
    assert (buy_3.reopen_seq, buy_3.reopen_ts_ns) == (reopened, START_TS + reopened * SECOND)
    sell_4 = priced[story.marks["refused_sell_4"]]
    assert (sell_4.price_at_refusal_ticks, sell_4.price_at_reopen_ticks) == (1_000, 1_200)
    doge = priced[story.marks["refused_doge_3"]]
    assert (doge.price_at_refusal_ticks, doge.price_at_reopen_ticks) == (None, None)
    assert facts.read_through_seq == story.marks["late_trade"], "read on to the journal's end"


def test_a_reopening_after_the_window_is_found_by_reading_on(story: LiveVenue) -> None:
    window = ImpactWindow(from_seq=story.marks["halt"], to_seq=story.marks["refused_doge_3"])
    facts = read_journal_facts(story.data_dir, FactsRequest(
        window, cutoff_seq=story.marks["halt"], refused_order_prices=True))
    buy_3 = next(item for item in facts.refused_order_prices if item.order.account == 3)
    assert buy_3.price_at_reopen_ticks == 1_200
    assert facts.report == analyse(story.data_dir, window)


def test_fees_are_those_of_the_window_trades_per_account_in_the_quote_asset(
        story: LiveVenue) -> None:
    facts = read_journal_facts(story.data_dir, FactsRequest(
        _window(story), cutoff_seq=story.marks["halt"], fees=True))
    assert facts.fees == [FeesPaid(1, "JPY", 36, 1), FeesPaid(2, "JPY", 18, 1)]


def test_the_vwap_of_a_venue_market_sums_its_trades_in_the_half_open_window(
        story: LiveVenue) -> None:
    first, late = (story.seen[story.marks[name]].ts for name in ("first_trade", "late_trade"))
    facts = read_journal_facts(story.data_dir, FactsRequest(
        _window(story), cutoff_seq=story.marks["halt"],
        vwaps=(MarketVwapRequest("coin", "COIN-JPY", first, late),)))
    vwap = facts.vwaps["coin"]
    assert (vwap.trades, vwap.volume_lots, vwap.notional_ticks_lots) == (2, 5, 5_600)
    assert vwap.notional_ticks_lots / vwap.volume_lots == 1_120


def test_a_vwap_window_before_the_journal_or_of_an_unknown_market_is_refused(
        story: LiveVenue) -> None:
    early = MarketVwapRequest("coin", "COIN-JPY", START_TS - SECOND, START_TS + 100 * SECOND)
    with pytest.raises(OutsideJournalError, match="reference window 'coin'"):
        read_journal_facts(story.data_dir, FactsRequest(
            _window(story), cutoff_seq=story.marks["halt"], vwaps=(early,)))
    first = story.seen[story.marks["first_trade"]].ts
    unknown = MarketVwapRequest("x", "XYZ-JPY", first, first + SECOND)
    with pytest.raises(UnknownNameError, match="XYZ-JPY"):
        read_journal_facts(story.data_dir, FactsRequest(
            _window(story), cutoff_seq=story.marks["halt"], vwaps=(unknown,)))


def test_without_caught_rows_the_counts_and_affected_accounts_stay_the_same(
        story: LiveVenue) -> None:
    full = analyse(story.data_dir, _window(story))
    facts = read_journal_facts(story.data_dir, FactsRequest(
        _window(story), cutoff_seq=story.marks["halt"], caught_order_rows=False))
    assert full.caught_orders and facts.report.caught_orders == []
    assert facts.report.counts == full.counts
    assert facts.report.affected == full.affected
