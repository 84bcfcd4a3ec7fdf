"""Assets and market specifications: the one place decimals become integers.

Inside the venue every price is a whole number of ticks, every quantity a whole number of
lots, and every balance a whole number of the asset's minor units. Conversion happens here,
at the edge, and is strict: an off-grid price or size is refused with a reason, never rounded.
Text is read only in the plain decimal grammar (:data:`DECIMAL_PATTERN`), not in everything
Python's ``Decimal`` would accept (underscores, exponents, other scripts' digits, spaces).
"""

from __future__ import annotations

import functools
import re
from decimal import Context, Decimal, DecimalException, Inexact, InvalidOperation

import msgspec

from haltguard.common.units import NS_PER_S
from haltguard.venue.types import INT64_MAX


class GridError(ValueError):
    """A decimal that is not a whole number of steps, or is out of range."""


ASSET_CODE_PATTERN = r"^[A-Z0-9]+$"
"""An asset code: upper-case ASCII letters and digits, e.g. ``BTC``, ``JPY``."""
ASSET_CODE_LENGTH_MAX = 16
MARKET_SYMBOL_PATTERN = r"^[A-Z0-9]+-[A-Z0-9]+$"
"""A market symbol: two asset codes joined by ``-``, e.g. ``BTC-JPY``."""
MARKET_SYMBOL_LENGTH_MAX = 32


def is_asset_code(text: str) -> bool:
    """Whether ``text`` is a well-formed asset code (listed or not)."""
    return len(text) <= ASSET_CODE_LENGTH_MAX and re.fullmatch(ASSET_CODE_PATTERN, text) is not None


def is_market_symbol(text: str) -> bool:
    """Whether ``text`` is a well-formed market symbol (listed or not)."""
    return (len(text) <= MARKET_SYMBOL_LENGTH_MAX
            and re.fullmatch(MARKET_SYMBOL_PATTERN, text) is not None)


# Any valid unit count fits in 19 digits, so a quotient that would need rounding at 40
# digits is off-grid: trap it instead of rounding someone's order.
_EXACT = Context(prec=40, traps=[Inexact, InvalidOperation])

DECIMAL_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"
"""The one grammar for decimal text (prices, quantities, amounts, grid sizes): ASCII digits
without leading zeros, then optionally a point and more digits. No sign, exponent,
underscore, whitespace, thousands separator or non-ASCII digit."""
DECIMAL_TEXT_LENGTH_MAX = 40  # 19 integer digits and 18 decimals fit, with room to spare
DECIMAL_GRAMMAR = (
    "a plain decimal: ASCII digits with an optional '.' and fraction, e.g. '0.01' or "
    "'15000000' (no sign, exponent, underscore, spaces, separators or leading zeros)"
)
_DECIMAL = re.compile(DECIMAL_PATTERN)


def decimal_text_problem(text: str) -> str | None:
    """Why ``text`` is not in the decimal grammar, or None when it is."""
    if len(text) > DECIMAL_TEXT_LENGTH_MAX:
        return f"is {len(text)} characters, more than the {DECIMAL_TEXT_LENGTH_MAX} allowed"
    if _DECIMAL.fullmatch(text) is None:
        return f"{text!r} is not {DECIMAL_GRAMMAR}"
    return None


def to_units(value: Decimal | str, step: Decimal, what: str) -> int:
    """``value / step`` as an exact positive integer, or :class:`GridError` saying why not.

    Text must be in the decimal grammar (:data:`DECIMAL_PATTERN`).
    """
    if isinstance(value, str):
        problem = decimal_text_problem(value)
        if problem is not None:
            raise GridError(f"{what} {problem}")
    try:
        number = Decimal(value) if isinstance(value, str) else value
        units = _EXACT.divide(number, step)
    except (DecimalException, ValueError):
        raise GridError(f"{what} {value} is not a multiple of {step}") from None
    if not units.is_finite() or units != units.to_integral_value():
        raise GridError(f"{what} {value} is not a multiple of {step}")
    if not 0 < units <= INT64_MAX:
        raise GridError(f"{what} {value} must be positive and at most {INT64_MAX} x {step}")
    return int(units)


