"""The venue's HTTP routes: thin translations between JSON and venue commands.

A route converts decimal strings to the market's integer grid (refusing, never rounding),
submits one command to the runtime, waits until it is durable and applied, and renders the
events. A command the venue refuses is still journaled (it has a ``seq``) and comes back as
an error whose ``code`` is the venue's reject reason.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, Any, NamedTuple, Protocol

import msgspec
from fastapi import APIRouter, Depends, Header, Path, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

from haltguard.common.units import NS_PER_S
from haltguard.gateway.context import venue_context
from haltguard.gateway.models import (
    GRAMMAR_TEXT,
    AddAssetRequest,
    AddMarketRequest,
    AdminCancelAllRequest,
    AssetCode,
    BreakerRequest,
    CancelAllRequest,
    CreditCompensationRequest,
    DepositRequest,
    FreezeAccountWithdrawalsRequest,
    FreezeWithdrawalsRequest,
    KillSwitchRequest,
    MarketSymbol,
    OperatorRequest,
    PlaceOrderRequest,
    ResumePlanRequest,
    SetMarketStateRequest,
    Units,
    WithdrawRequest,
)
from haltguard.gateway.runtime import (
    ACK_TIMEOUT_S_DEFAULT,
    FAULT_KINDS,
    CommandResult,
    FaultInjectionNotAllowedError,
    VenueRuntime,
)
from haltguard.venue.commands import (
    AbortResumePlan,
    AddAsset,
    AddMarket,
    AdjustTrade,
    BustTrade,
    CancelAll,
    CancelOrder,
    Command,
    CompensationLine,
    ConfigureBreaker,
    CreditCompensation,
    Deposit,
    FreezeAccountWithdrawals,
    FreezeWithdrawals,
    KillSwitch,
    PlaceOrder,
    ResumePhase,
    RollbackTo,
    SetMarketState,
    StartResumePlan,
    Uncross,
    Withdraw,
)
from haltguard.venue.control import CREDITED, credit_outcomes
from haltguard.venue.corrections import TradeCorrections
from haltguard.venue.events import (
    CommandRejected,
    Event,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderRepeated,
    Trade,
)
from haltguard.venue.markets import (
    Asset,
    BreakerConfig,
    GridError,
    MarketSpec,
    coincheck_breaker,
    luld_breaker,
    make_market,
)
from haltguard.venue.types import (
    INT64_MAX,
    MarketState,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from haltguard.web.errors import ApiError

DEPTH_LEVELS_MAX = 500
ORDERS_LISTED_MAX = 1_000
TRADES_LISTED_MAX = 1_000

_PLAIN_DIGITS = re.compile(r"0|[1-9][0-9]*")


def _plain_digits(value: object) -> object:
    """A path or query integer is written in plain ASCII digits: no sign, spaces, '_',
    leading zeros, fraction, exponent or other scripts' digits (which ``int()`` accepts)."""
    if isinstance(value, str) and _PLAIN_DIGITS.fullmatch(value) is None:
        raise ValueError(f"{value[:40]!r} is not a whole number in plain digits, e.g. 42")
    return value


WholeNumber = Annotated[int, BeforeValidator(_plain_digits)]
"""An integer read from a URL (path or query), in plain digits; bounds come with it."""
SymbolPath = Annotated[MarketSymbol, Path(description="The market, e.g. BTC-JPY.")]
OrderIdPath = Annotated[
    WholeNumber, Path(gt=0, le=INT64_MAX, description="The venue's order id (its seq).")
]
OwnerQuery = Annotated[
    WholeNumber, Query(gt=0, le=INT64_MAX, description="The order's owner (account number).")
]


