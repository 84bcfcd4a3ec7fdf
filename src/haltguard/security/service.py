"""Operator accounts, sessions and API tokens: plain functions over a session.

Every change is written to the audit chain in the same transaction; the caller commits.
Time comes in as ``now`` so lockout and expiry are tested without waiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from haltguard.db import keys
from haltguard.security import audit, passwords, tokens, totp
from haltguard.security.config import TOKEN_DAYS_MAX, SecuritySettings
from haltguard.security.errors import (
    ConflictError,
    InvalidInputError,
    NotAuthenticatedError,
    NotFoundError,
)
from haltguard.security.events import SecurityEvent
from haltguard.security.models import (
    DISPLAY_NAME_LENGTH_MAX,
    EMAIL_LENGTH_MAX,
    PAGE_LIMIT_MAX,
    PHONE_LENGTH_MAX,
    TOKEN_NAME_LENGTH_MAX,
    USERNAME_PATTERN,
    ApiToken,
    Operator,
    OperatorSession,
)
from haltguard.security.permissions import Role

TOKEN_LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is refreshed at most this often, so token use is not a write per request."""

_USERNAME_RE = re.compile(USERNAME_PATTERN)
_PHONE_RE = re.compile(r"^\+?[0-9 ()-]{4,40}$")


def operator_actor(username: str) -> str:
    """How an operator appears as the actor of audit entries."""
    return f"operator:{username}"


def normalise_username(username: str) -> str:
    return username.strip().lower()


def check_page(offset: int, limit: int) -> None:
    if offset < 0:
        raise InvalidInputError(f"offset must be 0 or more, got {offset}")
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidInputError(f"limit must be 1..{PAGE_LIMIT_MAX}, got {limit}")


def _check_profile(username: str, display_name: str, email: str, phone: str) -> None:
    if not _USERNAME_RE.fullmatch(username):
        raise InvalidInputError(
            f"username {username!r} is not allowed: use 3 to 64 lower-case letters, digits, "
            f"'.', '_' or '-', starting with a letter or digit (e.g. akiko.sato)"
        )
    if not display_name.strip() or len(display_name) > DISPLAY_NAME_LENGTH_MAX:
        raise InvalidInputError(f"display name must be 1..{DISPLAY_NAME_LENGTH_MAX} characters")
    local, _, domain = email.partition("@")
    if (
        len(email) > EMAIL_LENGTH_MAX
        or not local
        or "." not in domain
        or any(ch.isspace() for ch in email)
        or "@" in domain
    ):
        raise InvalidInputError(f"email {email!r} is not an address like name@example.com")
    if phone and (len(phone) > PHONE_LENGTH_MAX or not _PHONE_RE.fullmatch(phone)):
        raise InvalidInputError(
            f"phone {phone!r} is not a number: digits, spaces, '+', '-', '(' and ')' only"
        )


# --- operators -----------------------------------------------------------------------------


def find_operator(session: Session, username: str) -> Operator | None:
    query = select(Operator).where(Operator.username == normalise_username(username))
    return session.execute(query).scalar_one_or_none()


def get_operator(session: Session, username: str) -> Operator:
    operator = find_operator(session, username)
    if operator is None:
        raise NotFoundError(
            f"no operator named {username!r}; list them with `haltguard operator list`"
        )
    return operator


def lock_operator(session: Session, operator: Operator) -> None:
    """Hold the operator's row until the transaction ends and reload it.

    A no-op UPDATE: PostgreSQL locks the row, SQLite takes its write lock. Concurrent
    logins then count failures and spend TOTP codes one after another, never both reading
    the same count or both accepting the same code.
    """
    session.execute(
        update(Operator)
        .where(Operator.id == operator.id)
        .values(failed_logins=Operator.failed_logins)
        .execution_options(synchronize_session=False)
    )
    session.refresh(operator)


def list_operators(
    session: Session, *, offset: int = 0, limit: int = 50
) -> tuple[list[Operator], int]:
    check_page(offset, limit)
    query = select(Operator).order_by(Operator.username).offset(offset).limit(limit)
    total = session.execute(select(func.count()).select_from(Operator)).scalar_one()
    return list(session.execute(query).scalars()), int(total)


