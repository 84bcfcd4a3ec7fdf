"""Runs whose inputs come from the journal itself: refused-order losses, fee refunds and a
reference price from the venue's own market, on a real venue (the demo's markets: BTC-JPY
1 tick = 1 JPY, 1 lot = 0.0001 BTC, taker fee 10 bps, maker fee 0; ETH-JPY 1 lot = 0.001
ETH; JPY with 4 decimals, so 1 JPY = 10,000 minor units; every demo account starts with
100 BTC: ``haltguard.gateway.demo``).

The story, worked by hand:

- Before the incident: account 1 sells 1 BTC at 15,000,000 to account 2 (account 2 pays the
  taker fee: 15,000 JPY), and 1 ETH at 500,000 to account 2.
- The incident starts (the run's window opens). BTC-JPY and ETH-JPY are halted. Refused:
  account 3's buy of 0.5 BTC at 15,100,000, account 4's sell of 0.2 BTC at 14,900,000,
  account 8's buy of 1 ETH at 510,000.
- BTC-JPY goes limit-only (it trades again): account 5 sells 0.3 BTC at 15,200,000 to
  account 6, who pays the taker fee: 0.3 x 15,200,000 = 4,560,000 JPY x 10 bps = 4,560 JPY.
  ETH-JPY stays halted.

So, from the journal:

- Account 3's buy: the last trade before the refusal was at 15,000,000, the first after the
  reopening at 15,200,000: 200,000 JPY against it on 0.5 BTC = a loss of 100,000 JPY.
- Account 4's sell: the same move was in its favour: nothing (no unrealised profit).
- Account 8's ETH buy: ETH-JPY never traded again within the journal: not computed, and the
  run says why.
- Fees in the window: only account 6's 4,560 JPY (account 2's were before the incident).
- The VWAP of BTC-JPY over both BTC trades: (1 x 15,000,000 + 0.3 x 15,200,000) / 1.3 =
  15,046,153.846153... -> 15046153.846 (3 places, rounded down); a holder of 100 BTC at the
  cut-off is owed 1,504,615,384.6 JPY.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from comp_service_support import ACCOUNTS

from haltguard.compensation import flows, service
from haltguard.compensation.errors import ReferenceDataError
from haltguard.compensation.models import RunProposal
from haltguard.compensation.settings import CompensationSettings
from haltguard.db.session import session_scope
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.incidents import flows as incident_flows
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.responders.service import ManualClock
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.types import MarketState, Side

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

YEN = 10_000  # minor units of JPY
LOT = 10_000  # lots of BTC-JPY per BTC
ETH_LOTS = 1_000  # lots of ETH-JPY per ETH
LOSS_OF_ACCOUNT_3 = 100_000 * YEN
FEE_OF_ACCOUNT_6 = 4_560 * YEN
VENUE_VWAP_TEXT = "15046153.846"
HOLDING_100_BTC_AT_VENUE_VWAP = 15_046_153_846_000  # 100 x 15046153.846 JPY, minor units

DESCRIPTION = "description: {ja: 説明, en: description}\n"
POLICIES = {
    "refused.yaml": "id: refused-orders\nversion: 1\nkind: refused_orders\n" + DESCRIPTION
    + "currency: JPY\nmarkets: [BTC-JPY, ETH-JPY]\n",
    "fees.yaml": "id: fee-refund\nversion: 1\nkind: fee_refund\n" + DESCRIPTION
    + "currency: JPY\n",
    "venue-loss.yaml": "id: venue-loss\nversion: 1\nkind: asset_loss\n" + DESCRIPTION
    + "currency: JPY\nasset: BTC\nreference: btc-jpy-venue\n",
}


@dataclass
class Story:
    settings: CompensationSettings
    session_factory: Any
    incident_id: int
    window_from: datetime
    vwap_from: datetime
    cutoff_seq: int
    marks: dict[str, int]


def _trade(runtime: VenueRuntime, market: str, *, seller: int, buyer: int, lots: int,
           price: int) -> int:
    runtime.submit(PlaceOrder(market, seller, Side.SELL, lots, price)).result()
    runtime.submit(PlaceOrder(market, buyer, Side.BUY, lots, price)).result()
    return runtime.read(lambda state: state.last_seq)


def _refused(runtime: VenueRuntime, market: str, account: int, *, side: Side, lots: int,
             price: int) -> int:
    runtime.submit(PlaceOrder(market, account, side, lots, price)).result()
    return runtime.read(lambda state: state.last_seq)


@pytest.fixture
def story(session_factory: Any, runtime: VenueRuntime, venue: InProcessVenueControl,
          comp_settings: CompensationSettings) -> Story:
    for name, text in POLICIES.items():
        (comp_settings.policies_dir / name).write_text(text, encoding="utf-8")
    vwap_from = datetime.now(UTC)
    marks = {"btc_before": _trade(runtime, "BTC-JPY", seller=1, buyer=2, lots=LOT,
                                  price=15_000_000),
             "eth_before": _trade(runtime, "ETH-JPY", seller=1, buyer=2, lots=ETH_LOTS,
                                  price=500_000)}
    time.sleep(0.002)
    window_from = datetime.now(UTC)
    with session_scope(session_factory) as session:
        incident = incident_flows.open_incident(
            session, IncidentCreate(title="Matching stalled", category=Category.SOFTWARE_BUG,
                                    severity=Severity.SEV2, affected_markets=["BTC-JPY"]),
            actor="alice", clock=ManualClock(window_from))
        incident_id, ref = incident.id, incident.ref
    for market in ("BTC-JPY", "ETH-JPY"):
        venue.set_market_state(market, MarketState.HALTED, actor="operator:alice",
                               reason="stalled", incident_id=ref)
    cutoff_seq = runtime.read(lambda state: state.last_seq)
    marks["refused_3"] = _refused(runtime, "BTC-JPY", 3, side=Side.BUY, lots=LOT // 2,
                                  price=15_100_000)
    marks["refused_4"] = _refused(runtime, "BTC-JPY", 4, side=Side.SELL, lots=LOT // 5,
                                  price=14_900_000)
    marks["refused_8"] = _refused(runtime, "ETH-JPY", 8, side=Side.BUY, lots=ETH_LOTS,
                                  price=510_000)
    venue.set_market_state("BTC-JPY", MarketState.LIMIT_ONLY, actor="operator:alice",
                           reason="back", incident_id=ref)
    marks["btc_after"] = _trade(runtime, "BTC-JPY", seller=5, buyer=6, lots=3 * LOT // 10,
                                 price=15_200_000)
    return Story(comp_settings, session_factory, incident_id, window_from, vwap_from,
                 cutoff_seq, marks)


def _propose(story: Story, policies: list[str], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "incident_id": story.incident_id, "policies": policies, "cutoff_seq": story.cutoff_seq,
        "from_time": story.window_from.isoformat(),
        "to_time": (story.window_from + timedelta(hours=1)).isoformat(), **overrides}
    with session_scope(story.session_factory) as session:
        run = flows.propose_run(session, RunProposal.model_validate(body),
                                settings=story.settings, actor="alice",
                                now=story.window_from + timedelta(minutes=5))
        explained = {line.account: service.explain(session, run.id, line.account)
                     for line in service.lines_in_order(session, run.id)}
        return {"run": service.run_read(session, run), "explained": explained}


def test_a_refused_order_loses_the_adverse_move_to_the_first_trade_after_reopening(
        story: Story) -> None:
    found = _propose(story, ["refused.yaml"])
    run, explained = found["run"], found["explained"]
    assert run.totals == {"JPY": LOSS_OF_ACCOUNT_3}
    assert list(explained) == [3], "account 4's move was in its favour: no line"
    part = explained[3].lines[0].parts[0]
    assert part["policy"] == "refused-orders" and part["amount_minor"] == LOSS_OF_ACCOUNT_3
    [order] = part["inputs"]["orders"]
    assert (order["market"], order["side"], order["qty_minor"]) == ("BTC-JPY", "buy", 50_000_000)
    assert (order["price_at_refusal"], order["price_at_reopen"]) == ("15000000", "15200000")
    refused = run.window["refused_orders"]
    assert (refused["computed"], refused["not_computed_count"]) == (2, 1)
    assert refused["not_computed"] == [{
        "account": 8, "market": "ETH-JPY", "seq": story.marks["refused_8"],
        "reason": "the market did not trade again within the journal",
        "reason_ja": "記録の範囲内で取引が再開されていません"}]
    assert "last trade at or before the refusal" in refused["price_at_refusal"]
    assert explained[3].window["refused_orders"]["computed"] == 2


def test_fees_paid_in_the_window_are_refunded_from_the_journals_trades(story: Story) -> None:
    found = _propose(story, ["fees.yaml"])
    run, explained = found["run"], found["explained"]
    assert run.totals == {"JPY": FEE_OF_ACCOUNT_6}
    assert list(explained) == [6], "account 2's fees were paid before the incident"
    assert explained[6].lines[0].parts[0]["inputs"] == {
        "kind": "fee_refund", "asset": "JPY", "fees_minor": FEE_OF_ACCOUNT_6, "fee_count": 1,
        "refund_bps": 10_000}
    assert run.window["fees"] == {"accounts": 1, "trades": 1}


def test_a_reference_price_from_the_venues_own_market_is_its_vwap(story: Story) -> None:
    reference = {"name": "btc-jpy-venue", "market": "BTC-JPY",
                 "from_time": story.vwap_from.isoformat(),
                 "to_time": (datetime.now(UTC) + timedelta(seconds=1)).isoformat()}
    found = _propose(story, ["venue-loss.yaml"], references=[reference])
    run, explained = found["run"], found["explained"]
    [record] = run.references
    assert (record["source"], record["market"], record["price"], record["trades_used"]) == (
        "venue", "BTC-JPY", VENUE_VWAP_TEXT, 2)
    assert record["volume"] == "1.3000"
    untouched = 7  # holds its 100 BTC from the demo funding
    assert explained[untouched].lines[0].amount_minor == HOLDING_100_BTC_AT_VENUE_VWAP
    assert run.line_count == ACCOUNTS


def test_a_venue_reference_window_without_trades_is_refused(story: Story) -> None:
    empty = {"name": "btc-jpy-venue", "market": "BTC-JPY",
             "from_time": story.window_from.isoformat(),
             "to_time": (story.window_from + timedelta(milliseconds=1)).isoformat()}
    with pytest.raises(ReferenceDataError, match="no trades"):
        _propose(story, ["venue-loss.yaml"], references=[empty])


def test_a_reference_names_exactly_one_source(story: Story) -> None:
    both = {"name": "x", "market": "BTC-JPY", "csv": "btc_trades.csv",
            "from_time": story.window_from.isoformat(),
            "to_time": (story.window_from + timedelta(hours=1)).isoformat()}
    with pytest.raises(ValueError, match="exactly one source"):
        RunProposal.model_validate({"incident_id": 1, "policies": ["fees.yaml"],
                                    "cutoff_seq": 1, "references": [both]})
