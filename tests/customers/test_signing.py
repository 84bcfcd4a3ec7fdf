"""The signature check on its own: pure, with the moment passed in."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from haltguard.customers.signing import (
    KeyGrant,
    Permission,
    Refusal,
    ReplayGuard,
    Verdict,
    check_signed,
    permits,
    sign,
)

SECRET = b"s3cret-of-key-one"
NOW_MS = 1_765_000_000_000
WINDOW_MS = 5_000
GRANT = KeyGrant(key_id="hgk_one", account=7, secret=SECRET,
                 permissions=frozenset({Permission.READ, Permission.TRADE}))
BODY = b'{"side":"buy","type":"limit","qty":"1","price":"100"}'
TARGET = "/v1/markets/BTC-JPY/orders"


def _check(grant: KeyGrant | None = GRANT, *, timestamp_ms: int = NOW_MS,
           signature: str | None = None, body: bytes = BODY, now_ms: int = NOW_MS,
           replay: ReplayGuard | None = None, address: str = "203.0.113.9") -> Verdict:
    sent = signature if signature is not None else sign(SECRET, timestamp_ms, "POST", TARGET,
                                                         body)
    return check_signed(grant, timestamp=str(timestamp_ms).encode(), signature=sent.encode(),
                        method="POST", target=TARGET, body=body, address=address,
                        now_ms=now_ms, window_ms=WINDOW_MS,
                        replay=replay if replay is not None else ReplayGuard(WINDOW_MS))


def test_a_correctly_signed_request_within_the_window_is_accepted() -> None:
    verdict = _check()
    assert verdict.accepted and verdict.grant is GRANT


def test_a_wrong_signature_is_refused() -> None:
    assert _check(signature=sign(b"another secret", NOW_MS, "POST", TARGET, BODY)).refusal \
        is Refusal.BAD_SIGNATURE


def test_a_body_changed_after_signing_is_refused() -> None:
    signature = sign(SECRET, NOW_MS, "POST", TARGET, BODY)
    assert _check(signature=signature, body=BODY.replace(b'"1"', b'"100"')).refusal \
        is Refusal.BAD_SIGNATURE


def test_a_replayed_request_is_refused_even_inside_the_window() -> None:
    guard = ReplayGuard(WINDOW_MS)
    assert _check(replay=guard).accepted
    assert _check(replay=guard, now_ms=NOW_MS + 10).refusal is Refusal.REPLAYED


def test_a_timestamp_outside_the_window_is_refused_on_either_side() -> None:
    assert _check(timestamp_ms=NOW_MS - WINDOW_MS - 1).refusal is Refusal.STALE
    assert _check(timestamp_ms=NOW_MS + WINDOW_MS + 1).refusal is Refusal.STALE
    assert _check(timestamp_ms=NOW_MS - WINDOW_MS).accepted


def test_an_unknown_revoked_or_expired_key_is_refused() -> None:
    assert _check(None).refusal is Refusal.UNKNOWN_KEY
    revoked = KeyGrant("hgk_one", 7, SECRET, frozenset({Permission.READ}), revoked=True)
    assert _check(revoked).refusal is Refusal.REVOKED
    expired = KeyGrant("hgk_one", 7, SECRET, frozenset({Permission.READ}), expires_ms=NOW_MS)
    assert _check(expired).refusal is Refusal.EXPIRED


def test_a_key_used_outside_its_ip_allow_list_is_refused() -> None:
    pinned = KeyGrant("hgk_one", 7, SECRET, frozenset({Permission.READ}),
                      networks=(ipaddress.ip_network("198.51.100.0/24"),))
    assert _check(pinned).refusal is Refusal.ADDRESS
    assert _check(pinned, address="198.51.100.20").accepted


def test_a_malformed_timestamp_or_signature_is_refused_before_any_hashing() -> None:
    assert _check(signature="abc").refusal is Refusal.MALFORMED
    verdict = check_signed(GRANT, timestamp=b"12x", signature=b"0" * 64, method="POST",
                           target=TARGET, body=BODY, address="1.2.3.4", now_ms=NOW_MS,
                           window_ms=WINDOW_MS, replay=ReplayGuard(WINDOW_MS))
    assert verdict.refusal is Refusal.MALFORMED


def test_refused_signatures_are_never_remembered_so_forgers_cannot_fill_the_guard() -> None:
    guard = ReplayGuard(WINDOW_MS, entries_max=1)
    for attempt in range(5):
        assert _check(replay=guard, signature=f"{attempt:064x}").refusal \
            is Refusal.BAD_SIGNATURE
    assert len(guard) == 0
    assert _check(replay=guard).accepted


def test_a_full_replay_guard_refuses_rather_than_forgets() -> None:
    guard = ReplayGuard(WINDOW_MS, entries_max=1)
    assert _check(replay=guard).accepted
    assert _check(replay=guard, timestamp_ms=NOW_MS + 1).refusal is Refusal.REPLAY_GUARD_FULL
    # once the first signature's timestamp has left the window it is forgotten
    later = NOW_MS + 2 * WINDOW_MS + 1
    assert _check(replay=guard, timestamp_ms=later, now_ms=later).accepted


def test_permissions_and_the_self_lock_decide_what_a_key_may_do() -> None:
    assert permits(GRANT, Permission.TRADE) is None
    assert permits(GRANT, Permission.WITHDRAW) is Refusal.PERMISSION
    read_only = KeyGrant("hgk_two", 7, SECRET, frozenset({Permission.READ}))
    assert permits(read_only, Permission.TRADE) is Refusal.PERMISSION
    locked = KeyGrant("hgk_one", 7, SECRET, GRANT.permissions, locked=True)
    assert permits(locked, Permission.READ) is None
    assert permits(locked, Permission.TRADE) is Refusal.LOCKED


def test_the_precomputed_pads_give_exactly_hmac_sha256() -> None:
    for secret in (b"", b"k", b"x" * 64, b"y" * 65, SECRET):
        grant = KeyGrant("hgk_x", 1, secret, frozenset())
        for message in (b"", BODY, b"z" * 1000):
            assert grant.mac(message) == hmac.new(secret, message, hashlib.sha256).digest()
