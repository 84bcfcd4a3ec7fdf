"""How notices leave: SMTP (shared with paging), public address for links, outbox limits.

Plain values: ``app/config.py`` builds them from the configuration file and the environment
(``HALTGUARD_NOTIFY_*`` plus the shared ``HALTGUARD_SMTP_*`` and ``HALTGUARD_PUBLIC_URL``);
tests build :class:`NotifySettings` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from haltguard.responders.settings import PUBLIC_URL_DEFAULT, SmtpSettings

LEASE_S_DEFAULT = 120
ATTEMPTS_MAX_DEFAULT = 8
ATTEMPTS_MAX_LIMIT = 50
BACKOFF_BASE_S_DEFAULT = 30
BACKOFF_MAX_S_DEFAULT = 3600
BATCH_MAX_DEFAULT = 200
BATCH_MAX_LIMIT = 5_000
SENDERS_DEFAULT = 2
SENDERS_MAX = 32
CONFIRMATION_TTL_S_DEFAULT = 7 * 24 * 3600
CONFIRMATION_RESEND_S_DEFAULT = 600
SUBSCRIBE_REQUESTS_PER_MINUTE_DEFAULT = 10
LINK_REQUESTS_PER_MINUTE_DEFAULT = 600
CHANNEL_TIMEOUT_S_DEFAULT = 10.0
POLL_INTERVAL_S_DEFAULT = 0.5
SERVICE_NAME_DEFAULT = "haltguard status"


class NotifySettingsError(ValueError):
    """A setting that cannot be used; the message names the variable and the fix."""


@dataclass(frozen=True)
class NotifySettings:
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    public_url: str = PUBLIC_URL_DEFAULT
    """Where subscribers reach the public endpoints; confirm and unsubscribe links use it."""
    service_name: str = SERVICE_NAME_DEFAULT
    """Shown in emails and pages as the sender's name."""
    secret: bytes = field(default=b"", repr=False)
    """Signs confirm and unsubscribe links; empty means the one kept in the database."""
    allow_private_webhook_hosts: bool = False
    """Webhooks to loopback or private addresses are refused unless this is set (tests)."""
    channel_timeout_s: float = CHANNEL_TIMEOUT_S_DEFAULT
    lease_s: int = LEASE_S_DEFAULT
    """How long a claimed delivery belongs to its worker; after that another may retry it."""
    attempts_max: int = ATTEMPTS_MAX_DEFAULT
    backoff_base_s: int = BACKOFF_BASE_S_DEFAULT
    backoff_max_s: int = BACKOFF_MAX_S_DEFAULT
    batch_max: int = BATCH_MAX_DEFAULT
    """Deliveries one worker claims at a time."""
    senders: int = SENDERS_DEFAULT
    """Sender threads, each with its own SMTP connection kept open between messages."""
    poll_interval_s: float = POLL_INTERVAL_S_DEFAULT
    """How long an idle sender waits before looking for due deliveries again."""
    confirmation_ttl_s: int = CONFIRMATION_TTL_S_DEFAULT
    confirmation_resend_s: int = CONFIRMATION_RESEND_S_DEFAULT
    """A pending address gets at most one confirmation email per this many seconds."""
    subscribe_requests_per_minute: int = SUBSCRIBE_REQUESTS_PER_MINUTE_DEFAULT
    """Per client address, for the public subscribe endpoints."""
    link_requests_per_minute: int = LINK_REQUESTS_PER_MINUTE_DEFAULT
    """Per client address, for confirm and unsubscribe links. Higher, because mail
    providers send one-click unsubscribes for many users from few addresses."""

    def __post_init__(self) -> None:
        if not self.public_url.startswith(("http://", "https://")):
            raise NotifySettingsError(
                f"HALTGUARD_PUBLIC_URL must start with http:// or https://, got "
                f"{self.public_url!r}"
            )
        if self.secret and len(self.secret) < 32:
            raise NotifySettingsError(
                "HALTGUARD_NOTIFY_SECRET must be at least 32 characters; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        checks = (
            ("HALTGUARD_NOTIFY_LEASE_S", self.lease_s, 1, 3600),
            ("HALTGUARD_NOTIFY_ATTEMPTS_MAX", self.attempts_max, 1, ATTEMPTS_MAX_LIMIT),
            ("HALTGUARD_NOTIFY_BATCH_MAX", self.batch_max, 1, BATCH_MAX_LIMIT),
            ("HALTGUARD_NOTIFY_SENDERS", self.senders, 1, SENDERS_MAX),
            ("HALTGUARD_NOTIFY_BACKOFF_BASE_S", self.backoff_base_s, 0, 86_400),
            ("HALTGUARD_NOTIFY_BACKOFF_MAX_S", self.backoff_max_s, 0, 7 * 86_400),
            ("confirmation_ttl_s", self.confirmation_ttl_s, 60, 30 * 86_400),
            ("confirmation_resend_s", self.confirmation_resend_s, 0, 86_400),
            ("subscribe_requests_per_minute", self.subscribe_requests_per_minute, 1, 10_000),
            ("link_requests_per_minute", self.link_requests_per_minute, 1, 100_000),
        )
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise NotifySettingsError(f"{name} must be {low}..{high}, got {value}")
        if not 0 < self.channel_timeout_s <= 60:
            raise NotifySettingsError("channel timeout must be within (0, 60] s")
        if not 0.01 <= self.poll_interval_s <= 60:
            raise NotifySettingsError("poll interval must be within [0.01, 60] s")

    @property
    def link_host(self) -> str:
        """The public host name, used as the Message-ID domain and List-Id."""
        return urlsplit(self.public_url).hostname or "localhost"
