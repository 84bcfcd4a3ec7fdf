"""The customer's own API: second factor, withdrawals with allow-listed addresses and their
hold, review above a limit, the self-lock, notices with the right anti-phishing phrase, and
the security centre's pages (issue 19)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from customer_support import HOLD_S, REVIEW_LIMIT_BTC_MINOR, Bench, Key

from haltguard.venue.control import VenueControlError

ADDRESS = "bc1qexampleaddressofthecustomer0000000"
BTC_MINOR = 100_000_000


def _withdrawer(bench: Bench, phrase: str = "") -> Key:
    first = bench.new_customer(phrase=phrase)
    bench.turn_on_2fa(first)
    return bench.new_key(first, ["read", "withdraw"], code=bench.code(first.account))


def _allow(bench: Bench, key: Key, address: str = ADDRESS) -> None:
    added = bench.signed(key, "POST", "/api/customers/me/addresses",
                         {"asset": "BTC", "address": address, "code": bench.code(key.account)})
    assert added.status_code == 201, added.text


def _withdraw(bench: Bench, key: Key, amount_minor: int, code: str | None = None,
              address: str = ADDRESS) -> dict[str, object]:
    response = bench.signed(key, "POST", "/api/customers/me/withdrawals", {
        "asset": "BTC", "amount_minor": amount_minor, "address": address,
        "code": bench.code(key.account) if code is None else code})
    body: dict[str, object] = response.json()
    body["status_code"] = response.status_code
    return body


def test_a_key_with_the_withdraw_permission_needs_the_second_factor(bench: Bench) -> None:
    first = bench.new_customer()
    refused = bench.signed(first, "POST", "/api/customers/me/keys",
                           {"permissions": ["withdraw"], "code": ""})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "second_factor_required"
    bench.turn_on_2fa(first)
    wrong = bench.signed(first, "POST", "/api/customers/me/keys",
                         {"permissions": ["withdraw"], "code": "000000"})
    assert wrong.json()["error"]["code"] == "second_factor_wrong"
    assert bench.new_key(first, ["withdraw"], code=bench.code(first.account)).account \
        == first.account


def test_a_new_address_cannot_be_used_before_its_hold_ends(bench: Bench) -> None:
    key = _withdrawer(bench)
    _allow(bench, key)
    before = bench.balance(key.account, "BTC")
    on_hold = _withdraw(bench, key, BTC_MINOR // 10)
    assert on_hold["status_code"] == 409
    assert on_hold["error"]["code"] == "address_on_hold"  # type: ignore[index]
    assert bench.balance(key.account, "BTC") == before
    bench.clock.advance(timedelta(seconds=HOLD_S))
    sent = _withdraw(bench, key, BTC_MINOR // 10)
    assert sent["status_code"] == 201 and sent["status"] == "sent", sent
    assert bench.balance(key.account, "BTC")[0] == before[0] - BTC_MINOR // 10


def test_an_address_not_on_the_allow_list_is_refused(bench: Bench) -> None:
    key = _withdrawer(bench)
    refused = _withdraw(bench, key, 1_000, address="bc1qsomeoneelse")
    assert refused["status_code"] == 403
    assert refused["error"]["code"] == "address_not_allowed"  # type: ignore[index]


def test_a_withdrawal_without_the_second_factor_is_refused(bench: Bench) -> None:
    key = _withdrawer(bench)
    _allow(bench, key)
    bench.clock.advance(timedelta(seconds=HOLD_S))
    before = bench.balance(key.account, "BTC")
    refused = _withdraw(bench, key, 1_000, code="123456")
    assert refused["status_code"] == 403
    assert refused["error"]["code"] == "second_factor_wrong"  # type: ignore[index]
    assert bench.balance(key.account, "BTC") == before


def test_a_recovery_code_stands_in_for_the_second_factor_once(bench: Bench) -> None:
    first = bench.new_customer()
    codes = bench.turn_on_2fa(first)
    key = bench.new_key(first, ["read", "withdraw"], code=codes[0])
    again = bench.signed(first, "POST", "/api/customers/me/keys",
                         {"permissions": ["withdraw"], "code": codes[0]})
    assert again.json()["error"]["code"] == "second_factor_wrong"
    assert key.account == first.account


def test_a_key_without_the_withdraw_permission_cannot_withdraw(bench: Bench) -> None:
    first = bench.new_customer()
    bench.turn_on_2fa(first)
    refused = _withdraw(bench, first, 1_000)
    assert refused["status_code"] == 403
    assert refused["error"]["code"] == "permission_missing"  # type: ignore[index]


def test_a_withdrawal_above_the_review_limit_is_held_until_a_commander_approves(
        bench: Bench) -> None:
    key = _withdrawer(bench)
    _allow(bench, key)
    bench.clock.advance(timedelta(seconds=HOLD_S))
    before = bench.balance(key.account, "BTC")
    held = _withdraw(bench, key, REVIEW_LIMIT_BTC_MINOR + 1)
    assert held["status_code"] == 201 and held["status"] == "held", held
    assert bench.balance(key.account, "BTC") == before
    path = f"/api/customers/withdrawals/{held['id']}/approve"
    support = bench.client.post(path, headers=bench.operator("sam"))
    assert support.status_code == 403  # support verifies customers; commanders send money
    approved = bench.client.post(path, headers=bench.operator("carol"))
    assert approved.status_code == 200 and approved.json()["status"] == "sent", approved.text
    assert bench.balance(key.account, "BTC")[0] == before[0] - REVIEW_LIMIT_BTC_MINOR - 1


def test_a_locked_account_refuses_everything_but_reads(bench: Bench) -> None:
    key = _withdrawer(bench)
    trader = bench.new_customer()
    _allow(bench, key)
    bench.clock.advance(timedelta(seconds=HOLD_S))
    locked = bench.signed(key, "POST", "/api/customers/me/lock", {"reason": "phone stolen"})
    assert locked.status_code == 200 and locked.json()["problems"] == []
    refused = _withdraw(bench, key, 1_000)
    assert refused["status_code"] == 403
    assert refused["error"]["code"] == "account_locked"  # type: ignore[index]
    with pytest.raises(VenueControlError, match="frozen"):  # frozen at the venue too
        bench.protection_venue().withdraw(key.account, "BTC", 1_000, destination=ADDRESS,
                                          reference="x")
    first_trade_key = bench.new_key(trader, ["read", "trade"])  # another account: unaffected
    assert bench.order(first_trade_key, {"side": "buy", "qty": "0.01",
                                         "price": "10000000"}).status_code in {200, 201}
    reads = bench.signed(key, "GET", f"/v1/accounts/{key.account}/balances")
    assert reads.status_code == 200
    adding = bench.signed(key, "POST", "/api/customers/me/addresses",
                          {"asset": "BTC", "address": "bc1qnew",
                           "code": bench.code(key.account)})
    assert adding.json()["error"]["code"] == "account_locked"


def test_a_locked_accounts_orders_are_refused_at_the_gateway(bench: Bench) -> None:
    key = bench.new_customer()
    assert bench.signed(key, "POST", "/api/customers/me/lock", {}).status_code == 200
    refused = bench.order(key, {"side": "buy", "qty": "0.01", "price": "10000000"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "account_locked"


def test_only_support_unlocks_and_says_how_the_customer_was_verified(bench: Bench) -> None:
    key = _withdrawer(bench)
    bench.signed(key, "POST", "/api/customers/me/lock", {})
    path = f"/api/customers/{key.account}/unlock"
    viewer = bench.client.post(path, headers=bench.operator("vic"), json={"verification": "x"})
    assert viewer.status_code == 403
    unlocked = bench.client.post(path, headers=bench.operator("sam"),
                                 json={"verification": "video call, ID checked"})
    assert unlocked.status_code == 204, unlocked.text
    _allow(bench, key)
    bench.clock.advance(timedelta(seconds=HOLD_S))
    assert _withdraw(bench, key, 1_000)["status"] == "sent"


def test_notices_carry_the_accounts_own_phrase_and_never_anothers(bench: Bench) -> None:
    seven = _withdrawer(bench, phrase="blue heron 7")
    eight = _withdrawer(bench, phrase="red fox 8")
    _allow(bench, seven)
    _allow(bench, eight, "bc1qeightsaddress")
    for key, own, other in ((seven, "blue heron 7", "red fox 8"),
                            (eight, "red fox 8", "blue heron 7")):
        notices = bench.signed(key, "GET", "/api/customers/me/notices").json()["items"]
        kinds = {notice["kind"] for notice in notices}
        assert {"new_key", "new_address", "security_changed"} <= kinds
        for notice in notices:
            assert own in notice["body_ja"] and own in notice["body_en"]
            assert other not in notice["body_ja"] + notice["body_en"]


def test_support_creates_a_customer_whose_first_key_trades_its_own_account(
        bench: Bench) -> None:
    account = bench.fresh_account()
    created = bench.client.post("/api/customers", headers=bench.operator("sam"), json={
        "account": account, "email": "nine@example.com", "anti_phishing_phrase": "nine"})
    assert created.status_code == 201, created.text
    first = created.json()["first_key"]
    assert set(first["permissions"]) == {"read", "trade"}
    key = Key(first["key_id"], first["secret"], account)
    placed = bench.order(key, {"side": "sell", "qty": "0.01", "price": "90000000"})
    assert placed.json()["order"]["account"] == account
    listed = bench.signed(key, "GET", "/api/customers/me/keys").json()
    assert "secret" not in listed["items"][0]


def test_the_security_centre_and_terms_are_public_in_both_languages(bench: Bench) -> None:
    page = bench.client.get("/security")
    assert page.status_code == 200
    for text in ("フィッシング", "phishing", "exchange.example", "no-reply@exchange.example",
                 "二段階認証", "two-factor", "Spreading your holdings"):
        assert text in page.text
    published = bench.client.post("/api/customers/terms", headers=bench.operator("carol"),
                                  json={"version": "2026-12", "text_ja": "第1条 規約",
                                        "text_en": "Article 1. Terms"})
    assert published.status_code == 201, published.text
    assert bench.client.post("/api/customers/terms", headers=bench.operator("sam"), json={
        "version": "x", "text_ja": "a", "text_en": "b"}).status_code == 403
    terms = bench.client.get("/security/terms").text
    assert "2026-12" in terms and "第1条 規約" in terms and "Article 1. Terms" in terms
    key = bench.new_customer()
    accepted = bench.signed(key, "POST", "/api/customers/me/terms", {"version": "2026-12"})
    assert accepted.status_code == 204
    me = bench.signed(key, "GET", "/api/customers/me").json()
    assert me["accepted_terms"] == ["2026-12"]
