"""The run computation: golden runs worked by hand (the 2018 asset-loss shape, refused-order
losses in a small halted market, caps and combinations), its invariants as properties, and
inputs refused whole."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haltguard.common.units import NS_PER_S
from haltguard.compensation.compute import (
    AssetLossInput,
    FeePaid,
    HistogramBucket,
    MarketAssets,
    RefusedOrder,
    RefusedOrdersInput,
    RunInputs,
    TopAccount,
    compute_run,
)
from haltguard.compensation.errors import RunInputError
from haltguard.compensation.policies import (
    EXAMPLES_DIR,
    AccountCaps,
    AssetLoss,
    FeeRefund,
    FixedAmount,
    Policy,
    PolicySet,
    RefusedOrders,
    Rounding,
    Text,
    load_policies,
)
from haltguard.compensation.reference import ReferencePrice, load_trades_csv, vwap
from haltguard.venue.types import Side

TRADES_2018 = Path(__file__).with_name("data") / "xem_jpy_trades_2018.csv"
HALT_NS = 1_516_938_720 * NS_PER_S  # 2018-01-26T12:52:00+09:00
ANNOUNCEMENT_NS = 1_517_151_000 * NS_PER_S  # 2018-01-28T23:50:00+09:00
XEM = 1_000_000  # minor units per XEM
BTC = 100_000_000
SCALES = {"JPY": 1, "XEM": XEM, "BTC": BTC, "ETH": 10**18}
TEXT = Text(ja="説明", en="description")
XEM_REFERENCE = ReferencePrice(
    price=Decimal("88.549"), price_places=3, rounding=Rounding.DOWN, from_ts_ns=HALT_NS,
    to_ts_ns=ANNOUNCEMENT_NS, trades_used=7, volume=Decimal(23400),
    notional=Decimal(2072060))


def _asset_loss(**overrides: object) -> AssetLoss:
    fields: dict[str, object] = {"id": "xem-loss", "version": 1, "description": TEXT,
                                 "currency": "JPY", "asset": "XEM", "reference": "xem-vwap"}
    return msgspec.convert(fields | overrides, AssetLoss, from_attributes=True)


def _inputs(*policies: Policy, caps: tuple[AccountCaps, ...] = (),
            **fields: object) -> RunInputs:
    base: dict[str, object] = {
        "policy_set": PolicySet(policies=policies, caps=caps), "cut_off_seq": 1_000,
        "cut_off_ts_ns": HALT_NS, "holdings": {"XEM": {}}, "minor_units_per_unit": SCALES,
        "reference_prices": {"xem-vwap": XEM_REFERENCE},
    }
    return RunInputs(**(base | fields))  # type: ignore[arg-type]


HOLDERS_2018 = {
    101: 10_000 * XEM,     # 10,000 XEM x 88.549 = 885,490 JPY exactly
    102: XEM // 2,         # 0.5 XEM: 44.2745 -> 44
    103: 123_456_789,      # 123.456789 XEM: 10,931.975209161 -> 10,931
    104: 1,                # 0.000001 XEM: 0.000088549 JPY -> nothing owed, no line
    105: 0,                # holds none
}


def test_the_2018_shape_pays_holders_at_the_cut_off_times_the_vwap_rounded_down() -> None:
    trades = load_trades_csv(TRADES_2018, gap_ns_max=12 * 3600 * NS_PER_S)
    reference = vwap(trades, HALT_NS, ANNOUNCEMENT_NS)
    result = compute_run(_inputs(_asset_loss(), holdings={"XEM": HOLDERS_2018},
                                 reference_prices={"xem-vwap": reference}))
    assert [(line.line_no, line.account, line.currency, line.amount_minor)
            for line in result.lines] == [
        (1, 101, "JPY", 885_490), (2, 102, "JPY", 44), (3, 103, "JPY", 10_931)]
    assert result.totals_minor == {"JPY": 896_465}
    assert result.accounts == 3
    [part] = result.lines[2].parts
    assert part.policy == "xem-loss"
    assert Fraction(part.owed_numerator, part.owed_denominator) == Fraction("10931.975209161")
    assert part.rounded_minor == part.amount_minor == 10_931
    given = part.inputs
    assert isinstance(given, AssetLossInput)
    assert (given.asset, given.qty_minor, given.reference, given.price) == (
        "XEM", 123_456_789, "xem-vwap", Decimal("88.549"))


def test_the_shipped_2018_policy_file_and_trades_csv_give_the_same_figures() -> None:
    policy_set = load_policies([EXAMPLES_DIR / "asset-loss-2018.yaml"])
    trades = load_trades_csv(TRADES_2018, gap_ns_max=12 * 3600 * NS_PER_S)
    inputs = RunInputs(policy_set=policy_set, cut_off_seq=1_000, cut_off_ts_ns=HALT_NS,
                       holdings={"XEM": HOLDERS_2018}, minor_units_per_unit=SCALES,
                       reference_prices={"xem-jpy-vwap": vwap(trades, HALT_NS,
                                                              ANNOUNCEMENT_NS)})
    result = compute_run(inputs)
    assert result.totals_minor == {"JPY": 896_465}
    assert compute_run(inputs).digest == result.digest


def test_refused_orders_pay_only_actual_losses_in_a_small_halted_market() -> None:
    """BTC-JPY halted at 4,000,000 JPY and reopened higher (4,100,000) or lower (3,950,000):
    - account 7 wanted to buy 0.5 BTC: paid 100,000 more per BTC -> 50,000 JPY; its sell of
      0.2 BTC would have gained and counts as nothing, not as an offset;
    - account 8 wanted to sell 0.01 BTC and got 50,000 less -> 500 JPY;
    - account 9's loss is 1 JPY x 0.00333333 BTC, under one yen: no line;
    - account 11: (4,012,345.7 - 4,000,000.5) x 0.123 = 12,345.2 x 0.123 = 1,518.4596 -> 1,518;
    - account 10's order was in ETH-JPY, which the policy does not cover."""
    policy = RefusedOrders(id="refused", version=1, description=TEXT, currency="JPY",
                           markets=("BTC-JPY",))
    up, down, halt = Decimal(4_100_000), Decimal(3_950_000), Decimal(4_000_000)
    orders = (
        RefusedOrder(7, "BTC-JPY", Side.BUY, BTC // 2, HALT_NS, halt, up),
        RefusedOrder(7, "BTC-JPY", Side.SELL, BTC // 5, HALT_NS + 1, halt, up),
        RefusedOrder(8, "BTC-JPY", Side.SELL, BTC // 100, HALT_NS + 2, halt, down),
        RefusedOrder(9, "BTC-JPY", Side.BUY, 333_333, HALT_NS + 3, halt, halt + 1),
        RefusedOrder(10, "ETH-JPY", Side.BUY, 10**18, HALT_NS + 4, Decimal(300_000),
                     Decimal(400_000)),
        RefusedOrder(11, "BTC-JPY", Side.BUY, 12_300_000, HALT_NS + 5, Decimal("4000000.5"),
                     Decimal("4012345.7")),
    )
    result = compute_run(_inputs(
        policy, refused_orders=orders,
        market_assets={"BTC-JPY": MarketAssets("BTC", "JPY"),
                       "ETH-JPY": MarketAssets("ETH", "JPY")}))
    assert [(line.account, line.amount_minor) for line in result.lines] == [
        (7, 50_000), (8, 500), (11, 1_518)]
    [part] = result.lines[0].parts
    assert isinstance(part.inputs, RefusedOrdersInput)
    assert [given.side for given in part.inputs.orders] == [Side.BUY, Side.SELL]
    assert Fraction(part.owed_numerator, part.owed_denominator) == 50_000


def test_policies_combine_per_account_and_currency_and_caps_hold_each_line() -> None:
    """XEM loss + 1,000 JPY goodwill to affected accounts + JPY fees refunded (at most 500 per
    account) + BTC fees refunded, then JPY lines held within 600..886,000:
    - 101: 885,490 + 1,000 + min(700, 500) = 886,990 -> capped to 886,000;
    - 104: owed nothing for its dust of XEM, gets the goodwill 1,000;
    - 106: only a JPY fee refund of 30 -> raised to the minimum 600;
    - 107: BTC fees of 1,234 satoshi refunded, in its own BTC line (no caps for BTC)."""
    policies: tuple[Policy, ...] = (
        _asset_loss(),
        FixedAmount(id="goodwill", version=1, description=TEXT, currency="JPY",
                    amount_minor=1_000),
        FeeRefund(id="fees-jpy", version=1, description=TEXT, currency="JPY",
                  account_max_minor=500),
        FeeRefund(id="fees-btc", version=1, description=TEXT, currency="BTC"),
    )
    caps = (AccountCaps(id="caps", version=1, description=TEXT, currency="JPY",
                        account_min_minor=600, account_max_minor=886_000),)
    fees = (FeePaid(101, "JPY", 400), FeePaid(101, "JPY", 300), FeePaid(106, "JPY", 30),
            FeePaid(107, "BTC", 1_234))
    result = compute_run(_inputs(*policies, caps=caps, holdings={"XEM": HOLDERS_2018},
                                 fees=fees, affected_accounts=frozenset({101, 104})))
    assert [(line.line_no, line.account, line.currency, line.subtotal_minor, line.amount_minor)
            for line in result.lines] == [
        (1, 101, "JPY", 886_990, 886_000), (2, 102, "JPY", 44, 600),
        (3, 103, "JPY", 10_931, 10_931), (4, 104, "JPY", 1_000, 1_000),
        (5, 106, "JPY", 30, 600), (6, 107, "BTC", 1_234, 1_234)]
    fee_part = next(p for p in result.lines[0].parts if p.policy == "fees-jpy")
    assert (fee_part.rounded_minor, fee_part.amount_minor) == (700, 500)
    assert [p.policy for p in result.lines[0].parts] == ["xem-loss", "goodwill", "fees-jpy"]
    assert result.totals_minor == {"BTC": 1_234, "JPY": 886_000 + 600 + 10_931 + 1_000 + 600}


def test_one_account_paid_in_two_currencies_gets_adjacent_lines() -> None:
    policies = (FixedAmount(id="jpy", version=1, description=TEXT, currency="JPY",
                            amount_minor=5),
                FixedAmount(id="btc", version=1, description=TEXT, currency="BTC",
                            amount_minor=7))
    result = compute_run(_inputs(*policies, affected_accounts=frozenset({2, 1})))
    assert [(line.line_no, line.account, line.currency) for line in result.lines] == [
        (1, 1, "BTC"), (2, 1, "JPY"), (3, 2, "BTC"), (4, 2, "JPY")]
    assert result.accounts == 2


def test_the_distribution_and_top_accounts_follow_the_lines() -> None:
    holdings = {"XEM": {1: 10 * XEM, 2: 10 * XEM, 3: 100 * XEM, 4: XEM // 10, 5: XEM}}
    result = compute_run(_inputs(_asset_loss(), holdings=holdings), top_n=2)
    # 885, 885, 8,854, 8, 88 JPY
    assert result.histogram == (
        HistogramBucket("JPY", 1, 10, 1, 8), HistogramBucket("JPY", 10, 100, 1, 88),
        HistogramBucket("JPY", 100, 1_000, 2, 1_770),
        HistogramBucket("JPY", 1_000, 10_000, 1, 8_854))
    assert result.top_accounts == (TopAccount("JPY", 3, 8_854, 3),
                                   TopAccount("JPY", 1, 885, 1))


def test_a_run_without_a_reference_price_holdings_or_scales_is_refused_listing_each() -> None:
    policies = (_asset_loss(reference="missing"),
                FeeRefund(id="fees", version=1, description=TEXT, currency="DOGE"),
                RefusedOrders(id="refused", version=1, description=TEXT, currency="JPY",
                              markets=("SOL-JPY",)))
    inputs = _inputs(*policies, holdings={}, fees=(FeePaid(1, "JPY", -5),))
    with pytest.raises(RunInputError) as refused:
        compute_run(inputs)
    found = [problem.text_en() for problem in refused.value.problems]
    assert found == [
        "policy xem-loss: no reference price named 'missing'",
        "policy xem-loss: no holdings of XEM at the cut-off were given",
        "policy refused: market SOL-JPY has no base and quote given",
        "minor_units_per_unit.DOGE: no minor units per unit for DOGE; give them",
        "fees[0]: account 1 has a fee of -5 on 1 trades; fees are not negative, on one trade "
        "or more",
    ]
    assert refused.value.code == "run_inputs_invalid"
    assert all(problem.ja for problem in refused.value.problems)


def test_a_negative_holding_is_refused_before_anything_is_computed() -> None:
    with pytest.raises(RunInputError, match=r"negative holdings for accounts \[2\]"):
        compute_run(_inputs(_asset_loss(), holdings={"XEM": {1: XEM, 2: -XEM}}))


def test_a_total_past_the_ledgers_64_bits_is_refused() -> None:
    holdings = {"XEM": {1: 10**17 * XEM, 2: 10**17 * XEM}}
    with pytest.raises(RunInputError, match=r"totals\.JPY: the total .* passes the ledger's"):
        compute_run(_inputs(_asset_loss(), holdings=holdings))


# --- properties --------------------------------------------------------------------------------

_holdings = st.dictionaries(st.integers(1, 10**9), st.integers(0, 10**13), max_size=50)
_fees = st.lists(st.builds(FeePaid, st.integers(1, 60), st.sampled_from(["JPY", "BTC"]),
                           st.integers(0, 10**6)), max_size=30)
_prices = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10**6), places=3)
_refused = st.lists(st.builds(
    RefusedOrder, st.integers(1, 60), st.just("BTC-JPY"), st.sampled_from(Side),
    st.integers(1, 10 * BTC), st.integers(0, 10**18), _prices, _prices), max_size=20)


def _rich_inputs(holdings: dict[int, int], fees: list[FeePaid], price: Decimal,
                 rounding: Rounding, caps: bool, *,
                 refused: tuple[RefusedOrder, ...] = ()) -> RunInputs:
    reference = msgspec.structs.replace(XEM_REFERENCE, price=price)
    policies: tuple[Policy, ...] = (
        _asset_loss(rounding=rounding),
        FeeRefund(id="fees", version=1, description=TEXT, currency="JPY", refund_bps=3_333,
                  rounding=rounding),
        FixedAmount(id="goodwill", version=1, description=TEXT, currency="JPY",
                    amount_minor=77),
        RefusedOrders(id="refused", version=1, description=TEXT, currency="JPY",
                      markets=("BTC-JPY",), rounding=rounding),
    )
    cap = (AccountCaps(id="caps", version=1, description=TEXT, currency="JPY",
                       account_min_minor=100, account_max_minor=10**9),) if caps else ()
    return _inputs(*policies, caps=cap, holdings={"XEM": holdings}, fees=tuple(fees),
                   reference_prices={"xem-vwap": reference}, refused_orders=refused,
                   market_assets={"BTC-JPY": MarketAssets("BTC", "JPY")},
                   affected_accounts=frozenset(a for a in holdings if a % 3 == 0))


@settings(max_examples=60, deadline=None)
@given(st.tuples(_holdings, _fees, _prices, st.sampled_from(Rounding), st.booleans()),
       _refused, st.randoms())
def test_the_same_inputs_in_any_order_give_the_same_digest(
        scenario: tuple[dict[int, int], list[FeePaid], Decimal, Rounding, bool],
        refused: list[RefusedOrder], shuffler: random.Random) -> None:
    holdings, fees, price, rounding, caps = scenario
    first = compute_run(_rich_inputs(holdings, fees, price, rounding, caps,
                                     refused=tuple(refused)))
    shuffled_holdings = list(holdings.items())
    shuffler.shuffle(shuffled_holdings)
    shuffled_fees = list(fees)
    shuffler.shuffle(shuffled_fees)
    shuffled_refused = list(refused)
    shuffler.shuffle(shuffled_refused)
    again = compute_run(_rich_inputs(dict(shuffled_holdings), shuffled_fees, price, rounding,
                                     caps, refused=tuple(shuffled_refused)))
    assert again.digest == first.digest
    assert again == first


@settings(max_examples=30, deadline=None)
@given(_holdings.filter(bool), _prices)
def test_a_different_input_gives_a_different_digest(holdings: dict[int, int],
                                                    price: Decimal) -> None:
    first = compute_run(_rich_inputs(holdings, [], price, Rounding.DOWN, False))
    account = next(iter(holdings))
    changed = holdings | {account: holdings[account] + 1}
    assert compute_run(_rich_inputs(changed, [], price, Rounding.DOWN, False)).digest \
        != first.digest
    moved = _rich_inputs(holdings, [], price, Rounding.DOWN, False)
    moved = msgspec.structs.replace(moved, cut_off_seq=moved.cut_off_seq + 1)
    assert compute_run(moved).digest != first.digest


@settings(max_examples=60, deadline=None)
@given(_holdings, _fees, _prices, st.sampled_from(Rounding), st.booleans())
def test_totals_equal_the_sum_of_the_lines(holdings: dict[int, int], fees: list[FeePaid],
                                           price: Decimal, rounding: Rounding,
                                           caps: bool) -> None:
    result = compute_run(_rich_inputs(holdings, fees, price, rounding, caps))
    for currency, total in result.totals_minor.items():
        assert total == sum(line.amount_minor for line in result.lines
                            if line.currency == currency)
    assert sum(b.total_minor for b in result.histogram) == sum(result.totals_minor.values())
    assert [line.line_no for line in result.lines] == list(range(1, len(result.lines) + 1))
    assert all(line.amount_minor > 0 for line in result.lines)


@settings(max_examples=60, deadline=None)
@given(_holdings, _fees, _prices, _refused)
def test_rounding_down_never_pays_more_than_owed(holdings: dict[int, int],
                                                 fees: list[FeePaid], price: Decimal,
                                                 refused: list[RefusedOrder]) -> None:
    result = compute_run(_rich_inputs(holdings, fees, price, Rounding.DOWN, False,
                                      refused=tuple(refused)))
    for line in result.lines:
        owed = sum(Fraction(p.owed_numerator, p.owed_denominator) for p in line.parts)
        assert line.amount_minor <= owed < line.amount_minor + len(line.parts)
        for part in line.parts:
            exact = Fraction(part.owed_numerator, part.owed_denominator)
            assert part.amount_minor <= exact < part.amount_minor + 1