@functools.lru_cache(maxsize=1_024)
def _step_of(size_text: str) -> Decimal:
    """A grid's step from its text, made once: every order converts with it."""
    return Decimal(size_text)


@functools.lru_cache(maxsize=16_384)
def _text_to_units(text: str, step_text: str, what: str) -> int:
    """:func:`to_units` of decimal text, remembered (orders repeat prices and sizes; a
    refusal raises and is not remembered)."""
    return to_units(text, _step_of(step_text), what)


@functools.lru_cache(maxsize=16_384)
def from_units(units: int, step: Decimal) -> str:
    """The decimal string for ``units`` steps, with no exponent and no trailing noise
    (remembered: answers render the same prices and sizes over and over)."""
    text = f"{(step * units).normalize():f}"
    return text


class Asset(msgspec.Struct, frozen=True):
    """A currency or token held in the ledger. ``decimals`` fixes its minor unit."""

    code: str
    decimals: int

    @property
    def unit(self) -> Decimal:
        return Decimal(1).scaleb(-self.decimals)

    def to_minor(self, amount: Decimal | str) -> int:
        return to_units(amount, self.unit, f"{self.code} amount")

    def from_minor(self, minor: int) -> str:
        return from_units(minor, self.unit)


class BreakerConfig(msgspec.Struct, frozen=True):
    """A price-band circuit breaker, evaluated inside the engine on every would-be fill.

    ``reference`` is ``"rolling"`` (volume-weighted average price of the trades in the last
    ``window_ns``) or ``"static"`` (the first trade after each reset: daily at
    ``daily_reset_ns_of_day`` in UTC, and after every trigger). ``band_bps`` lists the band
    half-widths in basis points: the first applies until the first trigger, each later one
    after another trigger (the last repeats). A trigger puts the market into an auction for
    ``pause_ns``; ``limit_state_ns`` > 0 first holds the market in a limit state where
    orders outside the band are refused, and only pauses if trading stays pinned at the band.
    """

    band_bps: list[int]
    pause_ns: int
    reference: str = "rolling"
    window_ns: int = 300 * NS_PER_S
    limit_state_ns: int = 0
    daily_reset_ns_of_day: int = -1  # -1: never; e.g. 00:00 UTC = 09:00 JST is 0

    def band_for(self, trigger_count: int) -> int:
        return self.band_bps[min(trigger_count, len(self.band_bps) - 1)]


def coincheck_breaker() -> BreakerConfig:
    """Coincheck's static breaker: +-50%, then +-40%, then +-30% for each later widening.

    The reference is reset daily at 09:00 JST (00:00 UTC) and after each trigger; a trigger
    pauses matching for a 5-minute order-collection auction (itayose) before reopening.
    """
    return BreakerConfig(
        band_bps=[5_000, 4_000, 3_000],
        pause_ns=300 * NS_PER_S,
        reference="static",
        daily_reset_ns_of_day=0,
    )


def luld_breaker(band_bps: int = 500) -> BreakerConfig:
    """A limit-up/limit-down-like breaker: 5-minute rolling reference, 15-second limit state,
    then a 5-minute pause (US equities' LULD with a single band)."""
    return BreakerConfig(
        band_bps=[band_bps],
        pause_ns=300 * NS_PER_S,
        reference="rolling",
        window_ns=300 * NS_PER_S,
        limit_state_ns=15 * NS_PER_S,
    )


