"""The venue API takes only its documented grammar: decimal strings, JSON types as declared,
bounded integers, plain names. Everything else is a 422 that names the field, and nothing
reaches the journal. Client order ids are per account; reusing one for other terms is a 409."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from gateway_support import ADMIN

from haltguard.gateway.runtime import VenueRuntime

INT64_MAX = 2**63 - 1
OPS = {"actor": "alice", "reason": "test"}


def place(client: TestClient, market: str = "BTC-JPY", **fields: Any) -> Any:
    body = {"account": 1, "side": "buy", "qty": "0.01", "price": "15000000", **fields}
    return client.post(f"/v1/markets/{market}/orders", json=body)


def assert_refused(response: Any, runtime: VenueRuntime, last_seq: int, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["message"]
    assert runtime.status().last_seq == last_seq  # nothing journaled


# --- orders: decimals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["1_0", "1e-3", "1e3", "1E3", "１０", " 0.01", "0.01 ", "+0.01", "-0.01", ".5", "5.",
     "0x10", "NaN", "Infinity", "", "0.0_1", "١٠", "1,5", "01"],
)
def test_an_order_quantity_outside_the_decimal_grammar_is_refused(
    client: TestClient, runtime: VenueRuntime, text: str
) -> None:
    last_seq = runtime.status().last_seq

    response = place(client, qty=text)

    assert_refused(response, runtime, last_seq, "qty")
    assert "plain decimal" in response.json()["error"]["message"]


@pytest.mark.parametrize("text", ["15_000_000", "1.5e7", "１５００００００", "15000000\n"])
def test_an_order_price_outside_the_decimal_grammar_is_refused(
    client: TestClient, runtime: VenueRuntime, text: str
) -> None:
    last_seq = runtime.status().last_seq

    assert_refused(place(client, price=text), runtime, last_seq, "price")


def test_an_underscored_quantity_is_not_placed_as_its_digits(client: TestClient) -> None:
    assert place(client, qty="1_0").status_code == 422
    assert client.get("/v1/accounts/1/orders").json()["orders"] == []


# --- orders: JSON types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("account", True),
        ("account", "1"),
        ("account", 1.0),
        ("account", 2**63),
        ("account", -1),
        ("post_only", "yes"),
        ("post_only", 1),
        ("side", 1),
        ("side", "BUY"),
        ("qty", 1),
        ("price", 15000000),
        ("client_order_id", 7),
        ("tif", True),
    ],
)
def test_an_order_field_of_the_wrong_json_type_is_refused(
    client: TestClient, runtime: VenueRuntime, field: str, value: object
) -> None:
    last_seq = runtime.status().last_seq

    fields: dict[str, Any] = {field: value}
    assert_refused(place(client, **fields), runtime, last_seq, field)


def test_the_largest_account_number_the_journal_stores_is_taken(client: TestClient) -> None:
    response = place(client, account=INT64_MAX)

    assert response.status_code == 404  # well-formed, and unknown to the venue
    assert response.json()["error"]["code"] == "unknown_account"


# --- client order ids ---------------------------------------------------------------------


def test_a_client_order_id_reused_with_another_price_is_a_409_and_places_nothing(
    client: TestClient,
) -> None:
    first = place(client, price="14000000", client_order_id="mine")

    reuse = place(client, price="14000001", client_order_id="mine")

    assert first.status_code == 201
    assert reuse.status_code == 409, reuse.text
    error = reuse.json()["error"]
    assert error["code"] == "client_order_id_reused"
    assert "price" in error["message"] and "new client_order_id" in error["message"]
    orders = client.get("/v1/accounts/1/orders").json()["orders"]
    assert [o["price"] for o in orders] == ["14000000"]


def test_a_client_order_id_reused_with_another_quantity_is_a_409(client: TestClient) -> None:
    place(client, price="14000000", client_order_id="mine")

    reuse = place(client, price="14000000", qty="0.02", client_order_id="mine")

    assert reuse.status_code == 409
    assert "qty" in reuse.json()["error"]["message"]


def test_a_client_order_id_reused_on_another_market_is_a_409_and_places_nothing(
    client: TestClient,
) -> None:
    place(client, price="14000000", client_order_id="mine")

    reuse = place(client, market="ETH-JPY", price="400000", qty="0.1", client_order_id="mine")

    assert reuse.status_code == 409, reuse.text
    assert reuse.json()["error"]["code"] == "client_order_id_reused"
    assert client.get("/v1/accounts/1/orders", params={"market": "ETH-JPY"}).json()[
        "orders"
    ] == []


def test_a_true_retry_after_a_refused_reuse_still_answers_the_original_outcome(
    client: TestClient,
) -> None:
    first = place(client, price="14000000", client_order_id="mine")
    place(client, price="14000001", client_order_id="mine")

    retry = place(client, price="14000000", client_order_id="mine")

    assert retry.status_code == 200, retry.text
    assert retry.json()["repeated"] is True
    assert retry.json()["original_seq"] == first.json()["seq"]
    assert retry.json()["order"] == first.json()["order"]


def test_the_same_client_order_id_for_another_account_is_its_own_order(
    client: TestClient,
) -> None:
    place(client, price="14000000", client_order_id="shared")

    other = place(client, account=2, price="14000001", client_order_id="shared")

    assert other.status_code == 201


# --- unknown accounts ---------------------------------------------------------------------


def test_an_order_from_an_unknown_account_says_the_account_is_unknown(
    client: TestClient,
) -> None:
    response = place(client, account=424242)

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "unknown_account"
    assert "424242" in error["message"] and "account number" in error["message"]


def test_a_withdrawal_from_an_unknown_account_says_the_account_is_unknown(
    client: TestClient,
) -> None:
    body = {"account": 424242, "asset": "JPY", "amount": "1"}

    response = client.post("/v1/admin/withdrawals", json=body, headers=ADMIN)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_account"


# --- cancels and reads: path and query integers -------------------------------------------


@pytest.mark.parametrize("text", ["1_0", "+1", "1.0", "01", "%201", "9223372036854775808"])
def test_a_cancel_whose_order_id_is_not_plain_digits_is_refused(
    client: TestClient, runtime: VenueRuntime, text: str
) -> None:
    last_seq = runtime.status().last_seq

    response = client.delete(f"/v1/markets/BTC-JPY/orders/{text}?account=1")

    assert_refused(response, runtime, last_seq, "order_id")


@pytest.mark.parametrize("text", ["1_0", "1.0", " 1", "true", "-1"])
def test_a_cancel_whose_account_is_not_plain_digits_is_refused(
    client: TestClient, runtime: VenueRuntime, text: str
) -> None:
    last_seq = runtime.status().last_seq

    response = client.delete("/v1/markets/BTC-JPY/orders/5", params={"account": text})

    assert_refused(response, runtime, last_seq, "account")


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/markets/BTC-JPY/depth", {"levels": "1_0"}, "levels"),
        ("/v1/markets/BTC-JPY/depth", {"levels": "1e1"}, "levels"),
        ("/v1/markets/BTC-JPY/trades", {"limit": " 5"}, "limit"),
        ("/v1/markets/BTC-JPY/trades", {"limit": "５"}, "limit"),
        ("/v1/markets/BTC-JPY/orders/1_0", {}, "order_id"),
        ("/v1/accounts/1_0/orders", {}, "account"),
        ("/v1/accounts/1.0/balances", {}, "account"),
        ("/v1/accounts/9223372036854775808/balances", {}, "account"),
    ],
)
def test_a_read_with_a_malformed_number_is_refused(
    client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    response = client.get(path, params=params)

    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["message"]


def test_a_market_name_outside_its_grammar_is_refused_before_the_journal(
    client: TestClient, runtime: VenueRuntime
) -> None:
    last_seq = runtime.status().last_seq

    response = client.post(
        "/v1/admin/markets/btc-jpy/state", json={"state": "halted", **OPS}, headers=ADMIN
    )

    assert_refused(response, runtime, last_seq, "symbol")


# --- customer cancel-all, deposits, withdrawals -------------------------------------------


@pytest.mark.parametrize("account", [True, "1", 1.0, 2**63, 0])
def test_a_cancel_all_with_a_malformed_account_is_refused(
    client: TestClient, runtime: VenueRuntime, account: object
) -> None:
    last_seq = runtime.status().last_seq

    response = client.post("/v1/markets/BTC-JPY/cancel-all", json={"account": account})

    assert_refused(response, runtime, last_seq, "account")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "1e3"),
        ("amount", "1_000"),
        ("amount", " 1"),
        ("amount", 1000),
        ("account", True),
        ("account", "1"),
        ("account", 2**63),
        ("asset", "jpy"),
        ("asset", "ＪＰＹ"),
        ("asset", 1),
        ("reference", 5),
    ],
)
def test_a_deposit_outside_the_grammar_is_refused(
    client: TestClient, runtime: VenueRuntime, field: str, value: object
) -> None:
    last_seq = runtime.status().last_seq
    body = {"account": 1, "asset": "JPY", "amount": "1000", field: value}

    response = client.post("/v1/admin/deposits", json=body, headers=ADMIN)

    assert_refused(response, runtime, last_seq, field)


def test_a_withdrawal_with_an_exponent_amount_is_refused(
    client: TestClient, runtime: VenueRuntime
) -> None:
    last_seq = runtime.status().last_seq
    body = {"account": 1, "asset": "JPY", "amount": "1e2", "destination": "bank"}

    response = client.post("/v1/admin/withdrawals", json=body, headers=ADMIN)

    assert_refused(response, runtime, last_seq, "amount")


# --- admin routes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/admin/markets/BTC-JPY/state", {"state": "halted", "cancels_allowed": "no"},
         "cancels_allowed"),
        ("/v1/admin/markets/BTC-JPY/state", {"state": "auction", "auction_seconds": "5"},
         "auction_seconds"),
        ("/v1/admin/markets/BTC-JPY/state", {"state": "auction", "auction_seconds": True},
         "auction_seconds"),
        ("/v1/admin/markets/BTC-JPY/state", {"state": "halted", "incident_id": 7},
         "incident_id"),
        ("/v1/admin/kill-switch", {"engaged": "yes"}, "engaged"),
        ("/v1/admin/kill-switch", {"engaged": 1}, "engaged"),
        ("/v1/admin/assets/JPY/withdrawals-frozen", {"frozen": "true"}, "frozen"),
        ("/v1/admin/markets/BTC-JPY/resume-plan",
         {"phases": [{"state": "open", "min_seconds": True}]}, "min_seconds"),
        ("/v1/admin/markets/BTC-JPY/resume-plan",
         {"phases": [{"state": "open", "min_seconds": "60"}]}, "min_seconds"),
        ("/v1/admin/cancel-all", {"account": 2**63}, "account"),
        ("/v1/admin/cancel-all", {"account": True}, "account"),
        ("/v1/admin/cancel-all", {"market": "btc jpy"}, "market"),
        ("/v1/admin/markets/BTC-JPY/uncross", {"actor": 5, "reason": "x"}, "actor"),
    ],
)
def test_an_admin_request_of_the_wrong_json_type_is_refused(
    client: TestClient, runtime: VenueRuntime, path: str, body: dict[str, Any], field: str
) -> None:
    last_seq = runtime.status().last_seq

    response = client.post(path, json={**OPS, **body}, headers=ADMIN)

    assert_refused(response, runtime, last_seq, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"band_bps": [True]}, "band_bps"),
        ({"band_bps": ["500"]}, "band_bps"),
        ({"band_bps": [2**63]}, "band_bps"),
        ({"band_bps": [0]}, "band_bps"),
        ({"band_bps": [500], "pause_seconds": "60"}, "pause_seconds"),
        ({"band_bps": [500], "window_seconds": False}, "window_seconds"),
    ],
)
def test_a_breaker_request_of_the_wrong_json_type_is_refused(
    client: TestClient, runtime: VenueRuntime, body: dict[str, Any], field: str
) -> None:
    last_seq = runtime.status().last_seq

    response = client.put(
        "/v1/admin/markets/BTC-JPY/breaker", json={**OPS, **body}, headers=ADMIN
    )

    assert_refused(response, runtime, last_seq, field)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tick_size", "1e-3"),
        ("lot_size", "0.000_1"),
        ("min_qty", " 1"),
        ("max_qty", 100),
        ("maker_fee_bps", "10"),
        ("taker_fee_bps", True),
        ("taker_fee_bps", 2**63),
        ("base", "doge"),
    ],
)
def test_listing_a_market_outside_the_grammar_is_refused(
    client: TestClient, runtime: VenueRuntime, field: str, value: object
) -> None:
    last_seq = runtime.status().last_seq
    body = {
        "symbol": "ETH-BTC", "base": "ETH", "quote": "BTC", "tick_size": "0.0001",
        "lot_size": "0.01", "min_qty": "0.01", "max_qty": "100", field: value,
    }

    response = client.post("/v1/admin/markets", json=body, headers=ADMIN)

    assert_refused(response, runtime, last_seq, field)


@pytest.mark.parametrize("decimals", [True, "8", 8.0])
def test_listing_an_asset_with_decimals_of_the_wrong_type_is_refused(
    client: TestClient, runtime: VenueRuntime, decimals: object
) -> None:
    last_seq = runtime.status().last_seq

    response = client.post(
        "/v1/admin/assets", json={"code": "SOL", "decimals": decimals}, headers=ADMIN
    )

    assert_refused(response, runtime, last_seq, "decimals")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": 1, "client_order_id_prefix": "x"}, "kind"),
        ({"kind": "engine_raises", "client_order_id_prefix": True}, "client_order_id_prefix"),
    ],
)
def test_a_fault_request_of_the_wrong_json_type_is_refused(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/admin/faults", json=body, headers=ADMIN)

    assert response.status_code == 422
    assert field in response.json()["error"]["message"]


def test_the_openapi_document_states_the_decimal_grammar(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    qty = schemas["PlaceOrderRequest"]["properties"]["qty"]

    assert qty["pattern"] == "^(0|[1-9][0-9]*)(\\.[0-9]+)?$"
    assert "exponent" in qty["description"]
    account = schemas["PlaceOrderRequest"]["properties"]["account"]
    assert "maximum" in account and "2^63-1" in account["description"]
