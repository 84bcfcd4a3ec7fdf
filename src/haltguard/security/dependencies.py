"""``require(action)``: the FastAPI dependency every operator endpoint is guarded by.

It reads the app's :class:`~haltguard.web.context.OperationsContext`: its
``session_factory`` and ``clock``, and the parts ``SecuritySettings`` and ``LoginThrottle``
(one per process, so detection enforces its login blocks on the same one), all given by the
composition root (``app/operations.py``).

Order of checks: network allow-list (403 ``network_denied``), authentication by session
cookie or ``Authorization: Bearer <api token>`` (401 ``not_authenticated``), then the
permission table (403 ``permission_denied``). Refusals by network or permission are written
to the audit chain. The requirement object keeps its ``action`` so tests can find, for every
route, which action guards it (``haltguard.security.testing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Now
from haltguard.common.network import address_allowed
from haltguard.db.session import session_scope
from haltguard.security import audit, service
from haltguard.security.config import SESSION_COOKIE_NAME, SecuritySettings
from haltguard.security.errors import (
    NetworkDeniedError,
    NotAuthenticatedError,
    PermissionDeniedError,
)
from haltguard.security.events import SecurityEvent
from haltguard.security.permissions import Action, Role, is_allowed
from haltguard.security.throttle import LoginThrottle
from haltguard.web.context import context, context_of

_bearer_scheme = HTTPBearer(auto_error=False, description="an API token (hgt_...)")
_cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE_NAME, auto_error=False, description="the session cookie set by login"
)


@dataclass(frozen=True)
class AuthenticatedOperator:
    """Who is making the request, and through which credential."""

    id: int
    username: str
    display_name: str
    role: Role
    session_id: int | None = None
    api_token_id: int | None = None

    @property
    def actor(self) -> str:
        """The actor string for audit entries and timelines."""
        return service.operator_actor(self.username)


def session_factory_of(request: Request) -> sessionmaker[Session]:
    return context(request).session_factory


def settings_of(request: Request) -> SecuritySettings:
    """The app's security settings (a part of its operations context)."""
    return context(request).part(SecuritySettings)


def login_throttle_of(app: FastAPI) -> LoginThrottle:
    """The app's login throttle (one per process, made by the composition root with its
    security settings); ``haltguard serve`` hands the same one to detection for
    ``block_login``."""
    return context_of(app).part(LoginThrottle)


def clock_of(request: Request) -> Now:
    return context(request).clock.now


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def enforce_network(request: Request, action: str) -> None:
    """Refuse (403, audited) a request from outside the operator network allow-list."""
    settings = settings_of(request)
    host = client_address(request)
    if address_allowed(host or None, settings.allowed_networks):
        return
    allowed = ", ".join(str(network) for network in settings.allowed_networks)
    with session_scope(session_factory_of(request)) as session:
        audit.record(
            session,
            actor=f"network:{host or 'unknown'}",
            action=SecurityEvent.NETWORK_DENIED,
            target=f"{request.method} {request.url.path}",
            details={"client_address": host, "action": action, "allowed_networks": allowed},
            at=clock_of(request)(),
        )
    raise NetworkDeniedError(
        f"operator actions are only accepted from {allowed}; your address {host or 'unknown'} "
        f"is outside them. Connect through the operations network or VPN."
    )


class Requirement:
    """A dependency that authenticates the caller and checks ``action`` against the table."""

    def __init__(self, action: Action) -> None:
        self.action = action

    def __repr__(self) -> str:
        return f"require({self.action.value!r})"

    def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
        session_cookie: Annotated[str | None, Depends(_cookie_scheme)],
    ) -> AuthenticatedOperator:
        enforce_network(request, self.action.value)
        now = clock_of(request)()
        with session_scope(session_factory_of(request)) as session:
            current = _authenticate(session, bearer, session_cookie, now)
            allowed = is_allowed(current.role, self.action)
            if not allowed:
                audit.record(
                    session,
                    actor=current.actor,
                    action=SecurityEvent.PERMISSION_DENIED,
                    target=f"{request.method} {request.url.path}",
                    details={"role": current.role.value, "required_action": self.action.value},
                    at=now,
                )
        if not allowed:
            raise PermissionDeniedError(
                f"your role {current.role.value} does not allow {self.action.value}; ask an "
                f"admin to change your role if you need it (haltguard operator set-role)"
            )
        request.state.operator = current
        return current


def _authenticate(
    session: Session,
    bearer: HTTPAuthorizationCredentials | None,
    session_cookie: str | None,
    now: datetime,
) -> AuthenticatedOperator:
    if bearer is not None and bearer.credentials:
        operator, token = service.operator_for_api_token(session, bearer.credentials, now)
        return AuthenticatedOperator(
            id=operator.id,
            username=operator.username,
            display_name=operator.display_name,
            role=operator.role,
            api_token_id=token.id,
        )
    if session_cookie:
        operator, login = service.operator_for_session(session, session_cookie, now)
        return AuthenticatedOperator(
            id=operator.id,
            username=operator.username,
            display_name=operator.display_name,
            role=operator.role,
            session_id=login.id,
        )
    raise NotAuthenticatedError(
        "not logged in: log in with POST /api/auth/login (password and TOTP code), or send "
        "'Authorization: Bearer <api token>'"
    )


def require(action: Action) -> Requirement:
    """The dependency guarding an endpoint with ``action``; returns the operator.

    Use as ``operator: Annotated[AuthenticatedOperator, Depends(require(Action.MARKET_HALT))]``
    or in ``dependencies=[Depends(require(...))]``.
    """
    return Requirement(action)