_R = RejectReason
# How each venue refusal maps to HTTP, and the next step we suggest to the caller.
_REJECT_HTTP: dict[RejectReason, tuple[int, str]] = {
    _R.UNKNOWN_MARKET: (404, "GET /v1/markets lists the markets"),
    _R.UNKNOWN_ASSET: (404, "GET /v1/assets lists the assets"),
    _R.UNKNOWN_ORDER: (404, "GET /v1/accounts/{account}/orders lists the open orders"),
    _R.NOT_ORDER_OWNER: (403, "only the owning account can cancel an order"),
    _R.INVALID_QUANTITY: (422, "send a positive multiple of the lot size"),
    _R.INVALID_PRICE: (422, "send a positive multiple of the tick size"),
    _R.INVALID_AMOUNT: (422, "send a positive amount in the asset's precision"),
    _R.BELOW_MIN_SIZE: (422, "GET /v1/markets/{market} shows min_qty and max_qty"),
    _R.ABOVE_MAX_SIZE: (422, "GET /v1/markets/{market} shows min_qty and max_qty"),
    _R.INVALID_TIME_IN_FORCE: (422, "use gtc, ioc or fok (market orders: ioc)"),
    _R.INVALID_ACCOUNT: (422, "use the customer's positive account number"),
    _R.INVALID_COMMAND: (422, "fix the request and send it again"),
    _R.POST_ONLY_WOULD_CROSS: (409, "price the post-only order away from the other side"),
    _R.FOK_NOT_FILLABLE: (409, "nothing was placed; use a smaller size or an IOC order"),
    _R.INSUFFICIENT_FUNDS: (409, "GET /v1/accounts/{account}/balances shows what is available"),
    _R.UNKNOWN_ACCOUNT: (404, "GET /v1/accounts/{account}/balances shows what it holds"),
    _R.CLIENT_ORDER_ID_REUSED: (409, "GET /v1/accounts/{account}/orders lists the open orders"),
    _R.MARKET_HALTED: (409, "wait for the market to reopen; GET /v1/markets/{market} shows it"),
    _R.MARKET_CANCEL_ONLY: (409, "only cancels are taken now; GET /v1/markets/{market}"),
    _R.MARKET_POST_ONLY: (409, "only post-only limit orders are taken now"),
    _R.MARKET_LIMIT_ONLY: (409, "only limit orders are taken now"),
    _R.MARKET_CLOSED: (409, "the market is not trading; GET /v1/markets/{market} shows it"),
    _R.CANCELS_REFUSED: (409, "the market refuses even cancels during this halt; retry later"),
    _R.KILL_SWITCH_ENGAGED: (409, "an operator must release the kill switch first"),
    _R.WITHDRAWALS_FROZEN: (409, "withdrawals of this asset are frozen by an operator"),
    _R.ILLEGAL_TRANSITION: (409, "choose one of the allowed states named above"),
    _R.ALREADY_EXISTS: (409, "it is already there; nothing to do"),
    _R.NO_AUCTION: (409, "the market is not in an auction"),
    _R.UNKNOWN_TRADE: (404, "look the trade up with `haltguard trades review`"),
    _R.ALREADY_BUSTED: (409, "the trade is busted already; nothing to do"),
    _R.FOUR_EYES_REQUIRED: (403, "a second operator must approve the correction"),
    _R.STALE_PLAN: (409, "plan the rollback again (halt the markets first)"),
}


# --- plumbing ------------------------------------------------------------------------


def get_runtime(request: Request) -> VenueRuntime:
    return venue_context(request).runtime


RuntimeDep = Annotated[VenueRuntime, Depends(get_runtime)]


