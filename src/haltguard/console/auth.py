"""Who is at the console: the API's session and permission checks, plus what a browser needs.

The console does not have its own idea of who may do what. Every route declares a
:class:`ConsoleRequirement`, the same :class:`~haltguard.security.dependencies.Requirement`
the API's routes run (operator network allow-list, the session or an API token, the
permission table, a refusal written to the audit chain); a form that names a further action
(halt, publish, approve) is checked with :func:`authorize`, the same way. The forms need the
session's CSRF token, so they are a browser's: a script holding only an API token can read
the pages and is refused every form.

What a browser adds:

- **CSRF**: every form carries a token derived from the session's secret (an HMAC keyed by
  the cookie's value, so it needs no storage and dies with the session); a POST without the
  right token is refused before anything else. The login form, made before any session,
  uses a random cookie and the same value in the form (double submit).
- **Idle timeout**: a console session with no page view or form for
  ``ConsoleSettings.idle_minutes`` is ended through the security service (audited as a
  logout). Live updates do not count as activity. The last activity is kept in this
  process (:class:`IdleTracker`); after a restart the clock starts again from the first
  request, and the session's own expiry (``security.session_hours``) still holds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from haltguard.console.errors import CsrfRefusedError
from haltguard.db.session import session_scope
from haltguard.security import service
from haltguard.security.config import SESSION_COOKIE_NAME
from haltguard.security.dependencies import AuthenticatedOperator, Requirement, clock_of
from haltguard.security.errors import NotAuthenticatedError
from haltguard.security.permissions import Action, is_allowed
from haltguard.web.context import context

LOGIN_CSRF_COOKIE_NAME = "haltguard_console_login"
CSRF_FIELD = "csrf_token"
LANGUAGE_COOKIE_NAME = "haltguard_console_lang"
IDLE_SESSIONS_TRACKED_MAX = 10_000
_CSRF_LABEL = b"haltguard console csrf v1"


def csrf_token_for(session_secret: str) -> str:
    """The form token of the session whose cookie holds ``session_secret``."""
    return hmac.new(session_secret.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """Refuse a form whose token is not the session's (or, on the login form, the cookie's)."""
    sent = form.get(CSRF_FIELD, "")
    session_secret = request.cookies.get(SESSION_COOKIE_NAME, "")
    expected = csrf_token_for(session_secret) if session_secret else ""
    if sent and expected and hmac.compare_digest(sent, expected):
        return
    raise CsrfRefusedError()


def check_login_csrf(request: Request, form: dict[str, str]) -> None:
    sent = form.get(CSRF_FIELD, "")
    expected = request.cookies.get(LOGIN_CSRF_COOKIE_NAME, "")
    if not (sent and expected and hmac.compare_digest(sent, expected)):
        raise CsrfRefusedError()


class IdleTracker:
    """When each console session was last used, in this process; bounded (oldest dropped)."""

    def __init__(self, idle_minutes: int) -> None:
        self.idle = timedelta(minutes=idle_minutes)
        self._seen: OrderedDict[int, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def expired(self, session_id: int, now: datetime) -> bool:
        with self._lock:
            seen = self._seen.get(session_id)
        return seen is not None and now - seen >= self.idle

    def touch(self, session_id: int, now: datetime) -> None:
        with self._lock:
            self._seen[session_id] = now
            self._seen.move_to_end(session_id)
            while len(self._seen) > IDLE_SESSIONS_TRACKED_MAX:
                self._seen.popitem(last=False)

    def forget(self, session_id: int) -> None:
        with self._lock:
            self._seen.pop(session_id, None)


class IdleTimeoutError(NotAuthenticatedError):
    """The session was ended for being idle; the login page says so."""

    code = "session_idle"


_bearer = HTTPBearer(auto_error=False)
_cookie = APIKeyCookie(name=SESSION_COOKIE_NAME, auto_error=False)
_CHECKED = "console_operator"


class ConsoleRequirement(Requirement):
    """The API's :class:`Requirement` (network, credential, permission table, audit of a
    refusal), then the console's idle timeout for a session. Declared on every console route,
    so the permission walk of the whole app (``security.testing``) sees each route's action.
    ``activity``: whether a request counts as the operator doing something (live updates
    do not)."""

    def __init__(self, action: Action, *, activity: bool = True) -> None:
        super().__init__(action)
        self.activity = activity

    def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        session_cookie: Annotated[str | None, Depends(_cookie)],
    ) -> AuthenticatedOperator:
        operator = super().__call__(request, bearer, session_cookie)
        if operator.session_id is not None:
            _check_idle(request, operator, activity=self.activity)
        setattr(request.state, _CHECKED, operator)
        return operator


def require(action: Action, *, activity: bool = True) -> ConsoleRequirement:
    return ConsoleRequirement(action, activity=activity)


def _check_idle(request: Request, operator: AuthenticatedOperator, *, activity: bool) -> None:
    tracker = context(request).part(IdleTracker)
    now = clock_of(request)()
    assert operator.session_id is not None
    if tracker.expired(operator.session_id, now):
        end_session(request, operator, now)
        raise IdleTimeoutError(
            "your console session was ended after "
            f"{int(tracker.idle.total_seconds() // 60)} minutes without activity; log in again"
        )
    if activity:
        tracker.touch(operator.session_id, now)


def authorize(request: Request, action: Action, *, activity: bool = True) -> AuthenticatedOperator:
    """The operator of this request, allowed ``action``: the route's own requirement already
    checked who it is; a further action (the one a form names) is checked against the same
    table, and a refusal audited, by the same :class:`Requirement`."""
    checked = getattr(request.state, _CHECKED, None)
    if isinstance(checked, AuthenticatedOperator) and is_allowed(checked.role, action):
        return checked
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    bearer = (HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials.strip())
              if scheme.lower() == "bearer" and credentials.strip() else None)
    cookie = request.cookies.get(SESSION_COOKIE_NAME) or None
    return ConsoleRequirement(action, activity=activity)(request, bearer, cookie)


def end_session(request: Request, operator: AuthenticatedOperator, now: datetime) -> None:
    """End the operator's session through the security service (audited)."""
    assert operator.session_id is not None
    with session_scope(context(request).session_factory) as session:
        service.end_session(session, operator.session_id, actor=operator.actor, now=now)
    context(request).part(IdleTracker).forget(operator.session_id)
