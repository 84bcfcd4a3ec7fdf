"""How the support desk answers: SLA timers, the anti-abuse limits of the public form and the
mail intake, the chat queue and the staffing target.

Plain values: ``app/config.py`` builds :class:`SupportSettings` from the configuration file
and the environment (``HALTGUARD_SUPPORT_*``); tests build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

FIRST_RESPONSE_S_DEFAULT: Final = 3_600
RESOLUTION_S_DEFAULT: Final = 86_400
FORM_PER_MINUTE_DEFAULT: Final = 5
EMAIL_BYTES_MAX_DEFAULT: Final = 256 * 1024
EMAIL_BYTES_LIMIT: Final = 10 * 1024 * 1024
CHAT_WAITING_MAX_DEFAULT: Final = 500
CHAT_WAITING_LIMIT: Final = 10_000
LINK_GRACE_S_DEFAULT: Final = 86_400
ANSWER_WITHIN_S_DEFAULT: Final = 20.0
SERVICE_LEVEL_DEFAULT: Final = 0.8
BULK_REPLY_TICKETS_MAX: Final = 200_000
"""The most tickets one bulk reply answers; a larger backlog is answered in several."""


class SupportSettingsError(ValueError):
    """A setting that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class SupportSettings:
    first_response_s: int = FIRST_RESPONSE_S_DEFAULT
    """The first-response SLA: seconds from a ticket's arrival to the first agent reply."""
    resolution_s: int = RESOLUTION_S_DEFAULT
    """The resolution SLA: seconds from a ticket's arrival to its resolution."""
    form_per_minute: int = FORM_PER_MINUTE_DEFAULT
    """Contact-form tickets one address may send a minute (the anti-abuse limit)."""
    email_bytes_max: int = EMAIL_BYTES_MAX_DEFAULT
    """The largest inbound email accepted; a larger one is refused with SMTP 552."""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 0
    """The inbound mail receiver `serve` runs; 0: none."""
    chat_waiting_max: int = CHAT_WAITING_MAX_DEFAULT
    """Chats waiting for an agent; one more is told to use the contact form."""
    link_grace_s: int = LINK_GRACE_S_DEFAULT
    """A ticket arriving up to this long after an incident was resolved is still about it."""
    answer_within_s: float = ANSWER_WITHIN_S_DEFAULT
    """The staffing target: answered within this many seconds ..."""
    service_level: float = SERVICE_LEVEL_DEFAULT
    """... for this share of contacts (0.8: 80%)."""
    bulk_reply_on_update: bool = True
    """Answer an incident's linked tickets by itself when a public update is published
    (``serve``'s support loop); off: agents send each bulk reply."""
    help_url: str = "/help/"
    """Where the public help centre is, as customers reach it (ends in ``/``)."""

    def __post_init__(self) -> None:
        whole = (
            ("support.first_response_s", self.first_response_s, 60, 30 * 86_400),
            ("support.resolution_s", self.resolution_s, 60, 90 * 86_400),
            ("support.form_per_minute", self.form_per_minute, 1, 10_000),
            ("support.email_bytes_max", self.email_bytes_max, 1_024, EMAIL_BYTES_LIMIT),
            ("support.smtp_port", self.smtp_port, 0, 65_535),
            ("support.chat_waiting_max", self.chat_waiting_max, 1, CHAT_WAITING_LIMIT),
            ("support.link_grace_s", self.link_grace_s, 0, 30 * 86_400),
        )
        for name, value, low, high in whole:
            if not low <= value <= high:
                raise SupportSettingsError(f"{name} must be {low}..{high}, got {value}")
        if not 0 < self.answer_within_s <= 3_600:
            raise SupportSettingsError(
                f"support.answer_within_s must be above 0 and at most 3600, got "
                f"{self.answer_within_s}")
        if not 0 < self.service_level < 1:
            raise SupportSettingsError(
                f"support.service_level must be between 0 and 1 (0.8 is 80%), got "
                f"{self.service_level}")
        if not self.help_url.endswith("/"):
            raise SupportSettingsError(f"support.help_url must end in '/', got {self.help_url}")