def require_admin(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Admin routes need ``Authorization: Bearer <token>``; compared in constant time."""
    token = venue_context(request).admin_token
    if not token:
        raise ApiError(
            403, "admin_disabled",
            "admin endpoints are disabled on this venue; restart it with an admin token "
            "(HALTGUARD_VENUE_TOKEN) to use them",
        )
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(
            401, "unauthorized",
            "admin endpoints need the header 'Authorization: Bearer <admin token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(presented.encode(), token.encode()):
        raise ApiError(
            403, "forbidden",
            "the admin token is not valid; use the token the venue was started with",
        )


async def execute(runtime: VenueRuntime, command: Command) -> CommandResult:
    """Submit and wait for the durable result without blocking the event loop (the runtime
    resolves a batch's results on this loop with one wake-up)."""
    future = runtime.submit_async(command)
    try:
        return await asyncio.wait_for(future, ACK_TIMEOUT_S_DEFAULT)
    except TimeoutError:
        raise ack_timeout() from None


def ack_timeout() -> ApiError:
    """The answer to a command queued but not acknowledged within the wait."""
    return ApiError(
        504, "ack_timeout",
        f"the command was queued but not acknowledged within {ACK_TIMEOUT_S_DEFAULT:g} s; "
        "it may still be applied. Check the account's orders before retrying (a retry "
        "with the same client_order_id is safe)",
    )


def raise_if_rejected(result: CommandResult, market: str = "") -> None:
    """Turn the venue's own refusal into an error response naming its reason."""
    for event in result.events:
        if type(event) is OrderRejected or type(event) is CommandRejected:
            status_code, hint = _REJECT_HTTP.get(event.reason, (409, "see the message"))
            hint = hint.replace("{market}", market or "{market}")
            detail = event.detail.rstrip(".")
            raise ApiError(
                status_code, event.reason.value, f"{detail}. {hint[0].upper()}{hint[1:]}.",
                seq=result.seq,
            )


def ack(result: CommandResult, units: Units) -> dict[str, Any]:
    return {"seq": result.seq, "ts": result.ts, "events": units.render_events(result.events)}


def unknown_market(symbol: str) -> ApiError:
    return ApiError(404, "unknown_market", f"no market {symbol!r}; GET /v1/markets lists them")


def spec_of(units: Units, symbol: str) -> MarketSpec:
    spec = units.markets.get(symbol)
    if spec is None:
        raise unknown_market(symbol)
    return spec


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


def render_spec(spec: MarketSpec) -> dict[str, Any]:
    breaker = spec.breaker
    return {
        "symbol": spec.symbol,
        "base": spec.base,
        "quote": spec.quote,
        "tick_size": spec.price_text(1),
        "lot_size": spec.qty_text(1),
        "min_qty": spec.qty_text(spec.min_qty),
        "max_qty": spec.qty_text(spec.max_qty),
        "maker_fee_bps": spec.maker_fee_bps,
        "taker_fee_bps": spec.taker_fee_bps,
        "reopen_auction_seconds": spec.reopen_auction_ns / NS_PER_S,
        "breaker": None if breaker is None else {
            "reference": breaker.reference,
            "band_bps": list(breaker.band_bps),
            "pause_seconds": breaker.pause_ns / NS_PER_S,
            "window_seconds": breaker.window_ns / NS_PER_S,
            "limit_state_seconds": breaker.limit_state_ns / NS_PER_S,
        },
    }


# --- orders --------------------------------------------------------------------------


Submit = Callable[[Command], Awaitable[CommandResult]]
"""How a route hands a command to the venue and waits for its durable result."""


class OrderTerms(Protocol):
    """A new order's terms as a request states them: the route's ``PlaceOrderRequest`` and
    the fast lane's ``OrderBody`` both have these."""

    @property
    def account(self) -> int: ...
    @property
    def side(self) -> Side: ...
    @property
    def qty(self) -> str: ...
    @property
    def price(self) -> str | None: ...
    @property
    def type(self) -> OrderType: ...
    @property
    def tif(self) -> TimeInForce: ...
    @property
    def post_only(self) -> bool: ...
    @property
    def stp(self) -> SelfTradePrevention: ...
    @property
    def client_order_id(self) -> str: ...


def order_command(symbol: str, body: OrderTerms, spec: MarketSpec) -> PlaceOrder:
    """The venue command for ``body``, or a 422 naming the off-grid field (nothing rounded)."""
    try:
        qty = spec.to_lots(body.qty)
    except GridError as exc:
        raise ApiError(
            422, "invalid_quantity",
            f"{exc}; send a multiple of the lot size {spec.qty_text(1)} (nothing is rounded)",
        ) from None
    price = 0
    if body.type is OrderType.LIMIT:
        if body.price is None:
            raise ApiError(422, "invalid_price", "a limit order needs a price; add 'price'")
        try:
            price = spec.to_ticks(body.price)
        except GridError as exc:
            raise ApiError(
                422, "invalid_price",
                f"{exc}; send a multiple of the tick size {spec.price_text(1)} "
                "(nothing is rounded)",
            ) from None
    elif body.price is not None:
        raise ApiError(422, "invalid_price", "a market order takes no price; remove 'price'")
    return PlaceOrder(
        market=symbol, account=body.account, side=body.side, qty=qty, price=price,
        order_type=body.type, tif=body.tif, post_only=body.post_only, stp=body.stp,
        client_order_id=body.client_order_id,
    )


def order_outcome(command: PlaceOrder, events: list[Event], spec: MarketSpec) -> dict[str, Any]:
    """What happened to the order this command placed, from its own events."""
    accepted = next((e for e in events if type(e) is OrderAccepted), None)
    if accepted is None:
        raise ApiError(
            500, "internal_error",
            "the venue reported no acceptance for an order it did not reject; this is a bug, "
            "please report it with the seq",
        )
    order_id = accepted.order_id
    filled = sum(
        e.qty for e in events
        if type(e) is Trade and order_id in (e.taker_order_id, e.maker_order_id)
    )
    cancelled = next(
        (e for e in events if type(e) is OrderCancelled and e.order_id == order_id), None
    )
    if cancelled is not None:
        state, open_qty = "cancelled", 0
    elif filled >= accepted.qty:
        state, open_qty = "filled", 0
    else:
        state, open_qty = "resting", accepted.qty - filled
    return {
        "market": command.market,
        "order_id": order_id,
        "client_order_id": command.client_order_id,
        "account": command.account,
        "side": command.side.value,
        "type": command.order_type.value,
        "tif": command.tif.value,
        "post_only": command.post_only,
        "price": spec.price_text(accepted.price) if accepted.price else None,
        "qty": spec.qty_text(accepted.qty),
        "filled_qty": spec.qty_text(filled),
        "open_qty": spec.qty_text(open_qty),
        "status": state,
        "cancel_reason": None if cancelled is None else cancelled.reason.value,
    }


def render_open_order(view: Any, spec: MarketSpec) -> dict[str, Any]:
    return {
        "market": view.market,
        "order_id": view.order_id,
        "client_order_id": view.client_order_id,
        "account": view.account,
        "side": view.side.value,
        "price": spec.price_text(view.price),
        "qty": spec.qty_text(view.qty),
        "open_qty": spec.qty_text(view.remaining),
        "filled_qty": spec.qty_text(view.qty - view.remaining),
        "status": "resting",
    }


public_router = APIRouter(prefix="/v1", tags=["venue"])

PLACE_ORDER_TEXT = (
    "Place a limit or market order. Answers once the order is durable and matched: `status` "
    "is `resting`, `filled` or `cancelled` (`filled_qty` says how much traded first). A "
    "retried `client_order_id` with the same terms places nothing and answers 200 with the "
    "original outcome and `repeated: true`; the same id with other terms (another market "
    "included) is a 409 `client_order_id_reused`. An account holding nothing at the venue is "
    f"a 404 `unknown_account`. {GRAMMAR_TEXT}"
)


@public_router.post(
    "/markets/{symbol}/orders",
    status_code=status.HTTP_201_CREATED,
    summary="Place an order",
    description=PLACE_ORDER_TEXT,
    responses={
        200: {"description": "A retry of a client_order_id already used, with the same terms"},
        404: {"description": "unknown_market, or unknown_account (it holds nothing)"},
        409: {"description": "Refused by the venue: client_order_id_reused, "
              "insufficient_funds, a market state, ..."},
        422: {"description": "Outside the request grammar, or off the market's grid"},
    },
)
async def place_order(
    symbol: SymbolPath, body: PlaceOrderRequest, runtime: RuntimeDep, request: Request
) -> Any:
    """Place an order (see :data:`PLACE_ORDER_TEXT`, the route's OpenAPI description)."""
    status_code, answer = await placed_order(runtime, symbol, body)
    return answer if status_code == status.HTTP_201_CREATED else JSONResponse(answer, 200)


async def placed_order(
    runtime: VenueRuntime, symbol: str, body: OrderTerms, submit: Submit | None = None
) -> tuple[int, dict[str, Any]]:
    """Place ``body`` in ``symbol`` and return the answer's status and body: 201 with the
    outcome, or 200 for a retried ``client_order_id``. The route and the fast order lane
    (``gateway/fastlane.py``) both answer with this, so their answers cannot differ; the
    lane brings its own ``submit`` (many orders to the venue at once), the route uses
    :func:`execute`."""
    prepared = order_to_place(runtime, symbol, body)
    command = prepared.command
    result = await (execute(runtime, command) if submit is None else submit(command))
    return placed_answer(runtime, prepared, result)


class PreparedOrder(NamedTuple):
    """An order checked against its market, ready for the venue, with what its answer needs."""

    symbol: str
    command: PlaceOrder
    spec: MarketSpec
    units: Units


def order_to_place(runtime: VenueRuntime, symbol: str, body: OrderTerms) -> PreparedOrder:
    """The first half of :func:`placed_order` (for callers that submit without a coroutine):
    the command, or the :class:`HaltguardError` an unknown market or an off-grid value is."""
    units = runtime.units()
    spec = spec_of(units, symbol)
    return PreparedOrder(symbol, order_command(symbol, body, spec), spec, units)


def placed_answer(runtime: VenueRuntime, prepared: PreparedOrder,
                  result: CommandResult) -> tuple[int, dict[str, Any]]:
    """The second half of :func:`placed_order`: the answer to the venue's ``result``, or the
    :class:`HaltguardError` a refusal is."""
    symbol, command, spec, units = prepared
    raise_if_rejected(result, symbol)
    repeated = next((e for e in result.events if type(e) is OrderRepeated), None)
    if repeated is None:
        trades = [units.render_event(e) for e in result.events if type(e) is Trade]
        return status.HTTP_201_CREATED, {
            **ack(result, units), "repeated": False,
            "order": order_outcome(command, result.events, spec), "trades": trades,
        }
    return status.HTTP_200_OK, repeated_order(runtime, result, repeated, spec, units)


def repeated_order(
    runtime: VenueRuntime,
    result: CommandResult,
    repeated: OrderRepeated,
    spec: MarketSpec,
    units: Units,
) -> dict[str, Any]:
    """A retry's answer: the first submit's outcome if remembered, else the order as it is."""
    body: dict[str, Any] = {**ack(result, units), "repeated": True}
    original = result.original
    if original is not None and type(original.command) is PlaceOrder:
        body["original_seq"] = original.seq
        body["order"] = order_outcome(original.command, original.events, spec)
        body["trades"] = [units.render_event(e) for e in original.events if type(e) is Trade]
    else:
        view = runtime.read(lambda venue: venue.order(repeated.market, repeated.order_id))
        body["order"] = (
            render_open_order(view, spec) if view is not None else {
                "market": repeated.market, "order_id": repeated.order_id,
                "client_order_id": repeated.client_order_id, "account": repeated.account,
                "status": "done",
                "detail": "the order is no longer open (filled or cancelled); the journal "
                "holds its history",
            }
        )
    return body


@public_router.delete("/markets/{symbol}/orders/{order_id}", summary="Cancel an order")
async def cancel_order(
    symbol: SymbolPath,
    order_id: OrderIdPath,
    account: OwnerQuery,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Cancel one open order by the venue's order id (allowed while halted unless the halt
    refuses cancels)."""
    return await _cancel(runtime, CancelOrder(symbol, account, order_id=order_id))


@public_router.delete(
    "/markets/{symbol}/orders/by-client-id/{client_order_id}",
    summary="Cancel an order by client order id",
)
async def cancel_order_by_client_id(
    symbol: SymbolPath,
    client_order_id: Annotated[str, Path(min_length=1, max_length=64)],
    account: OwnerQuery,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    return await _cancel(runtime, CancelOrder(symbol, account, client_order_id=client_order_id))


async def _cancel(runtime: VenueRuntime, command: CancelOrder) -> dict[str, Any]:
    units = runtime.units()
    spec_of(units, command.market)
    result = await execute(runtime, command)
    raise_if_rejected(result, command.market)
    return ack(result, units)


@public_router.post("/markets/{symbol}/cancel-all", summary="Cancel all of an account's orders")
async def cancel_all_in_market(
    symbol: SymbolPath, body: CancelAllRequest, runtime: RuntimeDep
) -> dict[str, Any]:
    units = runtime.units()
    spec_of(units, symbol)
    command = CancelAll(account=body.account, market=symbol, actor=f"account:{body.account}",
                        reason="customer cancel-all")
    result = await execute(runtime, command)
    raise_if_rejected(result, symbol)
    return {**ack(result, units),
            "cancelled": sum(1 for e in result.events if type(e) is OrderCancelled)}


# --- reads ---------------------------------------------------------------------------


@public_router.get("/markets", summary="List markets and their states")
def list_markets(runtime: RuntimeDep) -> dict[str, Any]:
    def read(venue: Any) -> dict[str, Any]:
        return {
            "seq": venue.last_seq,
            "kill_switch": venue.kill_switch_engaged,
            "markets": [
                {**render_spec(spec), "state": venue.market_state(symbol).state.value}
                for symbol, spec in venue.markets.items()
            ],
        }

    return runtime.read(read)


@public_router.get("/assets", summary="List assets and withdrawal freezes")
def list_assets(runtime: RuntimeDep) -> dict[str, Any]:
    def read(venue: Any) -> dict[str, Any]:
        frozen = venue.frozen_assets
        return {"assets": [
            {"code": a.code, "decimals": a.decimals, "withdrawals_frozen": a.code in frozen}
            for a in venue.assets.values()
        ]}

    return runtime.read(read)


@public_router.get("/markets/{symbol}", summary="A market's spec and state")
def get_market(symbol: SymbolPath, runtime: RuntimeDep) -> dict[str, Any]:
    def read(venue: Any) -> dict[str, Any]:
        spec = venue.markets.get(symbol)
        if spec is None:
            raise unknown_market(symbol)
        market_status = venue.market_state(symbol)
        top = venue.depth(symbol, 1)
        return {
            **render_spec(spec),
            "seq": venue.last_seq,
            "state": market_status.state.value,
            "cancels_allowed": market_status.cancels_allowed,
            "until_ts": market_status.until_ts,
            "resume_phase": market_status.resume_phase,
            "kill_switch": market_status.kill_switch,
            "best_bid": spec.price_text(top.bids[0].price) if top.bids else None,
            "best_ask": spec.price_text(top.asks[0].price) if top.asks else None,
        }

    return runtime.read(read)


@public_router.get("/markets/{symbol}/depth", summary="Aggregated order book depth")
def get_depth(
    symbol: SymbolPath,
    runtime: RuntimeDep,
    levels: Annotated[WholeNumber, Query(ge=1, le=DEPTH_LEVELS_MAX)] = 20,
) -> dict[str, Any]:
    """Best first on each side; each level is ``[price, qty, orders]``."""
    def read(venue: Any) -> dict[str, Any]:
        spec = venue.markets.get(symbol)
        if spec is None:
            raise unknown_market(symbol)
        depth = venue.depth(symbol, levels)
        return {
            "market": symbol,
            "seq": venue.last_seq,
            "bids": [[spec.price_text(lv.price), spec.qty_text(lv.qty), lv.orders]
                     for lv in depth.bids],
            "asks": [[spec.price_text(lv.price), spec.qty_text(lv.qty), lv.orders]
                     for lv in depth.asks],
        }

    return runtime.read(read)


@public_router.get("/markets/{symbol}/trades", summary="Recent trades, newest first")
def get_trades(
    symbol: SymbolPath,
    runtime: RuntimeDep,
    limit: Annotated[WholeNumber, Query(ge=1, le=TRADES_LISTED_MAX)] = 100,
) -> dict[str, Any]:
    """The latest trades since this venue process started (a bounded window per market);
    a busted or re-priced trade says so (``correction``, ``corrected_price``)."""
    spec = spec_of(runtime.units(), symbol)
    records = runtime.recent_trades(symbol, limit)
    corrected = runtime.read(lambda venue: _corrections_of(records, venue.corrections, spec))
    return {
        "market": symbol,
        "trades": [
            {
                "seq": record.seq,
                "ts": record.ts,
                "trade_id": record.trade.trade_id,
                "price": spec.price_text(record.trade.price),
                "qty": spec.qty_text(record.trade.qty),
                "taker_side": record.trade.taker_side.value,
                **corrected.get(record.trade.trade_id, {}),
            }
            for record in records
        ],
    }


def _corrections_of(
    records: list[Any], corrections: TradeCorrections, spec: MarketSpec
) -> dict[int, dict[str, str]]:
    """How each listed trade stands after corrections, read on the venue's thread:
    ``busted``, or ``adjusted`` with the price it settles at now (a trade that stands as
    printed is left out)."""
    found: dict[int, dict[str, str]] = {}
    for record in records:
        trade_id = record.trade.trade_id
        if corrections.is_busted(trade_id):
            found[trade_id] = {"correction": "busted"}
        elif (adjusted := corrections.adjusted.get(trade_id)) is not None:
            found[trade_id] = {"correction": "adjusted",
                               "corrected_price": spec.price_text(adjusted.price)}
    return found


@public_router.get("/markets/{symbol}/auction", summary="Indicative auction uncross")
def get_auction(symbol: SymbolPath, runtime: RuntimeDep) -> dict[str, Any]:
    """Where the book would uncross now: the single price with the most volume (``price``
    null when nothing crosses). Meaningful while the market is in ``auction``."""
    def read(venue: Any) -> dict[str, Any]:
        spec = venue.markets.get(symbol)
        if spec is None:
            raise unknown_market(symbol)
        result = venue.indicative_uncross(symbol)
        market_status = venue.market_state(symbol)
        return {
            "market": symbol,
            "seq": venue.last_seq,
            "state": market_status.state.value,
            "in_auction": market_status.state is MarketState.AUCTION,
            "until_ts": market_status.until_ts,
            "price": spec.price_text(result.price) if result.price else None,
            "volume": spec.qty_text(result.volume),
            "imbalance": spec.qty_text(result.imbalance),
        }

    return runtime.read(read)


@public_router.get("/markets/{symbol}/orders/{order_id}", summary="One open order")
def get_order(
    symbol: SymbolPath, order_id: OrderIdPath, runtime: RuntimeDep,
    account: Annotated[WholeNumber | None, Query(
        gt=0, le=INT64_MAX,
        description="Only if it is this account's order (the customer gateway sets it to "
                    "the key's account: another's order is answered as not open)")] = None,
) -> dict[str, Any]:
    def read(venue: Any) -> dict[str, Any]:
        spec = venue.markets.get(symbol)
        if spec is None:
            raise unknown_market(symbol)
        view = venue.order(symbol, order_id)
        if view is None or (account is not None and view.account != account):
            raise ApiError(
                404, "unknown_order",
                f"order {order_id} is not open in {symbol}: it was filled or cancelled, or "
                "never existed; the journal holds every order's history",
            )
        return render_open_order(view, spec)

    return runtime.read(read)


@public_router.get("/accounts/{account}/orders", summary="An account's open orders")
def list_orders(
    account: Annotated[WholeNumber, Path(gt=0, le=INT64_MAX)],
    runtime: RuntimeDep,
    market: Annotated[MarketSymbol | None, Query()] = None,
) -> dict[str, Any]:
    def read(venue: Any) -> dict[str, Any]:
        if market is not None and market not in venue.markets:
            raise unknown_market(market)
        views = venue.open_orders(account, market)
        specs = venue.markets
        return {
            "account": account,
            "seq": venue.last_seq,
            "truncated": len(views) > ORDERS_LISTED_MAX,
            "orders": [render_open_order(v, specs[v.market]) for v in views[:ORDERS_LISTED_MAX]],
        }

    return runtime.read(read)


@public_router.get("/accounts/{account}/balances", summary="An account's balances")
def get_balances(
    account: Annotated[WholeNumber, Path(ge=0, le=INT64_MAX)], runtime: RuntimeDep
) -> dict[str, Any]:
    """Per asset: ``available`` to trade or withdraw and ``held`` by open orders."""
    def read(venue: Any) -> dict[str, Any]:
        assets: dict[str, Asset] = venue.assets
        return {
            "account": account,
            "seq": venue.last_seq,
            "balances": {
                code: {
                    "available": assets[code].from_minor(available),
                    "held": assets[code].from_minor(held),
                }
                for code, (available, held) in sorted(venue.balances(account).items())
            },
        }

    return runtime.read(read)


@public_router.get("/health", summary="Is the venue taking commands?", tags=["operations"])
def health(runtime: RuntimeDep) -> Any:
    state = runtime.status()
    if state.failure or not state.running:
        return JSONResponse(
            {"error": {"code": "venue_unavailable",
                       "message": state.failure or "the venue is not running"}},
            status_code=503,
        )
    return {"status": "ok", "last_seq": state.last_seq, "queue_depth": state.queue_depth}


# --- admin ---------------------------------------------------------------------------


admin_router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)]
)


async def admin_execute(runtime: VenueRuntime, command: Command, market: str = "") -> Any:
    result = await execute(runtime, command)
    raise_if_rejected(result, market)
    return ack(result, runtime.units())


@admin_router.get("/status", summary="Runtime counters and recovery report")
def admin_status(runtime: RuntimeDep) -> dict[str, Any]:
    return asdict(runtime.status())


@admin_router.get("/quarantine", summary="Commands the engine raised on, set aside")
def list_quarantine(runtime: RuntimeDep) -> dict[str, Any]:
    """Each quarantined command (seq, ts, command, market, client order id, the error) and
    the halt the venue engaged for it. Every replay skips them."""
    return {"quarantined": runtime.quarantined()}


class FaultRequest(BaseModel):
    """A fault to arm for a drill (venues started with fault injection allowed only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: StrictStr = Field(
        max_length=64, description=f"One of: {', '.join(sorted(FAULT_KINDS))}."
    )
    client_order_id_prefix: StrictStr = Field(
        min_length=1, max_length=64,
        description="Orders whose client_order_id starts with this make the engine raise.",
    )


@admin_router.post("/faults", summary="Arm a fault for a drill")
def arm_fault(body: FaultRequest, runtime: RuntimeDep) -> dict[str, Any]:
    try:
        fault = runtime.arm_fault(body.kind, body.client_order_id_prefix)
    except FaultInjectionNotAllowedError as exc:
        raise ApiError(403, "fault_injection_not_allowed", str(exc)) from None
    except ValueError as exc:
        raise ApiError(422, "invalid_fault", f"{exc}; nothing was armed") from None
    return {"armed": asdict(fault), "description": fault.describe()}


@admin_router.delete("/faults", summary="Disarm the armed fault")
def disarm_fault(runtime: RuntimeDep) -> dict[str, Any]:
    fault = runtime.disarm_fault()
    return {"disarmed": asdict(fault) if fault is not None else None}


@admin_router.post("/assets", status_code=201, summary="List an asset")
async def add_asset(body: AddAssetRequest, runtime: RuntimeDep) -> Any:
    return await admin_execute(runtime, AddAsset(Asset(body.code, body.decimals)))


@admin_router.post("/markets", status_code=201, summary="List a market")
async def add_market(body: AddMarketRequest, runtime: RuntimeDep) -> Any:
    assets = runtime.read(lambda venue: venue.assets)
    base, quote = assets.get(body.base), assets.get(body.quote)
    if base is None or quote is None:
        missing = body.base if base is None else body.quote
        raise ApiError(404, "unknown_asset", f"asset {missing!r} is not listed; add it first")
    breaker = {"none": None, "coincheck": coincheck_breaker(), "luld": luld_breaker()}
    try:
        spec = make_market(
            body.symbol, base, quote, tick_size=body.tick_size, lot_size=body.lot_size,
            min_qty=body.min_qty, max_qty=body.max_qty, maker_fee_bps=body.maker_fee_bps,
            taker_fee_bps=body.taker_fee_bps, breaker=breaker[body.breaker],
        )
    except (GridError, ArithmeticError, ValueError) as exc:
        raise ApiError(422, "invalid_market", f"{exc}; fix the grid and send it again") from None
    return await admin_execute(runtime, AddMarket(spec, body.state), body.symbol)


def _minor(runtime: VenueRuntime, asset_code: str, amount: str) -> int:
    asset = runtime.read(lambda venue: venue.assets.get(asset_code))
    if asset is None:
        raise ApiError(404, "unknown_asset", f"asset {asset_code!r} is not listed")
    try:
        return int(asset.to_minor(amount))
    except GridError as exc:
        raise ApiError(
            422, "invalid_amount",
            f"{exc}; {asset.code} has {asset.decimals} decimals (nothing is rounded)",
        ) from None


@admin_router.post("/deposits", summary="Credit a deposit")
async def deposit(body: DepositRequest, runtime: RuntimeDep) -> Any:
    amount = _minor(runtime, body.asset, body.amount)
    return await admin_execute(
        runtime, Deposit(body.account, body.asset, amount, body.reference)
    )


@admin_router.post("/withdrawals", summary="Debit a withdrawal")
async def withdraw(body: WithdrawRequest, runtime: RuntimeDep) -> Any:
    amount = _minor(runtime, body.asset, body.amount)
    return await admin_execute(
        runtime, Withdraw(body.account, body.asset, amount, body.destination, body.reference)
    )


@admin_router.post("/markets/{symbol}/state", summary="Change a market's state")
async def set_market_state(
    symbol: SymbolPath, body: SetMarketStateRequest, runtime: RuntimeDep
) -> Any:
    command = SetMarketState(
        symbol, body.state, body.actor, body.reason, body.incident_id,
        cancels_allowed=body.cancels_allowed, auction_ns=seconds_to_ns(body.auction_seconds),
    )
    return await admin_execute(runtime, command, symbol)


@admin_router.post("/kill-switch", summary="Halt every market, or release the switch")
async def kill_switch(body: KillSwitchRequest, runtime: RuntimeDep) -> Any:
    """Releasing reopens nothing: each market stays halted until a person resumes it."""
    command = KillSwitch(body.engaged, body.actor, body.reason, body.incident_id)
    return await admin_execute(runtime, command)


@admin_router.post("/assets/{asset}/withdrawals-frozen", summary="Freeze or unfreeze withdrawals")
async def freeze_withdrawals(
    asset: Annotated[AssetCode, Path(description="The asset, e.g. BTC.")],
    body: FreezeWithdrawalsRequest,
    runtime: RuntimeDep,
) -> Any:
    command = FreezeWithdrawals(asset, body.frozen, body.actor, body.reason, body.incident_id)
    return await admin_execute(runtime, command)


@admin_router.post("/accounts/{account}/withdrawals-frozen",
                   summary="Freeze or unfreeze one account's withdrawals")
async def freeze_account_withdrawals(
    account: Annotated[WholeNumber, Path(gt=0, le=INT64_MAX, description="The customer account.")],
    body: FreezeAccountWithdrawalsRequest,
    runtime: RuntimeDep,
) -> Any:
    command = FreezeAccountWithdrawals(account, body.frozen, body.actor, body.reason,
                                       body.incident_id)
    return await admin_execute(runtime, command)


@admin_router.post("/markets/{symbol}/resume-plan", summary="Reopen a market through phases")
async def start_resume_plan(
    symbol: SymbolPath, body: ResumePlanRequest, runtime: RuntimeDep
) -> Any:
    phases = [ResumePhase(p.state, seconds_to_ns(p.min_seconds)) for p in body.phases]
    command = StartResumePlan(symbol, phases, body.actor, body.reason, body.incident_id)
    return await admin_execute(runtime, command, symbol)


@admin_router.post("/markets/{symbol}/resume-plan/abort", summary="Stop a running resume plan")
async def abort_resume_plan(symbol: SymbolPath, body: OperatorRequest, runtime: RuntimeDep) -> Any:
    command = AbortResumePlan(symbol, body.actor, body.reason, body.incident_id)
    return await admin_execute(runtime, command, symbol)


@admin_router.post("/markets/{symbol}/uncross", summary="End an auction now")
async def uncross(symbol: SymbolPath, body: OperatorRequest, runtime: RuntimeDep) -> Any:
    command = Uncross(symbol, body.actor, body.reason, body.incident_id)
    return await admin_execute(runtime, command, symbol)


@admin_router.put("/markets/{symbol}/breaker", summary="Replace a market's circuit breaker")
async def configure_breaker(symbol: SymbolPath, body: BreakerRequest, runtime: RuntimeDep) -> Any:
    breaker: BreakerConfig | None
    if body.preset == "none":
        breaker = None
    elif body.preset == "coincheck":
        breaker = coincheck_breaker()
    elif body.preset == "luld":
        breaker = luld_breaker(body.band_bps[0]) if body.band_bps else luld_breaker()
    else:
        if not body.band_bps:
            raise ApiError(422, "invalid_breaker", "a custom breaker needs band_bps, e.g. [500]")
        breaker = BreakerConfig(
            band_bps=list(body.band_bps),
            pause_ns=seconds_to_ns(body.pause_seconds),
            reference=body.reference,
            window_ns=seconds_to_ns(body.window_seconds),
            limit_state_ns=seconds_to_ns(body.limit_state_seconds),
        )
    command = ConfigureBreaker(symbol, breaker, body.actor, body.reason)
    return await admin_execute(runtime, command, symbol)


@admin_router.post("/cancel-all", summary="Cancel orders by market and/or account")
async def admin_cancel_all(body: AdminCancelAllRequest, runtime: RuntimeDep) -> Any:
    command = CancelAll(body.account, body.market, body.actor, body.reason, body.incident_id)
    result = await execute(runtime, command)
    raise_if_rejected(result, body.market)
    units = runtime.units()
    return {**ack(result, units),
            "cancelled": sum(1 for e in result.events if type(e) is OrderCancelled)}


@admin_router.post("/compensation/credits", summary="Credit compensation lines, each once")
async def credit_compensation(body: CreditCompensationRequest, runtime: RuntimeDep) -> Any:
    """Credit a batch of compensation lines as one journaled command. Each line is
    ``credited`` or, listed in ``not_credited`` with its index in ``lines``, refused with why:
    ``already_credited`` (paid before, by an earlier batch or attempt: nothing is paid
    twice), ``unknown_asset``, ``invalid_amount``, ``invalid_account``,
    ``invalid_reference``. ``counts`` counts the lines by outcome."""
    lines = [
        CompensationLine(line.account, line.asset, line.amount_minor, line.run_id, line.line_no)
        for line in body.lines
    ]
    result = await execute(runtime, CreditCompensation(lines, body.actor, body.reason))
    raise_if_rejected(result)
    outcomes = credit_outcomes(result.events, len(lines))
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    # Only the lines not credited are listed (by their index in the request): a batch of
    # thousands answers in a few bytes. A response of its own: FastAPI's generic encoding of
    # a returned dict costs some 30 us a line.
    return JSONResponse({
        "seq": result.seq, "ts": result.ts, "counts": counts,
        "not_credited": [
            {"index": index, "run_id": o.run_id, "line_no": o.line_no, "outcome": o.outcome,
             "detail": o.detail}
            for index, o in enumerate(outcomes) if o.outcome != CREDITED
        ],
    })


class _CorrectionRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    command: BustTrade | AdjustTrade | RollbackTo


_CORRECTION_DECODER = msgspec.json.Decoder(_CorrectionRequest)


@admin_router.post("/corrections", summary="Bust, re-price or roll back trades")
async def correct_trades(request: Request, runtime: RuntimeDep) -> Any:
    """One trade correction as the venue journals it: ``{"command": {...}}`` with ``type``
    ``bust_trade``, ``adjust_trade`` or ``rollback_to`` and the fields of
    :mod:`haltguard.venue.commands`, in the venue's integer units (ticks, lots, minor units).
    The corrections service builds it from the journal; people use ``haltguard trades``."""
    try:
        body = _CORRECTION_DECODER.decode(await request.body())
    except msgspec.DecodeError as exc:
        raise ApiError(
            422, "invalid_correction",
            f"the body is not a trade correction ({exc}); send {{\"command\": {{\"type\": "
            "\"bust_trade\" | \"adjust_trade\" | \"rollback_to\", ...}}}}",
        ) from None
    return await admin_execute(runtime, body.command)


@admin_router.get("/corrections/cursor", summary="Where a correction plan must start")
def correction_cursor(runtime: RuntimeDep) -> dict[str, Any]:
    """The venue's last seq, the id of its next trade and the corrections applied so far: a
    rollback plan names the last two, and the venue refuses it if either moved."""
    def read(venue: Any) -> dict[str, Any]:
        return {"last_seq": venue.last_seq, "next_trade_id": venue.next_trade_id,
                "corrections_applied": venue.corrections.count}

    return runtime.read(read)


@admin_router.get(
    "/compensation/runs/{run_id}/credited", summary="Which lines of a run are credited"
)
def credited_lines(
    run_id: Annotated[
        WholeNumber, Path(ge=0, le=INT64_MAX, description="The compensation run.")
    ],
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """The run's credited line numbers as ascending inclusive ``[first, last]`` ranges, so a
    restarted payout skips them."""
    ranges = runtime.read(lambda venue: venue.credited_line_ranges(run_id))
    return {
        "run_id": run_id,
        "ranges": [[first, last] for first, last in ranges],
        "lines": sum(last - first + 1 for first, last in ranges),
    }
