"""The computation of a compensation run: a pure function of its inputs (no database, no
clock, no files), so a run can be recomputed and checked by anyone holding the same inputs.

The rules (policies.py states each policy's own):

- Money and quantities are integers in minor units; prices are exact ``Decimal`` quote per
  whole base unit, and ``minor_units_per_unit`` (10 to the asset's decimals) converts
  between them; :func:`minor_units_per_unit` is the one place decimals become that.
  Every policy part is computed as an exact ratio, rounded once by its policy's rule, then
  held within that policy's caps.
- An account's parts are summed per currency into one line, which the set's
  ``account_caps`` for that currency then holds within its minimum and maximum. A line owes
  at least one minor unit; an account owed nothing gets no line.
- Lines are ordered by account, then currency, and numbered from 1. Each keeps the parts
  and the inputs that produced it, so any customer's figure can be explained.
- ``digest`` is the sha256 of a canonical encoding of the inputs and the lines: the same
  inputs (in any order of their lists) give the same digest.
- Inputs are checked whole before anything is computed; every problem is listed in one
  :class:`~haltguard.compensation.errors.RunInputError`.

For speed over a million accounts the per-holder work is one multiplication, one division
and three small structs; nothing is formatted as text here.
"""

from __future__ import annotations

import hashlib
import heapq
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal
from fractions import Fraction
from itertools import repeat
from operator import attrgetter
from typing import Final

import msgspec

from haltguard.common.units import BPS
from haltguard.compensation.errors import Problem, RunInputError
from haltguard.compensation.policies import (
    AssetLoss,
    FeeRefund,
    FixedAmount,
    PolicySet,
    RefusedOrders,
    Rounding,
    round_ratio,
)
from haltguard.compensation.reference import ReferencePrice
from haltguard.venue.types import Side

DIGEST_FORMAT: Final = "haltguard.compensation.run/1"
"""Changes whenever the encoding hashed into a digest changes."""
TOP_ACCOUNTS_DEFAULT = 20
TOP_ACCOUNTS_MAX = 1_000
DECIMALS_MAX = 18
TOTAL_MINOR_MAX = 2**63 - 1
"""A currency's total (and so every line) must fit the ledger's and the journal's 64 bits."""

_Fail = Callable[[str, str, str], None]
"""How the checks report a problem: where, English, Japanese."""


# --- the inputs --------------------------------------------------------------------------------


class RefusedOrder(msgspec.Struct, frozen=True, gc=False):
    """An order the customer could not place (or cancel) because of the interruption.

    ``side`` is the trade they wanted; ``price_at_refusal`` the market's reference price when
    it was refused, ``price_at_reopen`` the price they got (or would have got) at reopening.
    """

    account: int
    market: str
    side: Side
    qty_minor: int
    ts_ns: int
    price_at_refusal: Decimal
    price_at_reopen: Decimal


class FeePaid(msgspec.Struct, frozen=True, gc=False):
    """Fees an account paid in one asset on ``trades`` trades in the run's window."""

    account: int
    asset: str
    fee_minor: int
    trades: int = 1


class MarketAssets(msgspec.Struct, frozen=True):
    base: str
    quote: str


def minor_units_per_unit(decimals: int) -> int:
    """How many minor units make one whole unit of an asset with ``decimals`` decimals: the
    one place the venue's decimals become the run's units."""
    if not 0 <= decimals <= DECIMALS_MAX:
        raise ValueError(f"an asset has 0..{DECIMALS_MAX} decimals, not {decimals}")
    units: int = 10**decimals
    return units