def create_operator(
    session: Session,
    *,
    username: str,
    display_name: str,
    email: str,
    phone: str,
    role: Role,
    password: str,
    actor: str,
    settings: SecuritySettings,
    now: datetime,
) -> tuple[Operator, totp.TotpEnrolment]:
    """A new operator with a fresh TOTP secret, returned once for enrolment."""
    username = normalise_username(username)
    display_name = display_name.strip()
    email = email.strip()
    phone = phone.strip()
    _check_profile(username, display_name, email, phone)
    try:
        password_hash = passwords.hash_password(password, settings)
    except passwords.PasswordPolicyError as exc:
        raise InvalidInputError(str(exc)) from exc
    if find_operator(session, username) is not None:
        raise ConflictError(
            f"an operator named {username!r} already exists; choose another username"
        )
    enrolment = totp.new_enrolment(username, settings.totp_issuer)
    operator = Operator(
        username=username,
        display_name=display_name,
        email=email,
        phone=phone,
        role=role,
        password_hash=password_hash,
        totp_secret=keys.seal_totp_secret(session, username, enrolment.secret),
        totp_last_step=0,
        failed_logins=0,
        locked_until=None,
        disabled=False,
        created_at=now,
        updated_at=now,
    )
    session.add(operator)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=SecurityEvent.OPERATOR_CREATED,
        target=operator_actor(username),
        details={"role": role.value, "display_name": display_name, "email": email},
        at=now,
    )
    return operator, enrolment


def _enabled_admins_other_than(session: Session, operator_id: int) -> int:
    query = (
        select(func.count())
        .select_from(Operator)
        .where(
            Operator.role == Role.ADMIN,
            Operator.disabled.is_(False),
            Operator.id != operator_id,
        )
    )
    return int(session.execute(query).scalar_one())


def _keep_an_admin(session: Session, operator: Operator, change: str) -> None:
    if (
        operator.role is Role.ADMIN
        and not operator.disabled
        and _enabled_admins_other_than(session, operator.id) == 0
    ):
        raise ConflictError(
            f"{operator.username} is the last enabled admin; {change} would leave nobody able "
            f"to manage operators. Make another operator admin first."
        )


def set_role(session: Session, username: str, role: Role, *, actor: str, now: datetime) -> Operator:
    operator = get_operator(session, username)
    previous = operator.role
    if previous is role:
        return operator
    if role is not Role.ADMIN:
        _keep_an_admin(session, operator, f"changing the role to {role.value}")
    operator.role = role
    operator.updated_at = now
    audit.record(
        session,
        actor=actor,
        action=SecurityEvent.ROLE_CHANGED,
        target=operator_actor(operator.username),
        details={"from": previous.value, "to": role.value},
        at=now,
    )
    return operator


