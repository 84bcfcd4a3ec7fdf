"""The names of what operator security writes to the audit chain, so they exist once."""

from __future__ import annotations

from enum import StrEnum


class SecurityEvent(StrEnum):
    LOGIN_SUCCEEDED = "operator.login_succeeded"
    LOGIN_FAILED = "operator.login_failed"
    LOCKED_OUT = "operator.locked_out"
    LOGIN_THROTTLED = "operator.login_throttled"
    LOGIN_SOURCE_THROTTLED = "security.login_source_throttled"
    LOGIN_BLOCKED = "security.login_blocked"
    LOGIN_HOLD_LIFTED = "security.login_hold_lifted"
    OPERATOR_UNLOCKED = "operator.unlocked"
    LOGGED_OUT = "operator.logged_out"
    OPERATOR_CREATED = "operator.created"
    ROLE_CHANGED = "operator.role_changed"
    OPERATOR_DISABLED = "operator.disabled"
    OPERATOR_ENABLED = "operator.enabled"
    TOTP_RESET = "operator.totp_reset"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    NETWORK_DENIED = "security.network_denied"
    PERMISSION_DENIED = "security.permission_denied"
