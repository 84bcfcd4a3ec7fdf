"""Login throttling over HTTP: guessing is slowed per address, per username and overall; the
answers do not tell existing usernames from unknown ones; nobody can lock the right operator
out; blocks and waits are listed and lifted by an admin, audited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from security_helpers import SQLITE_ONLY, ManualNow, build_app
from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.session import session_scope
from haltguard.security import audit, totp
from haltguard.security.config import SecuritySettings
from haltguard.security.dependencies import login_throttle_of
from haltguard.security.events import SecurityEvent
from haltguard.security.permissions import Role
from haltguard.security.testing import ProvisionedOperator, fast_test_settings, provision_operator

pytestmark = SQLITE_ONLY

OWNER_ADDRESS = "198.51.100.20"
ATTACKER_ADDRESS = "203.0.113.9"
TRAVEL_ADDRESS = "192.0.2.44"


@pytest.fixture
def settings() -> SecuritySettings:
    return fast_test_settings(lockout_failures_max=3, lockout_wait_s_min=30,
                              source_failures_max=50)


@pytest.fixture
def app(session_factory: sessionmaker[Session], settings: SecuritySettings,
        now: ManualNow) -> FastAPI:
    return build_app(session_factory, settings, now)


def client_from(app: FastAPI, address: str) -> TestClient:
    return TestClient(app, base_url="https://testserver", client=(address, 50000))


@pytest.fixture
def attacker(app: FastAPI) -> Iterator[TestClient]:
    with client_from(app, ATTACKER_ADDRESS) as client:
        yield client


def attempt(client: TestClient, username: str, password: str, code: str) -> tuple[int, str]:
    response = client.post("/api/auth/login", json={
        "username": username, "password": password, "totp_code": code})
    body = response.json()
    code_seen = body["error"]["code"] if "error" in body else "ok"
    return response.status_code, code_seen


def log_in(app: FastAPI, who: ProvisionedOperator, now: ManualNow, address: str) -> int:
    with client_from(app, address) as client:
        return attempt(client, who.username, who.password,
                       totp.code_at(who.totp_secret, now()))[0]


def test_an_existing_and_an_unknown_username_get_the_same_answers_after_failures(
    attacker: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = provision_operator(session_factory, Role.RESPONDER, username="akiko.sato",
                             settings=settings, now=now())
    existing = [attempt(attacker, who.username, f"wrong password {n}", "000000")
                for n in range(6)]
    unknown = [attempt(attacker, "nobody.here", f"wrong password {n}", "000000")
               for n in range(6)]
    assert existing == unknown
    assert existing[:3] == [(401, "login_failed")] * 3
    assert existing[3:] == [(429, "login_throttled")] * 3


def test_a_held_back_answer_says_when_to_retry_in_both_languages(
    attacker: TestClient, now: ManualNow,
) -> None:
    for n in range(3):
        attempt(attacker, "nobody.here", f"wrong password {n}", "000000")
    response = attacker.post("/api/auth/login", json={
        "username": "nobody.here", "password": "wrong password", "totp_code": "000000"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"
    message = response.json()["error"]["message"]
    assert "wait 30 s" in message and "30 秒後に再試行" in message


def test_a_locked_account_still_lets_its_owner_in_from_a_known_network(
    app: FastAPI, attacker: TestClient, session_factory: sessionmaker[Session],
    settings: SecuritySettings, now: ManualNow,
) -> None:
    admin = provision_operator(session_factory, Role.ADMIN, username="root.admin",
                               settings=settings, now=now())
    assert log_in(app, admin, now, OWNER_ADDRESS) == 200
    now.advance(timedelta(seconds=31))
    for n in range(8):
        attempt(attacker, admin.username, f"wrong password {n}", "000000")
    assert attempt(attacker, admin.username, admin.password,
                   totp.code_at(admin.totp_secret, now()))[0] != 200
    assert log_in(app, admin, now, OWNER_ADDRESS) == 200


def test_from_a_new_network_the_owner_waits_out_the_backoff_then_gets_in(
    app: FastAPI, attacker: TestClient, session_factory: sessionmaker[Session],
    settings: SecuritySettings, now: ManualNow,
) -> None:
    who = provision_operator(session_factory, Role.RESPONDER, username="akiko.sato",
                             settings=settings, now=now())
    for n in range(3):
        attempt(attacker, who.username, f"wrong password {n}", "000000")
    assert log_in(app, who, now, TRAVEL_ADDRESS) == 429
    now.advance(timedelta(seconds=30))
    assert log_in(app, who, now, TRAVEL_ADDRESS) == 200


def test_each_further_failure_doubles_the_wait_up_to_the_cap(
    attacker: TestClient, now: ManualNow, settings: SecuritySettings,
) -> None:
    waits = []
    for n in range(10):
        attempt(attacker, "nobody.here", f"wrong password {n}", "000000")
        response = attacker.post("/api/auth/login", json={
            "username": "nobody.here", "password": "x" * 12, "totp_code": "000000"})
        if response.status_code == 429:
            wait_s = int(response.headers["Retry-After"])
            waits.append(wait_s)
            now.advance(timedelta(seconds=wait_s))
    assert waits[:5] == [30, 60, 120, 240, 480]
    assert max(waits) == settings.lockout_minutes * 60


def test_failed_logins_from_one_address_are_throttled_whatever_usernames_it_tries(
    session_factory: sessionmaker[Session], now: ManualNow,
) -> None:
    app = build_app(session_factory, fast_test_settings(source_failures_max=10), now)
    with client_from(app, ATTACKER_ADDRESS) as attacker:
        answers = [attempt(attacker, f"guess-{n}", "Winter2026!", "000000")[0]
                   for n in range(30)]
    assert answers[:10] == [401] * 10
    assert set(answers[10:]) == {429}
    with client_from(app, OWNER_ADDRESS) as elsewhere:
        assert attempt(elsewhere, "guess-99", "Winter2026!", "000000")[0] == 401


def test_the_login_route_checks_at_most_its_overall_rate(
    session_factory: sessionmaker[Session], now: ManualNow,
) -> None:
    settings = fast_test_settings(login_attempts_per_s=2, login_attempts_burst=3)
    app = build_app(session_factory, settings, now)
    answers = []
    for n in range(5):
        with client_from(app, f"203.0.113.{n + 1}") as client:
            answers.append(attempt(client, f"guess-{n}", "Winter2026!", "000000")[0])
    assert answers == [401, 401, 401, 429, 429]
    now.advance(timedelta(seconds=1))
    with client_from(app, "203.0.113.77") as client:
        assert attempt(client, "guess-77", "Winter2026!", "000000")[0] == 401


def test_enable_clears_the_lockout_of_an_operator_who_was_not_disabled(
    app: FastAPI, attacker: TestClient, session_factory: sessionmaker[Session],
    settings: SecuritySettings, now: ManualNow,
) -> None:
    admin = provision_operator(session_factory, Role.ADMIN, username="root.admin",
                               settings=settings, now=now())
    who = provision_operator(session_factory, Role.RESPONDER, username="akiko.sato",
                             settings=settings, now=now())
    for n in range(3):
        attempt(attacker, who.username, f"wrong password {n}", "000000")
    assert log_in(app, who, now, TRAVEL_ADDRESS) != 200
    with client_from(app, OWNER_ADDRESS) as client:
        enabled = client.post(f"/api/operators/{who.username}/enable", headers=admin.headers)
    assert enabled.status_code == 200
    assert log_in(app, who, now, TRAVEL_ADDRESS) == 200
    with session_scope(session_factory) as session:
        entries, _ = audit.list_entries(session, action=SecurityEvent.OPERATOR_UNLOCKED)
        assert entries[0].actor == "operator:root.admin"


def test_a_login_block_is_listed_and_lifted_early_by_an_admin_and_audited(
    app: FastAPI, attacker: TestClient, session_factory: sessionmaker[Session],
    settings: SecuritySettings, now: ManualNow,
) -> None:
    admin = provision_operator(session_factory, Role.ADMIN, username="root.admin",
                               settings=settings, now=now())
    commander = provision_operator(session_factory, Role.INCIDENT_COMMANDER,
                                   username="kenji.ic", settings=settings, now=now())
    login_throttle_of(app).block(ATTACKER_ADDRESS, 3600, reason="rule credential-stuffing",
                                 actor="system:detection", now=now())
    assert attempt(attacker, "guess-1", "Winter2026!", "000000") == (429, "login_throttled")
    with client_from(app, OWNER_ADDRESS) as client:
        listed = client.get("/api/login-blocks", headers=commander.headers)
        refused = client.post("/api/login-blocks/lift", headers=commander.headers,
                              json={"key": f"address:{ATTACKER_ADDRESS}", "reason": "x"})
        lifted = client.post("/api/login-blocks/lift", headers=admin.headers, json={
            "key": f"address:{ATTACKER_ADDRESS}", "reason": "the provider took the bot down"})
        again = client.post("/api/login-blocks/lift", headers=admin.headers, json={
            "key": f"address:{ATTACKER_ADDRESS}", "reason": "twice"})
    assert listed.status_code == 200
    [block] = listed.json()["items"]
    assert block["key"] == f"address:{ATTACKER_ADDRESS}" and block["kind"] == "block"
    assert block["refused"] == 0 and "credential-stuffing" in block["reason"]
    assert refused.status_code == 403
    assert lifted.status_code == 200 and lifted.json()[0]["kind"] == "block"
    assert again.status_code == 404
    assert attempt(attacker, "guess-2", "Winter2026!", "000000") == (401, "login_failed")
    with session_scope(session_factory) as session:
        [entry], _ = audit.list_entries(session, action=SecurityEvent.LOGIN_HOLD_LIFTED)
        assert entry.actor == "operator:root.admin" and entry.target == \
            f"address:{ATTACKER_ADDRESS}"
        assert audit.entry_details(entry)["reason"] == "the provider took the bot down"


def test_a_blocked_address_still_lets_an_operator_in_who_logged_in_from_it_before(
    app: FastAPI, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = provision_operator(session_factory, Role.RESPONDER, username="akiko.sato",
                             settings=settings, now=now())
    assert log_in(app, who, now, OWNER_ADDRESS) == 200
    now.advance(timedelta(seconds=31))
    login_throttle_of(app).block(OWNER_ADDRESS, 3600, reason="rule credential-stuffing",
                                 actor="system:detection", now=now())
    with client_from(app, OWNER_ADDRESS) as client:
        assert attempt(client, "guess-1", "Winter2026!", "000000")[0] == 429
    assert log_in(app, who, now, OWNER_ADDRESS) == 200


def test_a_guesser_sharing_the_owners_address_is_still_held_back_per_account(
    app: FastAPI, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = provision_operator(session_factory, Role.RESPONDER, username="akiko.sato",
                             settings=settings, now=now())
    assert log_in(app, who, now, OWNER_ADDRESS) == 200
    with client_from(app, OWNER_ADDRESS) as insider:
        answers = [attempt(insider, who.username, f"wrong password {n}", "000000")[0]
                   for n in range(5)]
    assert answers == [401, 401, 401, 429, 429]


def test_the_admin_api_can_block_an_address_and_rejects_what_is_not_one(
    app: FastAPI, attacker: TestClient, session_factory: sessionmaker[Session],
    settings: SecuritySettings, now: ManualNow,
) -> None:
    admin = provision_operator(session_factory, Role.ADMIN, username="root.admin",
                               settings=settings, now=now())
    with client_from(app, OWNER_ADDRESS) as client:
        bad = client.post("/api/login-blocks", headers=admin.headers, json={
            "address": "not-an-address", "duration_s": 60, "reason": "x"})
        made = client.post("/api/login-blocks", headers=admin.headers, json={
            "address": ATTACKER_ADDRESS, "duration_s": 60, "reason": "guessing all night"})
    assert bad.status_code == 422 and "not an IP address" in bad.json()["error"]["message"]
    assert made.status_code == 201
    assert attempt(attacker, "guess-1", "Winter2026!", "000000")[0] == 429
    now.advance(timedelta(seconds=60))
    assert attempt(attacker, "guess-1", "Winter2026!", "000000")[0] == 401