def _end_sessions(session: Session, operator_id: int, now: datetime) -> int:
    """End every open session of an operator; returns how many."""
    result = session.execute(
        update(OperatorSession)
        .where(OperatorSession.operator_id == operator_id, OperatorSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def _revoke_tokens(session: Session, operator_id: int, now: datetime) -> int:
    """Revoke every live API token of an operator; returns how many."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.operator_id == operator_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def set_disabled(
    session: Session, username: str, disabled: bool, *, actor: str, now: datetime
) -> Operator:
    """Disable (ending every session and revoking every API token) or enable an operator.

    Enabling also clears the account's failed-login count and wait, even when the account
    was not disabled: it is how an admin lets a held-back operator in at once.
    """
    operator = get_operator(session, username)
    if not disabled:
        clear_lockout(session, operator, actor=actor, now=now)
    if operator.disabled == disabled:
        return operator
    details: dict[str, object] = {}
    if disabled:
        _keep_an_admin(session, operator, "disabling this account")
        sessions_ended = _end_sessions(session, operator.id, now)
        tokens_revoked = _revoke_tokens(session, operator.id, now)
        details = {"sessions_ended": sessions_ended, "api_tokens_revoked": tokens_revoked}
    operator.disabled = disabled
    operator.updated_at = now
    audit.record(
        session,
        actor=actor,
        action=SecurityEvent.OPERATOR_DISABLED if disabled else SecurityEvent.OPERATOR_ENABLED,
        target=operator_actor(operator.username),
        details=details,
        at=now,
    )
    return operator


def clear_lockout(session: Session, operator: Operator, *, actor: str, now: datetime) -> bool:
    """Forget the account's failed logins and end its wait (audited); False if it had none."""
    if operator.failed_logins == 0 and operator.locked_until is None:
        return False
    until = operator.locked_until
    details: dict[str, object] = {
        "consecutive_failures": operator.failed_logins,
        "locked_until": None if until is None else until.isoformat(),
    }
    operator.failed_logins = 0
    operator.locked_until = None
    operator.updated_at = now
    audit.record(
        session,
        actor=actor,
        action=SecurityEvent.OPERATOR_UNLOCKED,
        target=operator_actor(operator.username),
        details=details,
        at=now,
    )
    return True


def unlock(session: Session, username: str, *, actor: str, now: datetime) -> Operator:
    """End an operator's failed-login wait now (``haltguard operator unlock``)."""
    operator = get_operator(session, username)
    clear_lockout(session, operator, actor=actor, now=now)
    return operator


def locked_operators(session: Session, now: datetime) -> list[Operator]:
    """Operators whose failed-login wait is still running, the longest first."""
    query = (
        select(Operator)
        .where(Operator.locked_until.is_not(None), Operator.locked_until > now)
        .order_by(Operator.locked_until.desc())
        .limit(PAGE_LIMIT_MAX)
    )
    return list(session.execute(query).scalars())


KNOWN_ADDRESSES_MAX = 200
"""Addresses of recent sessions looked at per login; an operator rarely has more."""


def known_addresses(
    session: Session, operator: Operator, *, settings: SecuritySettings, now: datetime
) -> list[str]:
    """Where ``operator`` logged in successfully within ``known_address_days``, newest
    first (at most ``KNOWN_ADDRESSES_MAX``)."""
    since = now - settings.known_address_window
    query = (
        select(OperatorSession.client_address)
        .where(OperatorSession.operator_id == operator.id, OperatorSession.created_at >= since)
        .group_by(OperatorSession.client_address)
        .order_by(func.max(OperatorSession.created_at).desc())
        .limit(KNOWN_ADDRESSES_MAX)
    )
    return [address for address in session.execute(query).scalars() if address]


def reset_totp(
    session: Session, username: str, *, actor: str, settings: SecuritySettings, now: datetime
) -> totp.TotpEnrolment:
    """A new TOTP secret (the old authenticator stops working) and every session ended."""
    operator = get_operator(session, username)
    enrolment = totp.new_enrolment(operator.username, settings.totp_issuer)
    operator.totp_secret = keys.seal_totp_secret(session, operator.username, enrolment.secret)
    operator.totp_last_step = 0
    operator.updated_at = now
    sessions_ended = _end_sessions(session, operator.id, now)
    audit.record(
        session,
        actor=actor,
        action=SecurityEvent.TOTP_RESET,
        target=operator_actor(operator.username),
        details={"sessions_ended": sessions_ended},
        at=now,
    )
    return enrolment


# --- sessions ------------------------------------------------------------------------------


def start_session(
    session: Session,
    operator: Operator,
    *,
    client_address: str,
    settings: SecuritySettings,
    now: datetime,
) -> tuple[str, OperatorSession]:
    """A new server-side session; the secret goes in the cookie and is never stored."""
    secret = tokens.new_session_secret()
    login = OperatorSession(
        operator_id=operator.id,
        secret_hash=tokens.secret_hash(secret),
        client_address=client_address[:64],
        created_at=now,
        expires_at=now + settings.session_duration,
        revoked_at=None,
    )
    session.add(login)
    session.flush()
    return secret, login


def _enabled(operator: Operator | None) -> Operator:
    if operator is None or operator.disabled:
        raise NotAuthenticatedError("this account is disabled; ask an admin to enable it")
    return operator


def operator_for_session(
    session: Session, secret: str, now: datetime
) -> tuple[Operator, OperatorSession]:
    """The operator a session cookie belongs to, or ``NotAuthenticatedError`` saying why not."""
    query = select(OperatorSession).where(OperatorSession.secret_hash == tokens.secret_hash(secret))
    login = session.execute(query).scalar_one_or_none()
    if login is None:
        raise NotAuthenticatedError("unknown session; log in again")
    if login.revoked_at is not None:
        raise NotAuthenticatedError("this session was ended; log in again")
    if now >= login.expires_at:
        raise NotAuthenticatedError("your session expired; log in again")
    return _enabled(session.get(Operator, login.operator_id)), login


def end_session(session: Session, session_id: int, *, actor: str, now: datetime) -> OperatorSession:
    login = session.get(OperatorSession, session_id)
    if login is None:
        raise NotFoundError(f"no session {session_id}")
    if login.revoked_at is None:
        login.revoked_at = now
        audit.record(
            session,
            actor=actor,
            action=SecurityEvent.LOGGED_OUT,
            target=f"session:{session_id}",
            details={},
            at=now,
        )
    return login


# --- API tokens ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewApiToken:
    """The token in clear (shown once) and its stored record."""

    secret: str
    record: ApiToken


def create_api_token(
    session: Session,
    operator: Operator,
    *,
    name: str,
    expires_in_days: int | None,
    actor: str,
    now: datetime,
) -> NewApiToken:
    name = name.strip()
    if not name or len(name) > TOKEN_NAME_LENGTH_MAX:
        raise InvalidInputError(
            f"token name must be 1..{TOKEN_NAME_LENGTH_MAX} characters and say what uses it "
            f"(e.g. 'status-page exporter')"
        )
    if expires_in_days is not None and not 1 <= expires_in_days <= TOKEN_DAYS_MAX:
        raise InvalidInputError(
            f"expires_in_days must be 1..{TOKEN_DAYS_MAX}, or omitted for no expiry; "
            f"got {expires_in_days}"
        )
    secret = tokens.new_api_token()
    expires_at = None if expires_in_days is None else now + timedelta(days=expires_in_days)
    record = ApiToken(
        operator_id=operator.id,
        name=name,
        prefix=tokens.shown_prefix(secret),
        secret_hash=tokens.secret_hash(secret),
        created_at=now,
        expires_at=expires_at,
        revoked_at=None,
        last_used_at=None,
    )
    session.add(record)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=SecurityEvent.TOKEN_CREATED,
        target=f"api_token:{record.id}",
        details={
            "owner": operator.username,
            "name": name,
            "prefix": record.prefix,
            "expires_at": None if expires_at is None else expires_at.isoformat(),
        },
        at=now,
    )
    return NewApiToken(secret=secret, record=record)


def list_api_tokens(
    session: Session, operator_id: int, *, offset: int = 0, limit: int = 50
) -> tuple[list[ApiToken], int]:
    check_page(offset, limit)
    where = ApiToken.operator_id == operator_id
    query = select(ApiToken).where(where).order_by(ApiToken.id).offset(offset).limit(limit)
    total = session.execute(select(func.count()).select_from(ApiToken).where(where)).scalar_one()
    return list(session.execute(query).scalars()), int(total)


def revoke_api_token(
    session: Session, operator: Operator, token_id: int, *, actor: str, now: datetime
) -> ApiToken:
    """Revoke one of ``operator``'s tokens; another operator's token is reported not found."""
    record = session.get(ApiToken, token_id)
    if record is None or record.operator_id != operator.id:
        raise NotFoundError(
            f"{operator.username} has no API token {token_id}; list them to see the ids"
        )
    if record.revoked_at is None:
        record.revoked_at = now
        audit.record(
            session,
            actor=actor,
            action=SecurityEvent.TOKEN_REVOKED,
            target=f"api_token:{record.id}",
            details={"owner": operator.username, "name": record.name, "prefix": record.prefix},
            at=now,
        )
    return record


def operator_for_api_token(
    session: Session, secret: str, now: datetime
) -> tuple[Operator, ApiToken]:
    """The operator an API token acts for, or ``NotAuthenticatedError`` saying why not."""
    if not secret.startswith(tokens.API_TOKEN_PREFIX):
        raise NotAuthenticatedError(
            f"the bearer credential is not a haltguard API token (they start with "
            f"{tokens.API_TOKEN_PREFIX!r}); create one with POST /api/tokens"
        )
    query = select(ApiToken).where(ApiToken.secret_hash == tokens.secret_hash(secret))
    record = session.execute(query).scalar_one_or_none()
    if record is None:
        raise NotAuthenticatedError("unknown API token")
    if record.revoked_at is not None:
        raise NotAuthenticatedError(f"API token {record.prefix}... was revoked; create a new one")
    if record.expires_at is not None and now >= record.expires_at:
        raise NotAuthenticatedError(f"API token {record.prefix}... expired; create a new one")
    operator = _enabled(session.get(Operator, record.operator_id))
    if record.last_used_at is None or now - record.last_used_at >= TOKEN_LAST_USED_RESOLUTION:
        record.last_used_at = now
    return operator, record
