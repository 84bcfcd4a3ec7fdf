"""Errors of the customers domain: :class:`CustomerError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`, in English and Japanese with what to do."""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError
from haltguard.customers.signing import REFUSAL_TEXTS, Refusal

_REFUSAL_KINDS: dict[Refusal, ErrorKind] = {
    Refusal.MISSING: ErrorKind.UNAUTHENTICATED,
    Refusal.MALFORMED: ErrorKind.UNAUTHENTICATED,
    Refusal.UNKNOWN_KEY: ErrorKind.UNAUTHENTICATED,
    Refusal.REVOKED: ErrorKind.UNAUTHENTICATED,
    Refusal.EXPIRED: ErrorKind.UNAUTHENTICATED,
    Refusal.STALE: ErrorKind.UNAUTHENTICATED,
    Refusal.BAD_SIGNATURE: ErrorKind.UNAUTHENTICATED,
    Refusal.REPLAYED: ErrorKind.UNAUTHENTICATED,
    Refusal.REPLAY_GUARD_FULL: ErrorKind.UNAVAILABLE,
    Refusal.ADDRESS: ErrorKind.FORBIDDEN,
    Refusal.PERMISSION: ErrorKind.FORBIDDEN,
    Refusal.ACCOUNT: ErrorKind.FORBIDDEN,
    Refusal.LOCKED: ErrorKind.FORBIDDEN,
}


def refusal_kind(refusal: Refusal) -> ErrorKind:
    return _REFUSAL_KINDS[refusal]


class CustomerError(HaltguardError):
    """A refused customer request. ``code`` is stable; both languages say what to do."""

    kind = ErrorKind.INVALID
    code = "customer_invalid"

    def __init__(self, message: str, *, message_ja: str, next_step: str = "",
                 kind: ErrorKind | None = None, code: str | None = None) -> None:
        super().__init__(message, message_ja=message_ja, next_step=next_step or None,
                         kind=kind, code=code)


class SignatureRefusedError(CustomerError):
    """A signed request the gateway or the customer API refused (counted by reason)."""

    def __init__(self, refusal: Refusal) -> None:
        en, ja = REFUSAL_TEXTS[refusal]
        super().__init__(en, message_ja=ja, kind=refusal_kind(refusal), code=refusal.value)
        self.refusal = refusal


class SecondFactorRequiredError(CustomerError):
    kind = ErrorKind.FORBIDDEN
    code = "second_factor_required"

    def __init__(self, what: str, what_ja: str) -> None:
        super().__init__(
            f"{what} needs two-factor authentication: turn it on (POST "
            "/api/customers/me/2fa) and send the current code",
            message_ja=f"{what_ja}には二段階認証が必要です。二段階認証を有効にし、現在のコードを"
                       "送信してください")


class SecondFactorWrongError(CustomerError):
    kind = ErrorKind.FORBIDDEN
    code = "second_factor_wrong"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the second-factor code was refused ({reason}); send the code your "
            "authenticator shows now, or one unused recovery code",
            message_ja="二段階認証コードが正しくありません。認証アプリの現在のコード、または未使用の"
                       "リカバリーコードを送信してください")


class AccountLockedError(CustomerError):
    kind = ErrorKind.FORBIDDEN
    code = "account_locked"

    def __init__(self) -> None:
        en, ja = REFUSAL_TEXTS[Refusal.LOCKED]
        super().__init__(en, message_ja=ja)


class CustomerNotFoundError(CustomerError):
    kind = ErrorKind.NOT_FOUND
    code = "not_found"


class CustomerConflictError(CustomerError):
    kind = ErrorKind.CONFLICT
    code = "customer_conflict"
