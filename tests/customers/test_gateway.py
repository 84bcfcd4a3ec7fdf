"""The customer gateway in front of /v1: signatures, key -> account, permissions (issue 19).

Everything real: the venue runtime, its API with the fast order lane, the operations
service and its database; the client signs as a customer's key does."""

from __future__ import annotations

from customer_support import BYSTANDER, Bench

BUY = {"side": "buy", "type": "limit", "qty": "0.01", "price": "10000000"}


def test_a_signed_order_without_an_account_is_placed_on_the_keys_own_account(
        bench: Bench) -> None:
    key = bench.new_customer()
    before = bench.balance(key.account, "JPY")
    placed = bench.order(key, BUY)
    assert placed.status_code in {200, 201}, placed.text
    assert placed.json()["order"]["account"] == key.account
    assert bench.balance(key.account, "JPY")[1] > before[1]  # held for the resting buy


def test_a_wrong_signature_is_refused_with_a_clear_error_and_counted(bench: Bench) -> None:
    key = bench.new_customer()
    counted = bench.gateway.refused["signature_mismatch"]
    refused = bench.signed(key, "POST", "/v1/markets/BTC-JPY/orders", BUY,
                           secret="not the key's secret")
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert error["code"] == "signature_mismatch"
    assert "HMAC-SHA256" in error["message"] and error["message_ja"]
    assert bench.gateway.refused["signature_mismatch"] == counted + 1


def test_a_replayed_request_is_refused_and_counted(bench: Bench) -> None:
    key = bench.new_customer()
    counted = bench.gateway.refused["request_replayed"]
    stamp = bench.now_ms()
    first = bench.signed(key, "POST", "/v1/markets/BTC-JPY/orders", BUY, timestamp_ms=stamp)
    assert first.status_code in {200, 201}
    again = bench.signed(key, "POST", "/v1/markets/BTC-JPY/orders", BUY, timestamp_ms=stamp)
    assert again.status_code == 401 and again.json()["error"]["code"] == "request_replayed"
    assert bench.gateway.refused["request_replayed"] == counted + 1


def test_a_timestamp_outside_the_receive_window_is_refused_and_counted(bench: Bench) -> None:
    key = bench.new_customer()
    counted = bench.gateway.refused["timestamp_outside_window"]
    stale = bench.signed(key, "POST", "/v1/markets/BTC-JPY/orders", BUY,
                         timestamp_ms=bench.now_ms() - 60_000)
    assert stale.status_code == 401
    assert stale.json()["error"]["code"] == "timestamp_outside_window"
    assert bench.gateway.refused["timestamp_outside_window"] == counted + 1


def test_another_accounts_order_with_a_valid_key_is_refused_and_counted(bench: Bench) -> None:
    key = bench.new_customer()
    counted = bench.gateway.refused["other_account"]
    before = bench.balance(BYSTANDER, "JPY")
    refused = bench.order(key, {**BUY, "account": BYSTANDER})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "other_account"
    assert bench.balance(BYSTANDER, "JPY") == before
    assert bench.gateway.refused["other_account"] == counted + 1
    own = bench.order(key, {**BUY, "account": key.account})
    assert own.status_code in {200, 201}


def test_a_key_without_trade_permission_cannot_place_or_cancel_orders(bench: Bench) -> None:
    first = bench.new_customer()
    read_only = bench.new_key(first, ["read"])
    counted = bench.gateway.refused["permission_missing"]
    refused = bench.order(read_only, BUY)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_missing"
    cancel = bench.signed(read_only, "DELETE", "/v1/markets/BTC-JPY/orders/1")
    assert cancel.status_code == 403
    assert bench.gateway.refused["permission_missing"] == counted + 2
    own = f"/v1/accounts/{read_only.account}/balances"
    assert bench.signed(read_only, "GET", own).status_code == 200


