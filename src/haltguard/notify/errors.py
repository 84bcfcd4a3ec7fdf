"""Errors the notify domain answers with: each has a stable code, an HTTP status and a
message that says what to do next."""

from __future__ import annotations


class NotifyError(Exception):
    http_status = 422
    code = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(NotifyError):
    pass


class NotFoundError(NotifyError):
    http_status = 404
    code = "not_found"


class LinkRefusedError(NotifyError):
    """A confirm or unsubscribe link that is forged, damaged, expired or superseded."""

    http_status = 400
    code = "link_refused"


class RateLimitedError(NotifyError):
    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ConfirmationNotSentError(NotifyError):
    """The mail server did not take the confirmation email; the subscriber may try again."""

    http_status = 503
    code = "confirmation_not_sent"