class RunInputs(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a run is computed from; nothing else is read."""

    policy_set: PolicySet
    cut_off_seq: int
    cut_off_ts_ns: int
    holdings: dict[str, dict[int, int]]
    """asset -> account -> quantity held at the cut-off, in the asset's minor units."""
    minor_units_per_unit: dict[str, int]
    """asset -> minor units per whole unit (100_000_000 for BTC at 8 decimals, 1 for JPY at
    0): see :func:`minor_units_per_unit`."""
    refused_orders: tuple[RefusedOrder, ...] = ()
    fees: tuple[FeePaid, ...] = ()
    affected_accounts: frozenset[int] = frozenset()
    reference_prices: dict[str, ReferencePrice] = msgspec.field(default_factory=dict)
    market_assets: dict[str, MarketAssets] = msgspec.field(default_factory=dict)


# --- the result --------------------------------------------------------------------------------


class AssetLossInput(msgspec.Struct, frozen=True, gc=False, tag_field="kind",
                     tag="asset_loss"):
    asset: str
    qty_minor: int
    reference: str
    price: Decimal


class RefusedOrderInput(msgspec.Struct, frozen=True, gc=False):
    market: str
    side: Side
    qty_minor: int
    ts_ns: int
    price_at_refusal: Decimal
    price_at_reopen: Decimal


class FeeRefundInput(msgspec.Struct, frozen=True, gc=False, tag_field="kind",
                     tag="fee_refund"):
    asset: str
    fees_minor: int
    fee_count: int
    refund_bps: int


class FixedAmountInput(msgspec.Struct, frozen=True, gc=False, tag_field="kind",
                       tag="fixed_amount"):
    amount_minor: int


class RefusedOrdersInput(msgspec.Struct, frozen=True, gc=False, tag_field="kind",
                         tag="refused_orders"):
    orders: tuple[RefusedOrderInput, ...]


PartInput = AssetLossInput | RefusedOrdersInput | FeeRefundInput | FixedAmountInput


class LinePart(msgspec.Struct, frozen=True, gc=False):
    """What one policy owes one account: exactly ``owed_numerator / owed_denominator`` minor
    units, ``rounded_minor`` after its rounding, ``amount_minor`` after its caps."""

    policy: str
    owed_numerator: int
    owed_denominator: int
    rounded_minor: int
    amount_minor: int
    inputs: PartInput


class RunLine(msgspec.Struct, frozen=True, gc=False):
    """One account's payment in one currency: ``subtotal_minor`` is the sum of the parts,
    ``amount_minor`` what is paid after the set's caps."""

    line_no: int
    account: int
    currency: str
    amount_minor: int
    subtotal_minor: int
    parts: tuple[LinePart, ...]


class HistogramBucket(msgspec.Struct, frozen=True):
    """Lines paying ``low_minor <= amount < high_minor`` (decades of minor units)."""

    currency: str
    low_minor: int
    high_minor: int
    lines: int
    total_minor: int


class TopAccount(msgspec.Struct, frozen=True):
    currency: str
    account: int
    amount_minor: int
    line_no: int


class RunResult(msgspec.Struct, frozen=True):
    digest: str
    lines: tuple[RunLine, ...]
    totals_minor: dict[str, int]
    """currency -> the sum of its lines' amounts."""
    accounts: int
    """How many distinct accounts have at least one line."""
    histogram: tuple[HistogramBucket, ...]
    top_accounts: tuple[TopAccount, ...]
    """The largest lines per currency, largest first (ties: lower account first)."""


# --- the computation ---------------------------------------------------------------------------


_Parts = dict[int, LinePart | list[LinePart]]
"""One currency's parts by account: the part itself while an account has one (most do, and
a million one-element lists would cost more than the parts), a list from the second on."""


def compute_run(inputs: RunInputs, *, top_n: int = TOP_ACCOUNTS_DEFAULT) -> RunResult:
    """The run's lines, totals, distribution, top accounts and digest (see the module's
    rules); refuses inputs with any problem before computing anything."""
    if not 1 <= top_n <= TOP_ACCOUNTS_MAX:
        raise ValueError(f"top_n must be 1..{TOP_ACCOUNTS_MAX}")
    problems = check_inputs(inputs)
    if problems:
        raise RunInputError(problems)
    by_currency: dict[str, _Parts] = defaultdict(dict)
    for policy in inputs.policy_set.policies:
        parts = by_currency[policy.currency]
        if isinstance(policy, AssetLoss):
            _add_asset_loss_parts(policy, inputs, parts)
        elif isinstance(policy, RefusedOrders):
            _add_parts(_refused_order_parts(policy, inputs), parts)
        elif isinstance(policy, FeeRefund):
            _add_parts(_fee_refund_parts(policy, inputs), parts)
        else:
            _add_parts(_fixed_amount_parts(policy, inputs), parts)
    lines = _lines(inputs.policy_set, by_currency)
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.currency] += line.amount_minor
    too_large = [Problem(f"totals.{currency}", f"the total {total} passes the ledger's limit "
                         f"{TOTAL_MINOR_MAX}; check the holdings, prices and units",
                         f"合計 {total} が台帳の上限 {TOTAL_MINOR_MAX} を超えています。"
                         "保有残高・価格・単位の桁を確認してください")
                 for currency, total in sorted(totals.items()) if total > TOTAL_MINOR_MAX]
    if too_large:
        raise RunInputError(too_large)
    return RunResult(
        digest=run_digest(inputs, lines),
        lines=lines,
        totals_minor=dict(sorted(totals.items())),
        accounts=len({line.account for line in lines}),
        histogram=_histogram(lines),
        top_accounts=_top_accounts(lines, top_n),
    )


