"""Where pages go out from: SMTP server, the public address for ack links, their secret.

Read from the environment once per call so a running service picks up what the operator set;
tests build :class:`ResponderSettings` directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

ACK_LINK_TTL_S_DEFAULT = 24 * 3600
ACK_LINK_TTL_S_MAX = 7 * 24 * 3600
CHANNEL_TIMEOUT_S_DEFAULT = 10.0
CHANNEL_TIMEOUT_S_MAX = 60.0


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
    public_url: str = "http://127.0.0.1:8000"
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


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from exc


def settings_from_env(env: Mapping[str, str] | None = None) -> ResponderSettings:
    """Settings from ``HALTGUARD_SMTP_*``, ``HALTGUARD_PUBLIC_URL``, ``HALTGUARD_ACK_*``."""
    source = os.environ if env is None else env
    security_text = source.get("HALTGUARD_SMTP_SECURITY", SmtpSecurity.NONE.value).lower()
    try:
        security = SmtpSecurity(security_text)
    except ValueError as exc:
        raise SettingsError(
            f"HALTGUARD_SMTP_SECURITY must be none, starttls or ssl, got {security_text!r}"
        ) from exc
    smtp = SmtpSettings(
        host=source.get("HALTGUARD_SMTP_HOST", "localhost"),
        port=_int(source, "HALTGUARD_SMTP_PORT", 465 if security is SmtpSecurity.SSL else 25),
        security=security,
        username=source.get("HALTGUARD_SMTP_USERNAME", ""),
        password=source.get("HALTGUARD_SMTP_PASSWORD", ""),
        sender=source.get("HALTGUARD_SMTP_FROM", "haltguard@localhost"),
    )
    return ResponderSettings(
        smtp=smtp,
        public_url=source.get("HALTGUARD_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
        ack_secret=source.get("HALTGUARD_ACK_SECRET", "").encode(),
        ack_link_ttl_s=_int(source, "HALTGUARD_ACK_LINK_TTL_S", ACK_LINK_TTL_S_DEFAULT),
    )
