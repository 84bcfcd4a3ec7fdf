"""Errors of operator security: :class:`SecurityError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`, and a subclass per refusal with a stable
code and the kind the web layer maps to the HTTP status. An app answers them as
``{"error": {"code", "message"}}`` once ``haltguard.security.views.register_error_handlers``
(or ``haltguard.web.errors.install_error_handlers``) is installed; the CLI prints ``.message``.
"""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError


class SecurityError(HaltguardError):
    code = "security_error"
    kind = ErrorKind.BAD_REQUEST

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)


class InvalidInputError(SecurityError):
    code = "invalid_input"
    kind = ErrorKind.INVALID


class NotFoundError(SecurityError):
    code = "not_found"
    kind = ErrorKind.NOT_FOUND


class ConflictError(SecurityError):
    code = "conflict"
    kind = ErrorKind.CONFLICT


class NotAuthenticatedError(SecurityError):
    """No valid session or API token came with the request."""

    code = "not_authenticated"
    kind = ErrorKind.UNAUTHENTICATED

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class LoginFailedError(SecurityError):
    """Username, password or code wrong; deliberately does not say which."""

    code = "login_failed"
    kind = ErrorKind.UNAUTHENTICATED


class LoginThrottledError(SecurityError):
    """Too many failed logins from this address or for this username, or too many logins
    overall: the same answer whether the username exists or not; ``Retry-After`` says when."""

    code = "login_throttled"
    kind = ErrorKind.TOO_MANY

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


class PermissionDeniedError(SecurityError):
    """Authenticated, but the role's permissions do not include the action."""

    code = "permission_denied"
    kind = ErrorKind.FORBIDDEN


class NetworkDeniedError(SecurityError):
    """The request came from outside the operator network allow-list."""

    code = "network_denied"
    kind = ErrorKind.FORBIDDEN
