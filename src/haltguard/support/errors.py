"""Errors of the support domain: :class:`SupportError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`. Each says what was wrong and what to do, in
English and Japanese."""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError


class SupportError(HaltguardError):
    """A refused support request. ``code`` is stable; both languages say what to do."""

    kind = ErrorKind.INVALID
    code = "support_invalid"

    def __init__(self, message: str, *, message_ja: str, next_step: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, next_step=next_step, message_ja=message_ja, headers=headers)


class SupportNotFoundError(SupportError):
    kind = ErrorKind.NOT_FOUND
    code = "support_not_found"


class SupportConflictError(SupportError):
    kind = ErrorKind.CONFLICT
    code = "support_conflict"


class FormFloodError(SupportError):
    """Too many contact-form tickets from one address; ``Retry-After`` says when to retry."""

    kind = ErrorKind.TOO_MANY
    code = "support_form_flood"


class ChatFullError(SupportError):
    kind = ErrorKind.UNAVAILABLE
    code = "support_chat_full"


class MailRefusedError(SupportError):
    """An inbound email that cannot become a ticket; ``smtp_code`` is the SMTP answer."""

    code = "support_mail_refused"

    def __init__(self, message: str, *, message_ja: str, next_step: str,
                 smtp_code: int) -> None:
        super().__init__(message, message_ja=message_ja, next_step=next_step)
        self.smtp_code = smtp_code


def not_found(what: str, what_ja: str, ident: object, listing: str) -> SupportNotFoundError:
    return SupportNotFoundError(
        f"no {what} {ident}", message_ja=f"{what_ja} {ident} は見つかりません",
        next_step=f"list them with {listing}")
