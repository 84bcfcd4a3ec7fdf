"""The venue's HTTP API against a real runtime and journal on a temporary directory."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from gateway_support import ADMIN, TOKEN, start_runtime

from haltguard.app.venue_app import create_venue_app
from haltguard.gateway.runtime import VenueRuntime
from haltguard.venue.commands import Heartbeat


def place(client: TestClient, market: str = "BTC-JPY", **fields: Any) -> Any:
    body = {"account": 1, "side": "buy", "qty": "0.01", "price": "15000000", **fields}
    return client.post(f"/v1/markets/{market}/orders", json=body)


def set_state(client: TestClient, market: str, state: str, **fields: Any) -> Any:
    body = {"state": state, "actor": "alice", "reason": "test", **fields}
    return client.post(f"/v1/admin/markets/{market}/state", json=body, headers=ADMIN)


def test_crossing_orders_trade_and_settle_balances_exactly(client: TestClient) -> None:
    sell = place(client, account=2, side="sell")
    assert sell.status_code == 201, sell.text
    assert sell.json()["order"]["status"] == "resting"

    buy = place(client, account=1, side="buy")

    assert buy.status_code == 201, buy.text
    order = buy.json()["order"]
    assert (order["status"], order["filled_qty"], order["open_qty"]) == ("filled", "0.01", "0")
    [trade] = buy.json()["trades"]
    assert (trade["price"], trade["qty"], trade["taker_fee"]) == ("15000000", "0.01", "150")
    buyer = client.get("/v1/accounts/1/balances").json()["balances"]
    seller = client.get("/v1/accounts/2/balances").json()["balances"]
    fees = client.get("/v1/accounts/0/balances").json()["balances"]
    assert buyer["JPY"] == {"available": "999849850", "held": "0"}
    assert buyer["BTC"] == {"available": "10.01", "held": "0"}
    assert seller["JPY"] == {"available": "1000150000", "held": "0"}
    assert seller["BTC"] == {"available": "9.99", "held": "0"}
    assert fees["JPY"] == {"available": "150", "held": "0"}
    trades = client.get("/v1/markets/BTC-JPY/trades").json()["trades"]
    assert [(t["price"], t["qty"], t["taker_side"]) for t in trades] == [
        ("15000000", "0.01", "buy")
    ]


def test_resting_order_shows_in_depth_open_orders_and_held_balance(client: TestClient) -> None:
    placed = place(client, price="14900000", qty="0.02").json()["order"]

    depth = client.get("/v1/markets/BTC-JPY/depth").json()
    orders = client.get("/v1/accounts/1/orders").json()["orders"]
    balances = client.get("/v1/accounts/1/balances").json()["balances"]
    market = client.get("/v1/markets/BTC-JPY").json()

    assert depth["bids"] == [["14900000", "0.02", 1]] and depth["asks"] == []
    assert [(o["order_id"], o["open_qty"]) for o in orders] == [(placed["order_id"], "0.02")]
    assert balances["JPY"]["held"] != "0"
    assert (market["best_bid"], market["best_ask"], market["state"]) == ("14900000", None, "open")


def test_off_grid_price_is_refused_with_422_and_never_rounded(
    client: TestClient, runtime: VenueRuntime
) -> None:
    seq_before = runtime.status().last_seq

    response = place(client, price="15000000.5")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_price"
    assert "15000000.5" in error["message"] and "tick size 1" in error["message"]
    assert runtime.status().last_seq == seq_before  # nothing was journaled


def test_off_grid_quantity_is_refused_with_422(client: TestClient) -> None:
    response = place(client, qty="0.00005")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_quantity"
    assert "lot size 0.0001" in response.json()["error"]["message"]


def test_json_number_for_price_is_refused_rather_than_guessed(client: TestClient) -> None:
    response = place(client, price=15000000.1)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "price" in error["message"]


def test_unknown_market_is_404_with_a_hint(client: TestClient) -> None:
    response = place(client, market="DOGE-JPY")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_market"
    assert "/v1/markets" in response.json()["error"]["message"]


def test_order_beyond_available_funds_is_refused_by_the_venue(client: TestClient) -> None:
    response = place(client, qty="100", price="15000000")  # 1.5e9 JPY > 1e9 JPY funded

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_funds" and error["seq"] > 0
    assert "balances" in error["message"]


def test_halted_market_rejects_new_orders_but_allows_cancel(client: TestClient) -> None:
    resting = place(client, price="14000000").json()["order"]
    assert set_state(client, "BTC-JPY", "halted").status_code == 200

    refused = place(client, price="14000000")
    cancelled = client.delete(f"/v1/markets/BTC-JPY/orders/{resting['order_id']}?account=1")

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "market_halted"
    assert cancelled.status_code == 200, cancelled.text
    assert [e["type"] for e in cancelled.json()["events"]] == ["order_cancelled"]
    assert client.get("/v1/accounts/1/orders").json()["orders"] == []


def test_halt_refusing_cancels_refuses_cancels(client: TestClient) -> None:
    resting = place(client, price="14000000").json()["order"]
    set_state(client, "BTC-JPY", "halted", cancels_allowed=False)

    response = client.delete(f"/v1/markets/BTC-JPY/orders/{resting['order_id']}?account=1")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "cancels_refused"


def test_illegal_transition_is_refused_naming_the_allowed_states(client: TestClient) -> None:
    set_state(client, "BTC-JPY", "halted")

    response = set_state(client, "BTC-JPY", "open")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "illegal_transition" and "auction" in error["message"]


def test_cancel_by_client_order_id(client: TestClient) -> None:
    place(client, price="14000000", client_order_id="mine-1")

    response = client.delete("/v1/markets/BTC-JPY/orders/by-client-id/mine-1?account=1")

    assert response.status_code == 200
    assert client.get("/v1/accounts/1/orders").json()["orders"] == []


def test_cancel_of_someone_elses_order_is_403(client: TestClient) -> None:
    resting = place(client, price="14000000").json()["order"]

    response = client.delete(f"/v1/markets/BTC-JPY/orders/{resting['order_id']}?account=2")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_order_owner"


def test_customer_cancel_all_cancels_only_that_account_in_that_market(client: TestClient) -> None:
    place(client, price="14000000")
    place(client, price="13000000")
    place(client, account=2, price="14000000")
    place(client, market="ETH-JPY", price="400000", qty="0.1")

    response = client.post("/v1/markets/BTC-JPY/cancel-all", json={"account": 1})

    assert response.json()["cancelled"] == 2
    left = client.get("/v1/accounts/1/orders").json()["orders"]
    assert [o["market"] for o in left] == ["ETH-JPY"]
    assert len(client.get("/v1/accounts/2/orders").json()["orders"]) == 1


def test_retried_client_order_id_returns_the_original_outcome(client: TestClient) -> None:
    place(client, account=2, side="sell", qty="0.005")
    first = place(client, qty="0.01", client_order_id="retry-me")
    balances_after_first = client.get("/v1/accounts/1/balances").json()

    retry = place(client, qty="0.01", client_order_id="retry-me")

    assert first.status_code == 201 and retry.status_code == 200
    assert retry.json()["repeated"] is True
    assert retry.json()["original_seq"] == first.json()["seq"]
    assert retry.json()["order"] == first.json()["order"]
    assert retry.json()["trades"] == first.json()["trades"]
    balances_after_retry = client.get("/v1/accounts/1/balances").json()
    assert balances_after_retry["balances"] == balances_after_first["balances"]
    assert len(client.get("/v1/accounts/1/orders").json()["orders"]) == 1


def test_retry_after_restart_reports_the_order_as_it_is_now(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path)
    with TestClient(create_venue_app(runtime, TOKEN)) as client:
        first = place(client, price="14000000", client_order_id="survives").json()
    runtime.stop()
    runtime = start_runtime(tmp_path, set_up=False)
    try:
        with TestClient(create_venue_app(runtime, TOKEN)) as client:
            retry = place(client, price="14000000", client_order_id="survives")
    finally:
        runtime.stop()

    assert retry.status_code == 200 and retry.json()["repeated"] is True
    order = retry.json()["order"]
    assert (order["order_id"], order["status"]) == (first["order"]["order_id"], "resting")


def test_admin_endpoint_without_token_is_401(client: TestClient) -> None:
    response = client.post(
        "/v1/admin/kill-switch", json={"engaged": True, "actor": "x", "reason": "y"}
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["error"]["message"]
    assert client.get("/v1/markets").json()["kill_switch"] is False


def test_admin_endpoint_with_wrong_token_is_403(client: TestClient) -> None:
    response = client.post(
        "/v1/admin/kill-switch",
        json={"engaged": True, "actor": "x", "reason": "y"},
        headers={"Authorization": "Bearer not-the-token"},
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_admin_endpoints_are_disabled_without_a_configured_token(runtime: VenueRuntime) -> None:
    with TestClient(create_venue_app(runtime, "")) as client:
        response = client.get("/v1/admin/status", headers={"Authorization": "Bearer "})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"


def test_kill_switch_halts_every_market_in_one_command(client: TestClient) -> None:
    response = client.post(
        "/v1/admin/kill-switch",
        json={"engaged": True, "actor": "alice", "reason": "exchange-wide incident"},
        headers=ADMIN,
    )

    assert response.status_code == 200
    states = {m["symbol"]: m["state"] for m in client.get("/v1/markets").json()["markets"]}
    assert set(states.values()) == {"halted"}
    refused = place(client)
    assert refused.json()["error"]["code"] == "kill_switch_engaged"


def test_frozen_withdrawals_are_refused(client: TestClient) -> None:
    freeze = client.post(
        "/v1/admin/assets/BTC/withdrawals-frozen",
        json={"frozen": True, "actor": "alice", "reason": "wallet check"},
        headers=ADMIN,
    )
    response = client.post(
        "/v1/admin/withdrawals", json={"account": 1, "asset": "BTC", "amount": "1"}, headers=ADMIN
    )

    assert freeze.status_code == 200
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "withdrawals_frozen"
    assert [a for a in client.get("/v1/assets").json()["assets"] if a["code"] == "BTC"] == [
        {"code": "BTC", "decimals": 8, "withdrawals_frozen": True}
    ]


def test_deposit_finer_than_the_assets_minor_unit_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/admin/deposits",
        json={"account": 9, "asset": "JPY", "amount": "1.00001"},
        headers=ADMIN,
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_amount"
    assert client.get("/v1/accounts/9/balances").json()["balances"] == {}


def test_listing_an_asset_and_market_over_the_admin_api(client: TestClient) -> None:
    asset = client.post("/v1/admin/assets", json={"code": "SOL", "decimals": 9}, headers=ADMIN)
    market = client.post(
        "/v1/admin/markets",
        json={"symbol": "SOL-JPY", "base": "SOL", "quote": "JPY", "tick_size": "0.1",
              "lot_size": "0.01", "min_qty": "0.01", "max_qty": "10000", "state": "open"},
        headers=ADMIN,
    )

    assert (asset.status_code, market.status_code) == (201, 201), market.text
    spec = client.get("/v1/markets/SOL-JPY").json()
    assert (spec["tick_size"], spec["lot_size"], spec["state"]) == ("0.1", "0.01", "open")


def test_auction_publishes_indicative_uncross_then_uncrosses_at_one_price(
    client: TestClient,
) -> None:
    set_state(client, "BTC-JPY", "auction")
    place(client, account=1, side="buy", price="15100000", qty="0.02")
    place(client, account=2, side="sell", price="14900000", qty="0.01")

    indicative = client.get("/v1/markets/BTC-JPY/auction").json()
    uncross = client.post(
        "/v1/admin/markets/BTC-JPY/uncross", json={"actor": "alice", "reason": "open"},
        headers=ADMIN,
    )

    assert indicative["in_auction"] is True
    assert indicative["volume"] == "0.01" and indicative["price"] is not None
    assert uncross.status_code == 200
    trades = client.get("/v1/markets/BTC-JPY/trades").json()["trades"]
    assert [(t["price"], t["qty"]) for t in trades] == [(indicative["price"], "0.01")]
    assert client.get("/v1/markets/BTC-JPY").json()["state"] == "open"


def test_timed_auction_ends_by_itself_through_a_runtime_heartbeat(
    client: TestClient, runtime: VenueRuntime
) -> None:
    set_state(client, "BTC-JPY", "auction", auction_seconds=0.2)
    place(client, account=1, side="buy", price="15000000", qty="0.01")
    place(client, account=2, side="sell", price="15000000", qty="0.01")

    deadline = time.monotonic() + 5
    while client.get("/v1/markets/BTC-JPY").json()["state"] != "open":
        assert time.monotonic() < deadline, "the auction did not end by itself"
        time.sleep(0.02)

    assert len(client.get("/v1/markets/BTC-JPY/trades").json()["trades"]) == 1
    assert runtime.status().last_seq > 0


def test_resume_plan_moves_a_halted_market_through_its_phases(client: TestClient) -> None:
    set_state(client, "BTC-JPY", "halted")

    response = client.post(
        "/v1/admin/markets/BTC-JPY/resume-plan",
        json={"actor": "alice", "reason": "all clear",
              "phases": [{"state": "cancel_only", "min_seconds": 0.05},
                         {"state": "auction", "min_seconds": 0.05},
                         {"state": "open", "min_seconds": 0}]},
        headers=ADMIN,
    )

    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 5
    while client.get("/v1/markets/BTC-JPY").json()["state"] != "open":
        assert time.monotonic() < deadline, "the resume plan did not reach open"
        time.sleep(0.02)


def test_breaker_can_be_replaced_and_turned_off(client: TestClient) -> None:
    custom = client.put(
        "/v1/admin/markets/BTC-JPY/breaker",
        json={"actor": "alice", "reason": "tighter band", "band_bps": [500],
              "pause_seconds": 60},
        headers=ADMIN,
    )
    off = client.put(
        "/v1/admin/markets/BTC-JPY/breaker",
        json={"actor": "alice", "reason": "off", "preset": "none"}, headers=ADMIN,
    )

    assert custom.status_code == 200, custom.text
    assert [(e["type"], e["enabled"]) for e in custom.json()["events"]] == [
        ("breaker_configured", True)
    ]
    assert [(e["type"], e["enabled"]) for e in off.json()["events"]] == [
        ("breaker_configured", False)
    ]


def test_the_market_shows_the_breaker_in_force_not_the_listed_one(client: TestClient) -> None:
    listed = client.get("/v1/markets/BTC-JPY").json()["breaker"]
    client.put(
        "/v1/admin/markets/BTC-JPY/breaker",
        json={"actor": "alice", "reason": "tighter", "band_bps": [500], "pause_seconds": 60},
        headers=ADMIN,
    )

    custom = client.get("/v1/markets/BTC-JPY").json()["breaker"]
    listing = next(m for m in client.get("/v1/markets").json()["markets"]
                   if m["symbol"] == "BTC-JPY")

    assert listed["band_bps"] != [500]
    assert (custom["band_bps"], custom["pause_seconds"]) == ([500], 60)
    assert listing["breaker"] == custom
    client.put(
        "/v1/admin/markets/BTC-JPY/breaker",
        json={"actor": "alice", "reason": "off", "preset": "none"}, headers=ADMIN,
    )
    assert client.get("/v1/markets/BTC-JPY").json()["breaker"] is None


def test_custom_breaker_without_a_band_is_422(client: TestClient) -> None:
    response = client.put(
        "/v1/admin/markets/BTC-JPY/breaker",
        json={"actor": "alice", "reason": "oops"}, headers=ADMIN,
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_breaker"


def test_full_input_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, queue_depth_max=1)
    gate, holding = threading.Event(), threading.Event()

    def hold_the_venue(_: object) -> None:
        holding.set()
        gate.wait(10)

    reader = threading.Thread(target=runtime.read, args=(hold_the_venue,))
    try:
        with TestClient(create_venue_app(runtime, TOKEN)) as client:
            reader.start()
            holding.wait(5)
            in_flight = runtime.submit(Heartbeat())  # taken by the venue thread, then blocks
            deadline = time.monotonic() + 5
            while runtime.status().queue_depth:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            waiting = runtime.submit(Heartbeat())  # fills the one-slot queue

            response = place(client)

            gate.set()
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            assert response.json()["error"]["code"] == "overloaded"
            assert in_flight.result(5).seq + 1 == waiting.result(5).seq
            assert place(client, price="14000000").status_code == 201
    finally:
        gate.set()
        reader.join(5)
        runtime.stop()


def test_restart_resumes_the_book_and_the_sequence(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, checkpoint_every=5)
    with TestClient(create_venue_app(runtime, TOKEN)) as client:
        place(client, price="14000000")
        place(client, account=2, side="sell", price="16000000")
        depth_before = client.get("/v1/markets/BTC-JPY/depth").json()
    last_seq = runtime.status().last_seq
    runtime.stop()

    runtime = start_runtime(tmp_path, set_up=False)
    try:
        with TestClient(create_venue_app(runtime, TOKEN)) as client:
            depth_after = client.get("/v1/markets/BTC-JPY/depth").json()
            next_order = place(client, price="14500000").json()
    finally:
        runtime.stop()

    assert depth_after == depth_before
    assert next_order["seq"] == last_seq + 1
    assert next_order["order"]["order_id"] == last_seq + 1


def test_errors_for_unknown_routes_use_the_error_shape(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_health_reports_the_last_sequence(client: TestClient, runtime: VenueRuntime) -> None:
    response = client.get("/v1/health")

    assert response.status_code == 200
    assert response.json()["last_seq"] == runtime.status().last_seq


def test_a_number_the_journal_cannot_store_is_422_and_uses_no_sequence_number(
    client: TestClient, runtime: VenueRuntime
) -> None:
    last_seq = runtime.status().last_seq

    response = place(client, account=2**70)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert "account" in error["message"] and "9223372036854775807" in error["message"]
    assert runtime.status().last_seq == last_seq
    assert runtime.status().failure == ""
    assert place(client).status_code == 201
    assert client.get("/v1/health").status_code == 200