def _add_part(parts: _Parts, account: int, part: LinePart) -> None:
    existing = parts.get(account)
    if existing is None:
        parts[account] = part
    elif isinstance(existing, list):
        existing.append(part)
    else:
        parts[account] = [existing, part]


def _add_parts(found: Iterable[tuple[int, LinePart]], parts: _Parts) -> None:
    for account, part in found:
        if part.amount_minor > 0:
            _add_part(parts, account, part)


def _add_asset_loss_parts(policy: AssetLoss, inputs: RunInputs, parts: _Parts) -> None:
    """holding (minor) / asset units x price x currency units, per holder. The hot loop of
    a large run: one multiplication, one division and two structs per holder."""
    reference = inputs.reference_prices[policy.reference]
    price_num, price_den = reference.price.as_integer_ratio()
    factor = price_num * inputs.minor_units_per_unit[policy.currency]
    denominator = price_den * inputs.minor_units_per_unit[policy.asset]
    rounding, name, asset, price = policy.rounding, policy.id, policy.asset, reference.price
    capped = policy.account_min_minor > 0 or policy.account_max_minor is not None
    exact_down = rounding is Rounding.DOWN and not capped
    get = parts.get
    for account, qty_minor in inputs.holdings[policy.asset].items():
        owed = qty_minor * factor
        if exact_down:
            rounded = amount = owed // denominator
        else:
            rounded = round_ratio(owed, denominator, rounding)
            amount = policy.hold_within_caps(rounded)
        if amount <= 0:
            continue
        part = LinePart(name, owed, denominator, rounded, amount,
                        AssetLossInput(asset, qty_minor, policy.reference, price))
        if get(account) is None:
            parts[account] = part
        else:
            _add_part(parts, account, part)


def _refused_order_parts(policy: RefusedOrders,
                         inputs: RunInputs) -> Iterable[tuple[int, LinePart]]:
    """Per account, the sum of its refused orders' adverse moves x quantity; a move in the
    customer's favour counts as nothing, not as a gain that offsets another order's loss."""
    covered = set(policy.markets)
    currency_units = inputs.minor_units_per_unit[policy.currency]
    losses: dict[int, Fraction] = {}
    orders: dict[int, list[RefusedOrderInput]] = defaultdict(list)
    # In a canonical order, so a line's list of orders (and so the digest) does not depend
    # on the order the inputs came in.
    for order in sorted(inputs.refused_orders, key=msgspec.structs.astuple):
        if order.market not in covered:
            continue
        move = order.price_at_reopen - order.price_at_refusal
        adverse = move if order.side is Side.BUY else -move
        base_units = inputs.minor_units_per_unit[inputs.market_assets[order.market].base]
        loss = (Fraction(adverse) * order.qty_minor * currency_units / base_units
                if adverse > 0 else Fraction(0))
        losses[order.account] = losses.get(order.account, Fraction(0)) + loss
        orders[order.account].append(RefusedOrderInput(
            order.market, order.side, order.qty_minor, order.ts_ns, order.price_at_refusal,
            order.price_at_reopen))
    for account in sorted(losses):
        owed = losses[account]
        rounded = round_ratio(owed.numerator, owed.denominator, policy.rounding)
        yield account, LinePart(policy.id, owed.numerator, owed.denominator, rounded,
                                policy.hold_within_caps(rounded),
                                RefusedOrdersInput(tuple(orders[account])))


def _fee_refund_parts(policy: FeeRefund, inputs: RunInputs) -> Iterable[tuple[int, LinePart]]:
    paid_minor: dict[int, int] = {}
    counts: dict[int, int] = {}
    for fee in inputs.fees:
        if fee.asset == policy.currency:
            account = fee.account
            paid_minor[account] = paid_minor.get(account, 0) + fee.fee_minor
            counts[account] = counts.get(account, 0) + fee.trades
    for account in sorted(paid_minor):
        fees_minor = paid_minor[account]
        owed = fees_minor * policy.refund_bps
        rounded = round_ratio(owed, BPS, policy.rounding)
        yield account, LinePart(policy.id, owed, BPS, rounded, policy.hold_within_caps(rounded),
                                FeeRefundInput(policy.currency, fees_minor, counts[account],
                                               policy.refund_bps))


