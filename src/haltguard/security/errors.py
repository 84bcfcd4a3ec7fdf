"""Errors of operator security, each with a stable code and the HTTP status it maps to.

They subclass ``HTTPException`` so any FastAPI app answers with the right status even
before ``haltguard.security.views.register_error_handlers`` renders them as
``{"error": {"code", "message"}}``; the CLI prints ``.message``.
"""

from __future__ import annotations

from typing import ClassVar

from fastapi import HTTPException


class SecurityError(HTTPException):
    code: ClassVar[str] = "security_error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=self.http_status, detail=message, headers=headers)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInputError(SecurityError):
    code = "invalid_input"
    http_status = 422


class NotFoundError(SecurityError):
    code = "not_found"
    http_status = 404


class ConflictError(SecurityError):
    code = "conflict"
    http_status = 409


class NotAuthenticatedError(SecurityError):
    """No valid session or API token came with the request."""

    code = "not_authenticated"
    http_status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class LoginFailedError(SecurityError):
    """Username, password or code wrong; deliberately does not say which."""

    code = "login_failed"
    http_status = 401


class AccountLockedError(SecurityError):
    code = "account_locked"
    http_status = 423


class PermissionDeniedError(SecurityError):
    """Authenticated, but the role's permissions do not include the action."""

    code = "permission_denied"
    http_status = 403


class NetworkDeniedError(SecurityError):
    """The request came from outside the operator network allow-list."""

    code = "network_denied"
    http_status = 403
