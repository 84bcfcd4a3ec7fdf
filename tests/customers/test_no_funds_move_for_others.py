"""Property: no sequence of customer API calls moves funds out of an account other than the
key's own (issue 19). Every call a key makes reaches the venue, if at all, as a command of
its own account (whatever ``account`` the caller wrote), and no withdrawal ever leaves
another account; a bystander that never traded keeps its balances to the unit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from customer_support import BYSTANDER, HOLD_S, Bench, Key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haltguard.journal.reader import JournalReader
from haltguard.venue.commands import CancelAll, CancelOrder, PlaceOrder, Withdraw
from haltguard.venue.events import Withdrawn

ADDRESS = "bc1qpropertytestaddress"
ACCOUNT_FIELD = st.one_of(st.none(), st.sampled_from(["own", "other", "bystander"]),
                          st.integers(min_value=-1, max_value=60))
CALL = st.one_of(
    st.tuples(st.just("order"), ACCOUNT_FIELD, st.sampled_from(["buy", "sell"]),
              st.integers(min_value=90, max_value=110)),
    st.tuples(st.just("cancel"), ACCOUNT_FIELD, st.integers(min_value=1, max_value=400)),
    st.tuples(st.just("cancel_all"), ACCOUNT_FIELD),
    st.tuples(st.just("withdraw"), st.integers(min_value=1, max_value=10_000)),
    st.tuples(st.just("read"), ACCOUNT_FIELD),
)


class Actors:
    """The acting customer (trade and withdraw keys, an address past its hold) and another
    customer with resting orders it could be robbed of."""

    def __init__(self, bench: Bench) -> None:
        self.trader = bench.new_customer()
        bench.turn_on_2fa(self.trader)
        self.withdrawer = bench.new_key(self.trader, ["read", "withdraw"],
                                        code=bench.code(self.trader.account))
        added = bench.signed(self.withdrawer, "POST", "/api/customers/me/addresses", {
            "asset": "BTC", "address": ADDRESS, "code": bench.code(self.trader.account)})
        assert added.status_code == 201, added.text
        bench.clock.advance(timedelta(seconds=HOLD_S))
        self.other = bench.new_customer()
        for price in ("9500000", "10500000"):
            side = "buy" if price == "9500000" else "sell"
            placed = bench.order(self.other, {"side": side, "qty": "0.01", "price": price})
            assert placed.status_code in {200, 201}, placed.text


_actors: dict[int, Actors] = {}


def _account_value(field: Any, own: Key, other: Key) -> Any:
    return {"own": own.account, "other": other.account, "bystander": BYSTANDER}.get(
        field, field) if isinstance(field, str) else field


def _call(bench: Bench, actors: Actors, call: tuple[Any, ...]) -> None:
    own, other = actors.trader, actors.other
    kind = call[0]
    if kind == "order":
        body: dict[str, Any] = {"side": call[2], "qty": "0.01", "price": f"{call[3]}00000"}
        account = _account_value(call[1], own, other)
        if account is not None:
            body["account"] = account
        bench.order(own, body)
    elif kind == "cancel":
        account = _account_value(call[1], own, other)
        query = "" if account is None else f"?account={account}"
        bench.signed(own, "DELETE", f"/v1/markets/BTC-JPY/orders/{call[2]}{query}")
    elif kind == "cancel_all":
        account = _account_value(call[1], own, other)
        bench.signed(own, "POST", "/v1/markets/BTC-JPY/cancel-all",
                     {} if account is None else {"account": account})
    elif kind == "withdraw":
        bench.signed(actors.withdrawer, "POST", "/api/customers/me/withdrawals", {
            "asset": "BTC", "amount_minor": call[1], "address": ADDRESS,
            "code": bench.code(own.account)})
    else:
        account = _account_value(call[1], own, other)
        bench.signed(own, "GET", f"/v1/accounts/{account or own.account}/balances")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(calls=st.lists(CALL, min_size=1, max_size=6))
def test_no_sequence_of_calls_moves_funds_out_of_another_account(
        bench: Bench, calls: list[tuple[Any, ...]]) -> None:
    if id(bench) not in _actors:
        _actors[id(bench)] = Actors(bench)
    actors = _actors[id(bench)]
    bystander_before = bench.runtime.read(lambda venue: venue.balances(BYSTANDER))
    first_seq = bench.runtime.read(lambda venue: venue.last_seq) + 1
    for call in calls:
        _call(bench, actors, call)
    reader = JournalReader(bench.venue_dir)
    try:
        reader.seek(first_seq)
        entries = reader.read_available()
    finally:
        reader.close()
    for sequenced, events in entries:
        command = sequenced.command
        if isinstance(command, PlaceOrder | CancelOrder | CancelAll | Withdraw):
            assert command.account == actors.trader.account, command
        for event in events:
            if type(event) is Withdrawn:
                assert event.account == actors.trader.account, event
    assert bench.runtime.read(lambda venue: venue.balances(BYSTANDER)) == bystander_before
