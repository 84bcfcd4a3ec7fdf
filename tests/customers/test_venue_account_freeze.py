"""The per-account withdrawal freeze as the venue applies it: through the contract,
journaled, kept in snapshots, and only for the account named (issue 19)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from haltguard.app.venue_app import create_venue_app
from haltguard.gateway.control import HttpVenueControl
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.runtime import VenueRuntime
from haltguard.venue.commands import AddAsset, Deposit, FreezeAccountWithdrawals, Withdraw
from haltguard.venue.control import VenueControlError
from haltguard.venue.engine import Venue
from haltguard.venue.events import AccountWithdrawalsFrozen, CommandRejected, Withdrawn
from haltguard.venue.markets import Asset
from haltguard.venue.types import RejectReason

TS = 1_765_000_000_000_000_000


def _venue() -> Venue:
    venue = Venue()
    for seq, command in enumerate([AddAsset(Asset("BTC", 8)), Deposit(7, "BTC", 1_000),
                                   Deposit(8, "BTC", 1_000)], start=1):
        venue.apply(seq, TS + seq, command)
    return venue


def test_a_frozen_account_cannot_withdraw_while_others_still_can() -> None:
    venue = _venue()
    frozen = venue.apply(4, TS + 4, FreezeAccountWithdrawals(7, True, "customer:7", "lost phone"))
    assert frozen == [AccountWithdrawalsFrozen(7, True, "customer:7", "lost phone", "")]
    refused = venue.apply(5, TS + 5, Withdraw(7, "BTC", 10, "addr"))
    assert type(refused[0]) is CommandRejected
    assert refused[0].reason is RejectReason.WITHDRAWALS_FROZEN
    assert "account 7" in refused[0].detail
    assert type(venue.apply(6, TS + 6, Withdraw(8, "BTC", 10, "addr"))[0]) is Withdrawn
    venue.apply(7, TS + 7, FreezeAccountWithdrawals(7, False, "operator:sam", "verified"))
    assert type(venue.apply(8, TS + 8, Withdraw(7, "BTC", 10, "addr"))[0]) is Withdrawn


def test_the_freeze_survives_a_snapshot_and_an_unfrozen_venue_hashes_as_before() -> None:
    venue = _venue()
    plain_hash = Venue.restore(venue.export_state()).state_hash()
    assert plain_hash == venue.state_hash()
    venue.apply(4, TS + 4, FreezeAccountWithdrawals(7, True, "system:detection", "evidence"))
    restored = Venue.restore(venue.export_state())
    assert restored.frozen_accounts == frozenset({7})
    assert restored.state_hash() == venue.state_hash() != plain_hash


@pytest.mark.parametrize("account", [0, -3])
def test_the_fee_account_and_negative_numbers_cannot_be_frozen(account: int) -> None:
    events = _venue().apply(4, TS + 4, FreezeAccountWithdrawals(account, True, "x", "y"))
    assert type(events[0]) is CommandRejected
    assert events[0].reason is RejectReason.INVALID_ACCOUNT


ADMIN_TOKEN = "admin-token-for-the-http-adapter"


@pytest.fixture
def venue_url(tmp_path: Path) -> Iterator[tuple[str, VenueRuntime]]:
    """A demo venue's API (accounts 1..50 funded) on a free local port."""
    runtime = VenueRuntime(tmp_path / "venue").start()
    set_up_demo(runtime)
    server = uvicorn.Server(uvicorn.Config(create_venue_app(runtime, ADMIN_TOKEN),
                                           host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the venue's server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", runtime
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.stop()


def test_the_http_adapter_freezes_one_account_and_debits_withdrawals_in_minor_units(
        venue_url: tuple[str, VenueRuntime]) -> None:
    url, runtime = venue_url
    control = HttpVenueControl(url, ADMIN_TOKEN)
    before = runtime.read(lambda venue: venue.balances(7))["BTC"][0]
    [withdrawn] = control.withdraw(7, "BTC", 12_345, destination="bc1qx", reference="r1")
    assert withdrawn == Withdrawn(7, "BTC", 12_345, "bc1qx", "r1")
    assert runtime.read(lambda venue: venue.balances(7))["BTC"][0] == before - 12_345
    [frozen] = control.freeze_account_withdrawals(7, True, actor="customer:7", reason="lock")
    assert frozen == AccountWithdrawalsFrozen(7, True, "customer:7", "lock", "")
    with pytest.raises(VenueControlError, match="withdrawals_frozen"):
        control.withdraw(7, "BTC", 1, destination="bc1qx", reference="r2")
    assert control.withdraw(8, "BTC", 1, destination="bc1qy", reference="r3")