def _fixed_amount_parts(policy: FixedAmount,
                        inputs: RunInputs) -> Iterable[tuple[int, LinePart]]:
    given = FixedAmountInput(policy.amount_minor)
    amount = policy.hold_within_caps(policy.amount_minor)
    for account in sorted(inputs.affected_accounts):
        yield account, LinePart(policy.id, policy.amount_minor, 1, policy.amount_minor, amount,
                                given)


def _lines(policy_set: PolicySet, by_currency: dict[str, _Parts]) -> tuple[RunLine, ...]:
    """One line per (account, currency) owed something, ordered and numbered."""
    currencies = sorted(c for c, parts in by_currency.items() if parts)
    if len(currencies) == 1:
        keys: Iterable[tuple[int, str]] = zip(sorted(by_currency[currencies[0]]),
                                              repeat(currencies[0]), strict=False)
    else:
        keys = sorted((account, currency) for currency in currencies
                      for account in by_currency[currency])
    caps = {currency: policy_set.caps_for(currency) for currency in currencies}
    lines: list[RunLine] = []
    for line_no, (account, currency) in enumerate(keys, start=1):
        found = by_currency[currency][account]
        if isinstance(found, list):
            parts = tuple(found)
            subtotal = 0
            for part in found:
                subtotal += part.amount_minor
        else:
            parts = (found,)
            subtotal = found.amount_minor
        cap = caps[currency]
        lines.append(RunLine(line_no, account, currency,
                             subtotal if cap is None else cap.hold_within_caps(subtotal),
                             subtotal, parts))
    return tuple(lines)


_DECADES: Final = tuple(10**power for power in range(1, 20))
"""The upper bounds of the histogram's buckets: a line of 2**63 minor units has 19 digits."""


def _histogram(lines: tuple[RunLine, ...]) -> tuple[HistogramBucket, ...]:
    """Lines per currency by decade of their amount in minor units: [1,10), [10,100) ..."""
    buckets: list[HistogramBucket] = []
    for currency, amounts in _amounts_by_currency(lines).items():
        counts = [0] * (len(_DECADES) + 1)
        totals = [0] * (len(_DECADES) + 1)
        for amount in amounts:
            decade = bisect_right(_DECADES, amount)
            counts[decade] += 1
            totals[decade] += amount
        buckets += [HistogramBucket(currency, 10**decade, 10 ** (decade + 1), count,
                                    totals[decade])
                    for decade, count in enumerate(counts) if count]
    return tuple(buckets)


def _amounts_by_currency(lines: tuple[RunLine, ...]) -> dict[str, list[int]]:
    currencies = sorted({line.currency for line in lines})
    if len(currencies) == 1:
        return {currencies[0]: [line.amount_minor for line in lines]}
    return {currency: [line.amount_minor for line in lines if line.currency == currency]
            for currency in currencies}


def _top_accounts(lines: tuple[RunLine, ...], top_n: int) -> tuple[TopAccount, ...]:
    """Lines are in account order and ``nlargest`` keeps the first of equals: ties go to the
    lower account without a second key."""
    currencies = sorted({line.currency for line in lines})
    top: list[TopAccount] = []
    for currency in currencies:
        own = lines if len(currencies) == 1 else [line for line in lines
                                                 if line.currency == currency]
        top += [TopAccount(currency, line.account, line.amount_minor, line.line_no)
                for line in heapq.nlargest(top_n, own, key=attrgetter("amount_minor"))]
    return tuple(top)


_ENCODER: Final = msgspec.json.Encoder()
"""JSON, not MessagePack: exact ratios of a part may pass 64 bits; JSON keeps any integer."""
DIGEST_CHUNK_LINES: Final = 65_536
"""Lines are encoded into the digest this many at a time, so memory stays small."""


def run_digest(inputs: RunInputs, lines: tuple[RunLine, ...]) -> str:
    """sha256 of the canonical encoding of the inputs and lines: every map as sorted keys
    then their values, every list of inputs sorted, so the order they came in does not
    count; then the lines, in their order."""
    hasher = hashlib.sha256()
    hasher.update(_ENCODER.encode(DIGEST_FORMAT))
    hasher.update(_ENCODER.encode((
        inputs.policy_set,
        inputs.cut_off_seq,
        inputs.cut_off_ts_ns,
        sorted(inputs.minor_units_per_unit.items()),
        sorted(inputs.refused_orders, key=msgspec.structs.astuple),
        sorted(inputs.fees, key=msgspec.structs.astuple),
        sorted(inputs.affected_accounts),
        sorted(inputs.reference_prices.items()),
        sorted(inputs.market_assets.items()),
    )))
    for asset in sorted(inputs.holdings):
        holding = inputs.holdings[asset]
        accounts = sorted(holding)
        hasher.update(_ENCODER.encode((asset, accounts, [holding[a] for a in accounts])))
    for start in range(0, len(lines), DIGEST_CHUNK_LINES):
        hasher.update(_ENCODER.encode(lines[start:start + DIGEST_CHUNK_LINES]))
    return hasher.hexdigest()