def test_another_accounts_balances_and_orders_cannot_be_read(bench: Bench) -> None:
    key = bench.new_customer()
    assert bench.signed(key, "GET", f"/v1/accounts/{key.account}/balances").status_code == 200
    for path in (f"/v1/accounts/{BYSTANDER}/balances", f"/v1/accounts/{BYSTANDER}/orders"):
        refused = bench.signed(key, "GET", path)
        assert refused.status_code == 403, path
        assert refused.json()["error"]["code"] == "other_account"


def test_cancelling_names_the_keys_own_account_and_refuses_another(bench: Bench) -> None:
    key = bench.new_customer()
    placed = bench.order(key, BUY).json()["order"]
    other = bench.signed(key, "DELETE",
                         f"/v1/markets/BTC-JPY/orders/{placed['order_id']}?account={BYSTANDER}")
    assert other.status_code == 403
    cancelled = bench.signed(key, "DELETE", f"/v1/markets/BTC-JPY/orders/{placed['order_id']}")
    assert cancelled.status_code == 200, cancelled.text


def test_unsigned_account_requests_are_refused_but_market_data_is_public(bench: Bench) -> None:
    unsigned = bench.client.post("/v1/markets/BTC-JPY/orders",
                                 json={**BUY, "account": BYSTANDER})
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "signature_missing"
    assert bench.client.get(f"/v1/accounts/{BYSTANDER}/balances").status_code == 401
    assert bench.client.get("/v1/markets").status_code == 200
    assert bench.client.get("/v1/markets/BTC-JPY/depth").status_code == 200


def test_a_revoked_key_stops_working_at_once(bench: Bench) -> None:
    first = bench.new_customer()
    second = bench.new_key(first, ["read", "trade"])
    assert bench.order(second, BUY).status_code in {200, 201}
    revoked = bench.signed(first, "DELETE", f"/api/customers/me/keys/{second.key_id}")
    assert revoked.status_code == 204
    refused = bench.order(second, BUY)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unknown_key"


def test_repeated_bad_signatures_on_one_account_reach_detection_naming_it(
        bench: Bench) -> None:
    key = bench.new_customer()
    for attempt in range(4):  # the bench's threshold is 3 within a minute
        bench.signed(key, "POST", "/v1/markets/BTC-JPY/orders", BUY,
                     secret=f"guess {attempt}")

    def raised() -> bool:
        return any(signal.name == "security.customer_signature_failures"
                   and signal.labels == {"account": str(key.account)}
                   for signal in bench.signals)

    assert bench.wait_for(raised)


def test_the_first_use_from_a_new_address_sends_the_customer_a_notice(bench: Bench) -> None:
    key = bench.new_customer(phrase="green kite")
    assert bench.signed(key, "GET", f"/v1/accounts/{key.account}/balances").status_code == 200

    def noticed() -> list[dict[str, str]]:
        listed = bench.signed(key, "GET", "/api/customers/me/notices").json()["items"]
        return [notice for notice in listed if notice["kind"] == "new_device"]

    assert bench.wait_for(lambda: bool(noticed()))
    [notice] = noticed()
    assert "green kite" in notice["body_en"] and "green kite" in notice["body_ja"]


def test_a_key_reads_its_own_order_by_id_and_another_accounts_order_is_not_shown(
        bench: Bench) -> None:
    mine, theirs = bench.new_customer(), bench.new_customer()
    placed = bench.order(theirs, BUY)
    assert placed.status_code in {200, 201}, placed.text
    order_id = placed.json()["order"]["order_id"]
    path = f"/v1/markets/BTC-JPY/orders/{order_id}"

    own = bench.signed(theirs, "GET", path)
    other = bench.signed(mine, "GET", path)
    named = bench.signed(mine, "GET", f"{path}?account={theirs.account}")

    assert own.status_code == 200 and own.json()["account"] == theirs.account
    assert other.status_code == 404  # as if not open: nothing about another's order
    assert other.json()["error"]["code"] == "unknown_order"
    assert named.status_code == 403  # naming another account is refused outright