class MarketSpec(msgspec.Struct, frozen=True):
    """One market. Prices are in ticks of ``tick_size`` quote per base; sizes in lots.

    ``quote_per_tick_lot`` is how many quote minor units one tick times one lot is worth and
    ``base_per_lot`` how many base minor units one lot is; both must be whole numbers, which
    :func:`make_market` checks, so the ledger never needs a fraction.
    """

    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_qty: int  # lots
    max_qty: int  # lots
    maker_fee_bps: int
    taker_fee_bps: int
    quote_per_tick_lot: int
    base_per_lot: int
    breaker: BreakerConfig | None = None
    reopen_auction_ns: int = 180 * NS_PER_S  # itayose length when reopening by default

    @property
    def tick(self) -> Decimal:
        return _step_of(self.tick_size)

    @property
    def lot(self) -> Decimal:
        return _step_of(self.lot_size)

    def to_ticks(self, price: Decimal | str) -> int:
        if isinstance(price, str):
            return _text_to_units(price, self.tick_size, "price")
        return to_units(price, self.tick, "price")

    def to_lots(self, qty: Decimal | str) -> int:
        if isinstance(qty, str):
            return _text_to_units(qty, self.lot_size, "quantity")
        return to_units(qty, self.lot, "quantity")

    def price_text(self, ticks: int) -> str:
        return from_units(ticks, self.tick)

    def qty_text(self, lots: int) -> str:
        return from_units(lots, self.lot)


def make_market(
    symbol: str,
    base: Asset,
    quote: Asset,
    *,
    tick_size: str,
    lot_size: str,
    min_qty: str,
    max_qty: str,
    maker_fee_bps: int = 0,
    taker_fee_bps: int = 0,
    breaker: BreakerConfig | None = None,
    reopen_auction_ns: int = 180 * NS_PER_S,
) -> MarketSpec:
    """Build a spec from human decimals, refusing grids the ledger cannot represent exactly."""
    tick, lot = Decimal(tick_size), Decimal(lot_size)
    if tick <= 0 or lot <= 0:
        raise GridError(f"{symbol}: tick size and lot size must be positive")
    quote_units = tick * lot / quote.unit
    base_units = lot / base.unit
    if quote_units != quote_units.to_integral_value() or quote_units < 1:
        raise GridError(
            f"{symbol}: tick {tick} x lot {lot} is {tick * lot} {quote.code}, finer than "
            f"{quote.code}'s minor unit {quote.unit}; raise {quote.code}'s decimals or coarsen "
            "the grid"
        )
    if base_units != base_units.to_integral_value() or base_units < 1:
        raise GridError(f"{symbol}: lot {lot} is finer than {base.code}'s minor unit {base.unit}")
    if not 0 <= maker_fee_bps <= 1_000 or not 0 <= taker_fee_bps <= 1_000:
        raise GridError(f"{symbol}: fees must be between 0 and 1000 basis points")
    min_lots, max_lots = to_units(min_qty, lot, "min size"), to_units(max_qty, lot, "max size")
    if min_lots > max_lots:
        raise GridError(f"{symbol}: min size {min_qty} is above max size {max_qty}")
    return MarketSpec(
        symbol=symbol,
        base=base.code,
        quote=quote.code,
        tick_size=str(tick),
        lot_size=str(lot),
        min_qty=min_lots,
        max_qty=max_lots,
        maker_fee_bps=maker_fee_bps,
        taker_fee_bps=taker_fee_bps,
        quote_per_tick_lot=int(quote_units),
        base_per_lot=int(base_units),
        breaker=breaker,
        reopen_auction_ns=reopen_auction_ns,
    )


DEMO_ASSETS = (
    Asset("JPY", 4),
    Asset("BTC", 8),
    Asset("ETH", 8),
    Asset("XRP", 6),
)


def demo_markets() -> list[MarketSpec]:
    """The JPY markets a demo venue lists: BTC/JPY, ETH/JPY and XRP/JPY."""
    jpy, btc, eth, xrp = DEMO_ASSETS
    return [
        make_market(
            "BTC-JPY", btc, jpy, tick_size="1", lot_size="0.0001", min_qty="0.0001",
            max_qty="100", maker_fee_bps=0, taker_fee_bps=10, breaker=coincheck_breaker(),
        ),
        make_market(
            "ETH-JPY", eth, jpy, tick_size="1", lot_size="0.001", min_qty="0.001",
            max_qty="1000", maker_fee_bps=0, taker_fee_bps=10, breaker=coincheck_breaker(),
        ),
        make_market(
            "XRP-JPY", xrp, jpy, tick_size="0.001", lot_size="0.1", min_qty="1",
            max_qty="1000000", maker_fee_bps=0, taker_fee_bps=10, breaker=coincheck_breaker(),
        ),
    ]
