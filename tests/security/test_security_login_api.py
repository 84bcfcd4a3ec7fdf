"""Login over HTTP: password and TOTP, replay refused, failed-login waits, sessions."""

from __future__ import annotations

import threading
from datetime import timedelta

from fastapi.testclient import TestClient
from security_helpers import SQLITE_ONLY, ManualNow
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.session import session_scope
from haltguard.security import audit, flows, totp
from haltguard.security.config import SESSION_COOKIE_NAME, SecuritySettings
from haltguard.security.events import SecurityEvent
from haltguard.security.models import AuditEntry, OperatorSession
from haltguard.security.permissions import Role
from haltguard.security.testing import ProvisionedOperator, provision_operator
from haltguard.security.tokens import secret_hash


def make_operator(
    factory: sessionmaker[Session], settings: SecuritySettings, now: ManualNow,
    role: Role = Role.RESPONDER,
) -> ProvisionedOperator:
    return provision_operator(factory, role, username="akiko.sato", settings=settings, now=now())


def login(
    client: TestClient, who: ProvisionedOperator, now: ManualNow, *,
    password: str | None = None, code: str | None = None,
) -> tuple[int, dict[str, object]]:
    response = client.post(
        "/api/auth/login",
        json={
            "username": who.username,
            "password": who.password if password is None else password,
            "totp_code": totp.code_at(who.totp_secret, now()) if code is None else code,
        },
    )
    body: dict[str, object] = response.json()
    return response.status_code, body


def error_code(body: dict[str, object]) -> object:
    error = body.get("error")
    assert isinstance(error, dict), body
    return error["code"]


def audit_actions(factory: sessionmaker[Session]) -> list[str]:
    with session_scope(factory) as session:
        entries = session.execute(select(AuditEntry).order_by(AuditEntry.index)).scalars()
        return [entry.action for entry in entries]


