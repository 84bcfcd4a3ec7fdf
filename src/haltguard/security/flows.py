"""Login: password, then TOTP code, then a session; failures counted towards lockout.

``login`` never raises for a refused login: it returns the refusal so the caller first
commits the failure count and audit entries, then answers. Raising would roll them back
and let an attacker guess without ever being locked out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from haltguard.security import audit, lockout, passwords, service, totp
from haltguard.security.config import SecuritySettings
from haltguard.security.errors import AccountLockedError, LoginFailedError, SecurityError
from haltguard.security.events import SecurityEvent
from haltguard.security.models import Operator, OperatorSession

_LOGIN_FAILED_MESSAGE = "wrong username, password or code"
_ANONYMOUS_ACTOR = "anonymous"


@dataclass(frozen=True)
class LoginOutcome:
    """Either a session (``refusal is None``) or why the login was refused."""

    operator: Operator | None
    session_secret: str
    login: OperatorSession | None
    refusal: SecurityError | None


def _refused(refusal: SecurityError, operator: Operator | None = None) -> LoginOutcome:
    return LoginOutcome(operator=operator, session_secret="", login=None, refusal=refusal)


def _record_failure(
    session: Session,
    operator: Operator,
    reason: str,
    *,
    client_address: str,
    settings: SecuritySettings,
    now: datetime,
) -> LoginOutcome:
    state = lockout.after_failure(
        lockout.LockoutState(operator.failed_logins, operator.locked_until), now, settings
    )
    operator.failed_logins = state.failures
    operator.locked_until = state.locked_until
    target = service.operator_actor(operator.username)
    audit.record(
        session,
        actor=_ANONYMOUS_ACTOR,
        action=SecurityEvent.LOGIN_FAILED,
        target=target,
        details={
            "reason": reason,
            "client_address": client_address,
            "consecutive_failures": state.failures,
        },
        at=now,
    )
    if state.locked_until is None:
        return _refused(LoginFailedError(_LOGIN_FAILED_MESSAGE), operator)
    audit.record(
        session,
        actor="system:lockout",
        action=SecurityEvent.LOCKED_OUT,
        target=target,
        details={
            "rule": f"{settings.lockout_failures_max} consecutive failed logins",
            "consecutive_failures": state.failures,
            "lockout_minutes": settings.lockout_minutes,
            "locked_until": state.locked_until.isoformat(),
        },
        at=now,
    )
    return _refused(_locked_error(state.locked_until, settings), operator)


def _locked_error(locked_until: datetime, settings: SecuritySettings) -> AccountLockedError:
    return AccountLockedError(
        f"too many failed logins ({settings.lockout_failures_max} in a row): this account is "
        f"locked until {locked_until.strftime('%Y-%m-%d %H:%M:%S')} UTC; try again then, or "
        f"ask an admin"
    )


def login(
    session: Session,
    *,
    username: str,
    password: str,
    totp_code: str,
    client_address: str,
    settings: SecuritySettings,
    now: datetime,
) -> LoginOutcome:
    """Check password and TOTP code and open a session; every attempt is audited."""
    claimed = service.normalise_username(username)[:64]
    operator = service.find_operator(session, claimed)
    if operator is None:
        passwords.spend_verification_time(password, settings)
        audit.record(
            session,
            actor=_ANONYMOUS_ACTOR,
            action=SecurityEvent.LOGIN_FAILED,
            target=service.operator_actor(claimed or "(empty)"),
            details={"reason": "unknown username", "client_address": client_address},
            at=now,
        )
        return _refused(LoginFailedError(_LOGIN_FAILED_MESSAGE))
    target = service.operator_actor(operator.username)
    # The expensive hash check runs before the row lock so logins do not queue behind it.
    password_ok = passwords.verify_password(operator.password_hash, password, settings)
    service.lock_operator(session, operator)
    state = lockout.LockoutState(operator.failed_logins, operator.locked_until)
    if lockout.is_locked(state, now):
        assert operator.locked_until is not None
        audit.record(
            session,
            actor=_ANONYMOUS_ACTOR,
            action=SecurityEvent.LOGIN_FAILED,
            target=target,
            details={"reason": "account locked", "client_address": client_address},
            at=now,
        )
        return _refused(_locked_error(operator.locked_until, settings), operator)
    if not password_ok:
        return _record_failure(
            session,
            operator,
            "wrong password",
            client_address=client_address,
            settings=settings,
            now=now,
        )
    check = totp.check_code(operator.totp_secret, totp_code, now, operator.totp_last_step)
    if not check.accepted:
        return _record_failure(
            session,
            operator,
            f"TOTP code refused: {check.reason}",
            client_address=client_address,
            settings=settings,
            now=now,
        )
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
    success = lockout.after_success()
    operator.failed_logins = success.failures
    operator.locked_until = success.locked_until
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
            "session_expires_at": opened.expires_at.isoformat(),
        },
        at=now,
    )
    return LoginOutcome(operator=operator, session_secret=secret, login=opened, refusal=None)
