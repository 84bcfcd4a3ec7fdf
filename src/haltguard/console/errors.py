"""Errors of the console: :class:`ConsoleError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`.

The console renders every refusal as a page in the operator's language; the refusals that come
from other domains (a permission, a venue refusal, a bad value) keep their own kind and code.
"""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError


class ConsoleError(HaltguardError):
    """A refused console request; ``message_ja`` always says the same in Japanese."""

    kind = ErrorKind.INVALID
    code = "console_invalid"


class CsrfRefusedError(ConsoleError):
    """A form without the session's token: possibly another site posting in the operator's
    name, so nothing is done."""

    kind = ErrorKind.FORBIDDEN
    code = "csrf_token_invalid"

    def __init__(self) -> None:
        super().__init__(
            "this form carried no valid security token, so nothing was done; reload the page "
            "and submit the form again",
            message_ja="フォームに有効なセキュリティトークンがないため、何も実行していません。"
                       "ページを再読み込みしてから、もう一度送信してください。",
        )


class FormValueError(ConsoleError):
    """A form field that is missing or wrong; the message names it."""

    code = "form_value_invalid"