@SQLITE_ONLY
def test_login_with_password_and_code_opens_a_session(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    status, body = login(client, who, now)
    assert status == 200, body
    operator = body["operator"]
    assert isinstance(operator, dict) and operator["username"] == "akiko.sato"
    me = client.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["role"] == "responder"
    assert SecurityEvent.LOGIN_SUCCEEDED in audit_actions(session_factory)


@SQLITE_ONLY
def test_session_cookie_is_httponly_strict_and_stored_only_as_a_hash(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    response = client.post(
        "/api/auth/login",
        json={"username": who.username, "password": who.password,
              "totp_code": totp.code_at(who.totp_secret, now())},
    )
    set_cookie = response.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "secure" in set_cookie
    secret = response.cookies[SESSION_COOKIE_NAME]
    with session_scope(session_factory) as session:
        stored = session.execute(select(OperatorSession)).scalar_one()
        assert stored.secret_hash == secret_hash(secret) and stored.secret_hash != secret


@SQLITE_ONLY
def test_wrong_password_is_refused_without_saying_which_part_was_wrong(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    status, body = login(client, who, now, password="not the password at all")
    assert status == 401 and error_code(body) == "login_failed"
    assert client.get("/api/auth/me").status_code == 401


@SQLITE_ONLY
def test_unknown_username_gets_the_same_refusal_and_is_audited(
    client: TestClient, session_factory: sessionmaker[Session], now: ManualNow,
) -> None:
    response = client.post(
        "/api/auth/login",
        json={"username": "nobody", "password": "whatever whatever", "totp_code": "123456"},
    )
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "login_failed", "message": "wrong username, password or code",
    }
    with session_scope(session_factory) as session:
        entries, _ = audit.list_entries(session)
        assert entries[0].target == "operator:nobody"
        assert audit.entry_details(entries[0])["reason"] == "unknown username"


@SQLITE_ONLY
def test_right_password_with_wrong_code_is_refused(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    wrong = "000000" if totp.code_at(who.totp_secret, now()) != "000000" else "111111"
    status, body = login(client, who, now, code=wrong)
    assert status == 401 and error_code(body) == "login_failed"


def test_same_code_cannot_log_in_twice(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    code = totp.code_at(who.totp_secret, now())
    assert login(client, who, now, code=code)[0] == 200
    now.advance(timedelta(seconds=10))
    status, body = login(client, who, now, code=code)
    assert status == 401 and error_code(body) == "login_failed"
    now.advance(timedelta(seconds=30))
    assert login(client, who, now)[0] == 200


def test_repeated_failures_hold_the_account_back_then_it_gets_in_after_the_wait(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    for attempt in range(1, settings.lockout_failures_max + 1):
        status, _ = login(client, who, now, password=f"wrong password {attempt}")
        assert status == 401
    now.advance(timedelta(seconds=10))
    status, body = login(client, who, now)
    assert status == 429 and error_code(body) == "login_throttled", (
        "right credentials from a network the account never logged in from wait too")
    assert "wait 20 s" in str(body)
    now.advance(timedelta(seconds=settings.lockout_wait_s_min))
    assert login(client, who, now)[0] == 200
    actions = audit_actions(session_factory)
    assert actions.count(SecurityEvent.LOGIN_FAILED) == settings.lockout_failures_max
    assert actions.count(SecurityEvent.LOCKED_OUT) == 1
    assert actions.count(SecurityEvent.LOGIN_THROTTLED) == 1


@SQLITE_ONLY
def test_successful_login_resets_the_failure_count(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    for _ in range(settings.lockout_failures_max - 1):
        login(client, who, now, password="wrong password here")
    assert login(client, who, now)[0] == 200
    now.advance(timedelta(seconds=30))
    for _ in range(settings.lockout_failures_max - 1):
        assert login(client, who, now, password="wrong password here")[0] == 401


def test_logout_ends_the_session(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    response = client.post(
        "/api/auth/login",
        json={"username": who.username, "password": who.password,
              "totp_code": totp.code_at(who.totp_secret, now())},
    )
    secret = response.cookies[SESSION_COOKIE_NAME]
    assert client.post("/api/auth/logout").status_code == 204
    client.cookies.set(SESSION_COOKIE_NAME, secret)
    replayed = client.get("/api/auth/me")
    assert replayed.status_code == 401
    assert "ended" in replayed.json()["error"]["message"]
    assert SecurityEvent.LOGGED_OUT in audit_actions(session_factory)


def test_session_expires_after_the_configured_hours(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    assert login(client, who, now)[0] == 200
    now.advance(timedelta(hours=settings.session_hours) - timedelta(seconds=1))
    assert client.get("/api/auth/me").status_code == 200
    now.advance(timedelta(seconds=1))
    expired = client.get("/api/auth/me")
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


@SQLITE_ONLY
def test_disabled_operator_cannot_log_in_even_with_right_credentials(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    admin = provision_operator(session_factory, Role.ADMIN, settings=settings, now=now())
    who = make_operator(session_factory, settings, now)
    disabled = client.post(f"/api/operators/{who.username}/disable", headers=admin.headers)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    status, body = login(client, who, now)
    assert status == 401 and "disabled" in str(body)


def concurrent_logins(
    factory: sessionmaker[Session], settings: SecuritySettings, now: ManualNow,
    who: ProvisionedOperator, attempts: list[tuple[str, str]],
) -> list[flows.LoginOutcome]:
    """Run one login per ``(password, code)`` at the same moment, each in its own thread."""
    start = threading.Barrier(len(attempts))
    outcomes: list[flows.LoginOutcome] = []
    failures: list[BaseException] = []

    def attempt(password: str, code: str) -> None:
        try:
            start.wait()
            with session_scope(factory) as session:
                outcome = flows.login(
                    session, username=who.username, password=password, totp_code=code,
                    client_address="10.0.0.1", settings=settings, now=now(),
                )
            outcomes.append(outcome)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=attempt, args=pair) for pair in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    return outcomes


def test_parallel_wrong_passwords_lock_after_exactly_the_bound(
    session_factory: sessionmaker[Session], settings: SecuritySettings, now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    attempts = [(f"wrong password {n}", "000000") for n in range(settings.lockout_failures_max + 3)]
    outcomes = concurrent_logins(session_factory, settings, now, who, attempts)
    assert all(outcome.refusal is not None for outcome in outcomes)
    actions = audit_actions(session_factory)
    assert actions.count(SecurityEvent.LOCKED_OUT) == 1
    with session_scope(session_factory) as session:
        entries, _ = audit.list_entries(session, action=SecurityEvent.LOGIN_FAILED, limit=50)
        reasons = [audit.entry_details(entry)["reason"] for entry in entries]
    assert reasons.count("wrong password") == settings.lockout_failures_max
    assert sum(outcome.refusal.code == "login_throttled" for outcome in outcomes
               if outcome.refusal is not None) == 3


def test_parallel_logins_with_the_same_code_let_only_one_in(
    session_factory: sessionmaker[Session], settings: SecuritySettings, now: ManualNow,
) -> None:
    who = make_operator(session_factory, settings, now)
    code = totp.code_at(who.totp_secret, now())
    outcomes = concurrent_logins(session_factory, settings, now, who, [(who.password, code)] * 4)
    assert sum(outcome.refusal is None for outcome in outcomes) == 1
