"""Login: throttling, then password and TOTP code, then a session; every refusal explained.

``login`` never raises for a refused login: it returns the refusal so the caller first
commits the failure count and audit entries, then answers. Raising would roll them back
and let an attacker guess without ever being held back.

What holds an attempt back, and why nobody can use it to lock the right operator out, is
stated in ``throttle.py``; this module applies it. An existing account's failure count and
wait live in its row (``failed_logins``, ``locked_until``) so ``haltguard operator unlock``
or ``enable`` clears them from any process; everything else lives in the ``LoginThrottle``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from haltguard.common.network import same_network
from haltguard.db import keys
from haltguard.security import audit, lockout, passwords, service, totp
from haltguard.security.config import SecuritySettings
from haltguard.security.errors import LoginFailedError, LoginThrottledError, SecurityError
from haltguard.security.events import SecurityEvent
from haltguard.security.models import Operator, OperatorSession
from haltguard.security.throttle import LoginThrottle, Verdict

_LOGIN_FAILED_MESSAGE = "wrong username, password or code"
_ANONYMOUS_ACTOR = "anonymous"
_THROTTLE_ACTOR = "system:login-throttle"


@dataclass(frozen=True)
class LoginOutcome:
    """Either a session (``refusal is None``) or why the login was refused."""

    operator: Operator | None
    session_secret: str
    login: OperatorSession | None
    refusal: SecurityError | None


def _refused(refusal: SecurityError, operator: Operator | None = None) -> LoginOutcome:
    return LoginOutcome(operator=operator, session_secret="", login=None, refusal=refusal)


def throttled_error(verdict: Verdict) -> LoginThrottledError:
    """The one answer for an attempt held back, whether the username exists or not."""
    return LoginThrottledError(
        f"{verdict.why}: wait {verdict.wait_s} s, then try again. From a network an operator "
        f"used before, only failures of that same username from there hold a login back; "
        f"an admin can lift a wait (haltguard operator login-blocks) / ログイン試行が多すぎる"
        f"ため一時的に制限しています。{verdict.wait_s} 秒後に再試行してください。以前に使った"
        f"ネットワークからのログインは、そこから同じユーザー名での失敗が続いた場合にだけ"
        f"制限されます。管理者は制限を解除できます。",
        verdict.wait_s,
    )


def _is_known(
    session: Session, operator: Operator | None, address: str, settings: SecuritySettings,
    now: datetime,
) -> bool:
    if operator is None or not address:
        return False
    found = service.known_addresses(session, operator, settings=settings, now=now)
    return any(same_network(known, address) for known in found)


def _audit_throttled(
    session: Session, verdict: Verdict, *, target: str, client_address: str, now: datetime
) -> None:
    """The first refusal of each hold is written down; the rest are counted in the hold
    (``GET /api/login-blocks``), so a flood of refused guesses is not a flood of writes."""
    if not verdict.first_refusal:
        return
    audit.record(
        session,
        actor=_ANONYMOUS_ACTOR,
        action=SecurityEvent.LOGIN_THROTTLED,
        target=target,
        details={
            "client_address": client_address,
            "hold": verdict.key,
            "reason": verdict.why,
            "retry_after_s": verdict.wait_s,
        },
        at=now,
    )


def _record_failure(
    session: Session,
    operator: Operator | None,
    claimed: str,
    reason: str,
    *,
    known: bool,
    client_address: str,
    settings: SecuritySettings,
    throttle: LoginThrottle,
    now: datetime,
) -> LoginOutcome:
    """Count a failure on the account (its row, or the throttle for an unknown username),
    the source and the pair; audit it and every wait it starts, with the rule."""
    target = service.operator_actor(claimed or "(empty)")
    details: dict[str, object] = {"reason": reason, "client_address": client_address,
                                  "known_address": known}
    started = throttle.failed(address=client_address, username=claimed, known=known,
                              track_account=operator is None, now=now)
    if operator is not None:
        state = lockout.after_failure(
            lockout.LockoutState(operator.failed_logins, operator.locked_until), now,
            throttle.account_rule,
        )
        operator.failed_logins = state.failures
        operator.locked_until = state.locked_until
        details["consecutive_failures"] = state.failures
        if state.locked_until is not None:
            started.append((f"account:{operator.username}", state.locked_until))
    audit.record(session, actor=_ANONYMOUS_ACTOR, action=SecurityEvent.LOGIN_FAILED,
                 target=target, details=details, at=now)
    for key, until in started:
        rule = throttle.source_rule if key.startswith("address:") else throttle.account_rule
        audit.record(
            session,
            actor=_THROTTLE_ACTOR,
            action=(SecurityEvent.LOGIN_SOURCE_THROTTLED if key.startswith("address:")
                    else SecurityEvent.LOCKED_OUT),
            target=key if key.startswith("address:") else target,
            details={
                "rule": f"consecutive failed login number {rule.failures_max} and each one "
                f"after it hold the next attempt back: {rule.wait_s_min} s, doubling, at "
                f"most {rule.wait_s_max} s",
                "hold": key,
                "locked_until": until.isoformat(),
                "client_address": client_address,
            },
            at=now,
        )
    return _refused(LoginFailedError(_LOGIN_FAILED_MESSAGE), operator)


def login(
    session: Session,
    *,
    username: str,
    password: str,
    totp_code: str,
    client_address: str,
    settings: SecuritySettings,
    now: datetime,
    throttle: LoginThrottle | None = None,
) -> LoginOutcome:
    """Check password and TOTP code and open a session; every attempt is audited, except
    further refusals of a hold that already refused one (they are counted in the hold).

    ``throttle``: the process's ``LoginThrottle``; None gives this call one of its own
    (only the account's row then remembers failures: for one-off callers and tests).
    """
    throttle = throttle if throttle is not None else LoginThrottle(settings)
    claimed = service.normalise_username(username)[:64]
    target = service.operator_actor(claimed or "(empty)")
    operator = service.find_operator(session, claimed)
    known = _is_known(session, operator, client_address, settings, now)
    verdict = throttle.check(
        address=client_address, username=claimed, known=known,
        account_locked_until=(operator.locked_until if operator is not None
                              else throttle.account_locked_until(claimed, now)),
        now=now,
    )
    if verdict.wait_s:
        _audit_throttled(session, verdict, target=target, client_address=client_address,
                         now=now)
        return _refused(throttled_error(verdict), operator)
    if operator is None:
        passwords.spend_verification_time(password, settings)
        return _record_failure(session, None, claimed, "unknown username", known=False,
                               client_address=client_address, settings=settings,
                               throttle=throttle, now=now)
    # The expensive hash check runs before the row lock so logins do not queue behind it.
    password_ok = passwords.verify_password(operator.password_hash, password, settings)
    service.lock_operator(session, operator)
    if not known and lockout.is_locked(
        lockout.LockoutState(operator.failed_logins, operator.locked_until), now
    ):
        assert operator.locked_until is not None
        # Another attempt started the wait while this one checked its password.
        verdict = throttle.check(address=client_address, username=claimed, known=False,
                                 account_locked_until=operator.locked_until, now=now)
        _audit_throttled(session, verdict, target=target, client_address=client_address,
                         now=now)
        return _refused(throttled_error(verdict), operator)
    failure = None if password_ok else "wrong password"
    check = totp.TotpCheck(accepted=False, step=0, reason="")
    if failure is None:
        secret = keys.open_totp_secret(session, operator.username, operator.totp_secret)
        check = totp.check_code(secret, totp_code, now, operator.totp_last_step)
        if not check.accepted:
            failure = f"TOTP code refused: {check.reason}"
    if failure is not None:
        return _record_failure(session, operator, claimed, failure, known=known,
                               client_address=client_address, settings=settings,
                               throttle=throttle, now=now)
    operator.totp_last_step = check.step
    if operator.disabled:
        audit.record(
            session,
            actor=_ANONYMOUS_ACTOR,
            action=SecurityEvent.LOGIN_FAILED,
            target=target,
            details={"reason": "account disabled", "client_address": client_address},
            at=now,
        )
        return _refused(LoginFailedError("this account is disabled; ask an admin to enable it"))
    return _open_session(session, operator, password, known=known,
                         client_address=client_address, settings=settings,
                         throttle=throttle, now=now)


def _open_session(
    session: Session, operator: Operator, password: str, *, known: bool, client_address: str,
    settings: SecuritySettings, throttle: LoginThrottle, now: datetime,
) -> LoginOutcome:
    success = lockout.after_success()
    operator.failed_logins = success.failures
    operator.locked_until = success.locked_until
    throttle.succeeded(address=client_address, username=operator.username)
    if passwords.needs_rehash(operator.password_hash, settings):
        operator.password_hash = passwords.hasher_for(settings).hash(password)
    secret, opened = service.start_session(
        session, operator, client_address=client_address, settings=settings, now=now
    )
    audit.record(
        session,
        actor=service.operator_actor(operator.username),
        action=SecurityEvent.LOGIN_SUCCEEDED,
        target=f"session:{opened.id}",
        details={
            "client_address": client_address,
            "known_address": known,
            "session_expires_at": opened.expires_at.isoformat(),
        },
        at=now,
    )
    return LoginOutcome(operator=operator, session_secret=secret, login=opened, refusal=None)
