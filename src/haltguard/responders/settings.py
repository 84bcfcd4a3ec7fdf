"""Where pages go out from: SMTP server, the public address for ack links, their secret.

Plain values: ``app/config.py`` builds them from the configuration file and the environment
(``HALTGUARD_SMTP_*``, ``HALTGUARD_PUBLIC_URL``, ``HALTGUARD_ACK_*``); tests build
:class:`ResponderSettings` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

ACK_LINK_TTL_S_DEFAULT = 24 * 3600
ACK_LINK_TTL_S_MAX = 7 * 24 * 3600
CHANNEL_TIMEOUT_S_DEFAULT = 10.0
CHANNEL_TIMEOUT_S_MAX = 60.0
PUBLIC_URL_DEFAULT = "http://127.0.0.1:8000"
"""``serve``'s own address with its default host and port (``app/config.py``)."""


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable and the fix."""


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    security: SmtpSecurity = SmtpSecurity.NONE
    username: str = ""
    password: str = field(default="", repr=False)
    sender: str = "haltguard@localhost"
    timeout_s: float = CHANNEL_TIMEOUT_S_DEFAULT


@dataclass(frozen=True)
class ResponderSettings:
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    public_url: str = PUBLIC_URL_DEFAULT
    """Base address responders can reach; ack links are built on it."""
    ack_secret: bytes = field(default=b"", repr=False)
    """Empty means: use the secret generated once and kept in the database."""
    ack_link_ttl_s: int = ACK_LINK_TTL_S_DEFAULT
    channel_timeout_s: float = CHANNEL_TIMEOUT_S_DEFAULT

    def __post_init__(self) -> None:
        if not 60 <= self.ack_link_ttl_s <= ACK_LINK_TTL_S_MAX:
            raise SettingsError(
                f"HALTGUARD_ACK_LINK_TTL_S must be 60..{ACK_LINK_TTL_S_MAX}, "
                f"got {self.ack_link_ttl_s}"
            )
        if not 0 < self.channel_timeout_s <= CHANNEL_TIMEOUT_S_MAX:
            raise SettingsError(
                f"channel timeout must be within (0, {CHANNEL_TIMEOUT_S_MAX}] s"
            )
        if self.ack_secret and len(self.ack_secret) < 32:
            raise SettingsError(
                "HALTGUARD_ACK_SECRET must be at least 32 characters; "
                "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