# --- the checks --------------------------------------------------------------------------------


def check_inputs(inputs: RunInputs) -> list[Problem]:
    """Every way the inputs do not fit the policies, in both languages; empty when they do."""
    problems: list[Problem] = []

    def fail(where: str, en: str, ja: str) -> None:
        problems.append(Problem(where, en, ja))

    if inputs.cut_off_seq < 0 or inputs.cut_off_ts_ns < 0:
        fail("cut_off", "the cut-off seq and time must not be negative",
             "締め日時のseqと時刻は負にできません")
    for asset, units in sorted(inputs.minor_units_per_unit.items()):
        if units <= 0:
            fail(f"minor_units_per_unit.{asset}", f"{units} minor units per unit must be "
                 "positive", f"1単位あたりの最小単位数 {units} は正の値にしてください")
    needed: set[str] = set()
    for policy in inputs.policy_set.policies:
        needed.add(policy.currency)
        if isinstance(policy, AssetLoss):
            needed.add(policy.asset)
            _check_asset_loss(policy, inputs, fail)
        elif isinstance(policy, RefusedOrders):
            needed |= _check_refused_orders(policy, inputs, fail)
    for asset in sorted(needed - inputs.minor_units_per_unit.keys()):
        fail(f"minor_units_per_unit.{asset}", f"no minor units per unit for {asset}; give "
             "them", f"{asset} の1単位あたりの最小単位数がありません。指定してください")
    for index, fee in enumerate(inputs.fees):
        if fee.fee_minor < 0 or fee.trades < 1:
            fail(f"fees[{index}]", f"account {fee.account} has a fee of {fee.fee_minor} on "
                 f"{fee.trades} trades; fees are not negative, on one trade or more",
                 f"口座 {fee.account} の手数料 {fee.fee_minor}（取引 {fee.trades} 件）が"
                 "正しくありません（手数料は0以上、取引は1件以上）")
    return problems


def _check_asset_loss(policy: AssetLoss, inputs: RunInputs, fail: _Fail) -> None:
    reference = inputs.reference_prices.get(policy.reference)
    if reference is None:
        fail(f"policy {policy.id}", f"no reference price named '{policy.reference}'",
             f"参照価格 '{policy.reference}' がありません")
    elif reference.price <= 0:
        fail(f"policy {policy.id}", f"reference price '{policy.reference}' is not positive",
             f"参照価格 '{policy.reference}' が正の値ではありません")
    holding = inputs.holdings.get(policy.asset)
    if holding is None:
        fail(f"policy {policy.id}", f"no holdings of {policy.asset} at the cut-off were given",
             f"締め時点の {policy.asset} の保有残高が与えられていません")
    elif holding and min(holding.values()) < 0:
        negative = sorted(a for a, q in holding.items() if q < 0)[:5]
        fail(f"holdings.{policy.asset}", f"negative holdings for accounts {negative}",
             f"口座 {negative} の保有残高が負の値です")


def _check_refused_orders(policy: RefusedOrders, inputs: RunInputs, fail: _Fail) -> set[str]:
    """The problems of the orders this policy covers; returns the base assets it needs."""
    bases: set[str] = set()
    for market in policy.markets:
        assets = inputs.market_assets.get(market)
        if assets is None:
            fail(f"policy {policy.id}", f"market {market} has no base and quote given",
                 f"市場 {market} の基軸資産と決済通貨が与えられていません")
        elif assets.quote != policy.currency:
            fail(f"policy {policy.id}", f"market {market} is quoted in {assets.quote}, not "
                 f"{policy.currency}", f"市場 {market} の決済通貨は {policy.currency} ではなく "
                 f"{assets.quote} です")
        else:
            bases.add(assets.base)
    covered = set(policy.markets)
    for index, order in enumerate(inputs.refused_orders):
        if order.market not in covered:
            continue
        if order.qty_minor <= 0 or order.price_at_refusal <= 0 or order.price_at_reopen <= 0:
            fail(f"refused_orders[{index}]", f"account {order.account}: quantity and prices "
                 "must be positive", f"口座 {order.account}: 数量と価格は正の値にしてください")
    return bases
