"""Client order ids in the engine: a retry repeats, a reuse with other terms is refused,
and an account the venue has never funded is named as unknown, not short of funds."""

from __future__ import annotations

import msgspec
import pytest
from venue_support import COIN, JPY, MARKET, Harness, funded, order

from haltguard.venue.commands import AddMarket, Deposit, PlaceOrder, Withdraw
from haltguard.venue.engine import Venue, VenueState
from haltguard.venue.events import (
    CommandRejected,
    OrderAccepted,
    OrderRejected,
    OrderRepeated,
)
from haltguard.venue.markets import make_market
from haltguard.venue.types import (
    MarketState,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

OTHER_MARKET = "COIN-JPY2"


def with_second_market() -> Harness:
    h = funded()
    spec = make_market(
        OTHER_MARKET, COIN, JPY, tick_size="1", lot_size="1", min_qty="1", max_qty="1000"
    )
    h(AddMarket(spec, MarketState.OPEN))
    return h


@pytest.mark.parametrize(
    "changed",
    [
        {"price": 901},
        {"qty": 2},
        {"side": Side.SELL},
        {"tif": TimeInForce.IOC},
        {"post_only": True},
        {"stp": SelfTradePrevention.CANCEL_BOTH},
    ],
    ids=lambda changed: next(iter(changed)),
)
def test_a_reused_client_order_id_with_other_terms_is_refused_and_places_nothing(
    changed: dict[str, object],
) -> None:
    h = funded()
    h.buy(1, 1, 900, client_order_id="abc")
    before = h.venue.export_state()
    terms: dict[str, object] = {"qty": 1, "price": 900, "side": Side.BUY, **changed}
    command = PlaceOrder(
        MARKET, 1, terms.pop("side"), terms.pop("qty"), terms.pop("price"),  # type: ignore[arg-type]
        client_order_id="abc", **terms,  # type: ignore[arg-type]
    )

    events = h(command)

    assert len(events) == 1 and isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.CLIENT_ORDER_ID_REUSED
    assert next(iter(changed)) in events[0].detail
    assert f"order {before.last_seq}" in events[0].detail
    assert msgspec.structs.replace(h.venue.export_state(), last_seq=0, last_ts=0) == (
        msgspec.structs.replace(before, last_seq=0, last_ts=0)
    )


def test_a_reused_client_order_id_in_another_market_is_refused() -> None:
    h = with_second_market()
    h.buy(1, 1, 900, client_order_id="abc")

    events = h(PlaceOrder(OTHER_MARKET, 1, Side.BUY, 1, 900, client_order_id="abc"))

    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.CLIENT_ORDER_ID_REUSED
    assert "market" in events[0].detail
    assert h.venue.open_orders(1, OTHER_MARKET) == []


def test_a_retry_with_the_same_terms_still_repeats_after_a_refused_reuse() -> None:
    h = funded()
    h.buy(1, 1, 900, client_order_id="abc")
    first = h.seq
    h.buy(1, 1, 950, client_order_id="abc")

    assert h.buy(1, 1, 900, client_order_id="abc") == [OrderRepeated(MARKET, 1, "abc", first)]


def test_the_id_of_a_finished_order_refuses_other_terms_too() -> None:
    h = funded()
    h.sell(2, 1, 900)
    h.buy(1, 1, 900, client_order_id="filled")

    events = h.buy(1, 1, 899, client_order_id="filled")

    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.CLIENT_ORDER_ID_REUSED


def test_a_market_order_repeats_with_the_same_terms() -> None:
    h = funded()
    h.sell(2, 5, 900)
    h.buy(1, 1, client_order_id="m")
    first = h.seq

    assert h.buy(1, 1, client_order_id="m") == [OrderRepeated(MARKET, 1, "m", first)]
    refused = h.buy(1, 1, 900, client_order_id="m")
    assert isinstance(refused[0], OrderRejected)
    assert refused[0].reason is RejectReason.CLIENT_ORDER_ID_REUSED


def test_the_terms_of_client_order_ids_survive_a_snapshot_restore() -> None:
    h = funded()
    h.buy(1, 1, 900, client_order_id="resting")
    h.sell(2, 1, 800)
    h.buy(1, 1, 800, client_order_id="finished")
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(h.venue.export_state()), type=VenueState)
    restored = Harness(Venue.restore(state))

    assert restored.venue.state_hash() == h.venue.state_hash()
    for client_id, price in (("resting", 900), ("finished", 800)):
        assert isinstance(restored.buy(1, 1, price, client_order_id=client_id)[0], OrderRepeated)
        refused = restored.buy(1, 1, price + 1, client_order_id=client_id)
        assert isinstance(refused[0], OrderRejected)
        assert refused[0].reason is RejectReason.CLIENT_ORDER_ID_REUSED


def test_a_state_without_client_order_ids_encodes_and_hashes_as_before_terms_were_kept() -> None:
    """Snapshots written before terms were kept must still verify against their hash."""
    h = funded()
    h.buy(1, 1, 900)
    h.buy(2, 1, 800, tif=TimeInForce.IOC)

    encoded = msgspec.msgpack.decode(msgspec.msgpack.encode(h.venue.export_state()))

    assert "client_order_terms" not in encoded


def test_a_snapshot_written_before_terms_were_kept_restores_and_repeats_as_it_did() -> None:
    h = funded()
    h.buy(1, 1, 900, client_order_id="old")
    h.buy(1, 1, 800, client_order_id="done", tif=TimeInForce.IOC)
    data = msgspec.to_builtins(h.venue.export_state())
    assert len(data.pop("client_order_terms")) == 2  # what an older release did not write
    old_bytes = msgspec.msgpack.encode(data)
    state = msgspec.msgpack.decode(old_bytes, type=VenueState)
    restored = Harness(Venue.restore(state))

    assert msgspec.msgpack.encode(restored.venue.export_state()) == old_bytes
    assert restored.venue.check_invariants() == []
    for client_id in ("old", "done"):
        assert isinstance(restored.buy(1, 2, 700, client_order_id=client_id)[0], OrderRepeated)


def test_replaying_a_refused_reuse_reaches_the_state_hash_apply_reaches() -> None:
    h = funded()
    commands = [
        order(1, Side.BUY, 1, 900, client_order_id="abc"),
        order(1, Side.BUY, 2, 900, client_order_id="abc"),
        order(1, Side.BUY, 1, 900, client_order_id="abc"),
        order(9, Side.BUY, 1, 900, client_order_id="abc"),
    ]
    replayed = Venue.restore(h.venue.export_state())
    seq, ts = h.seq, h.ts
    for command in commands:
        h(command)
    for offset, command in enumerate(commands, start=1):
        replayed.replay(seq + offset, ts + offset, command)

    assert replayed.state_hash() == h.venue.state_hash()


def test_an_order_from_an_account_the_venue_never_funded_names_it_unknown() -> None:
    h = funded()

    events = h.buy(9, 1, 900)

    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.UNKNOWN_ACCOUNT
    assert "account 9" in events[0].detail


def test_a_funded_account_short_of_the_asset_is_still_insufficient_funds() -> None:
    h = funded()
    h(Deposit(9, "COIN", 5))

    events = h.buy(9, 1)

    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.INSUFFICIENT_FUNDS


def test_a_withdrawal_from_an_account_the_venue_never_funded_names_it_unknown() -> None:
    h = funded()

    events = h(Withdraw(9, "JPY", 1))

    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is RejectReason.UNKNOWN_ACCOUNT


def test_an_account_that_holds_only_orders_is_known() -> None:
    h = funded()
    h(Deposit(9, "JPY", 1_000))
    assert isinstance(h.buy(9, 1, 900)[0], OrderAccepted)

    events = h.buy(9, 1, 900)

    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.INSUFFICIENT_FUNDS

