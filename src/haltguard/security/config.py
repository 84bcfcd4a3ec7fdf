"""The knobs of operator security, each with a named bound.

Every limit lives here so the manual, the CLI help and the tests quote the same numbers.
Plain values: ``app/config.py`` builds :class:`SecuritySettings` from the configuration file
and the environment (``[security]``, ``HALTGUARD_OPERATOR_NETWORKS``,
``HALTGUARD_COOKIE_SECURE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from haltguard.common.network import IPNetwork

PASSWORD_LENGTH_MIN = 12
PASSWORD_LENGTH_MAX = 256
LOCKOUT_FAILURES_MAX = 5
LOCKOUT_MINUTES = 15
LOCKOUT_WAIT_S_MIN = 30
SOURCE_FAILURES_MAX = 10
SOURCE_WAIT_S_MIN = 1
LOGIN_ATTEMPTS_PER_S = 20
LOGIN_ATTEMPTS_BURST = 40
KNOWN_ADDRESS_DAYS = 90
SESSION_HOURS = 12
TOKEN_DAYS_MAX = 366
TOTP_ISSUER = "haltguard"
SESSION_COOKIE_NAME = "haltguard_session"

ALLOWED_NETWORKS_ENV = "HALTGUARD_OPERATOR_NETWORKS"


@dataclass(frozen=True)
class SecuritySettings:
    """Operator-security policy.

    Login throttling (``throttle.py`` states the whole design): the
    ``lockout_failures_max``-th consecutive failed login of an account holds it back for
    ``lockout_wait_s_min`` seconds, each further failure doubles the wait, up to
    ``lockout_minutes``; the ``source_failures_max``-th failure from one address does the
    same for that address (from ``source_wait_s_min`` seconds, up to ``lockout_minutes``);
    at most ``login_attempts_per_s`` logins a second (burst ``login_attempts_burst``) are
    checked overall. None of it holds back an attempt from an address the account logged
    in from within ``known_address_days``: a correct password and TOTP code from there log
    in. Sessions expire ``session_hours`` after login; an empty ``allowed_networks`` lets
    operators act from anywhere, otherwise only from those CIDRs. The argon2id cost
    defaults are RFC 9106's second recommended profile.
    """

    password_length_min: int = PASSWORD_LENGTH_MIN
    lockout_failures_max: int = LOCKOUT_FAILURES_MAX
    lockout_minutes: int = LOCKOUT_MINUTES
    lockout_wait_s_min: int = LOCKOUT_WAIT_S_MIN
    source_failures_max: int = SOURCE_FAILURES_MAX
    source_wait_s_min: int = SOURCE_WAIT_S_MIN
    login_attempts_per_s: int = LOGIN_ATTEMPTS_PER_S
    login_attempts_burst: int = LOGIN_ATTEMPTS_BURST
    known_address_days: int = KNOWN_ADDRESS_DAYS
    session_hours: int = SESSION_HOURS
    allowed_networks: tuple[IPNetwork, ...] = ()
    cookie_secure: bool = True
    totp_issuer: str = TOTP_ISSUER
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65_536
    password_hash_parallelism: int = 4

    def __post_init__(self) -> None:
        if not 8 <= self.password_length_min <= PASSWORD_LENGTH_MAX:
            raise ValueError(
                f"password_length_min must be 8..{PASSWORD_LENGTH_MAX}, "
                f"got {self.password_length_min}"
            )
        if not 1 <= self.lockout_failures_max <= 100:
            raise ValueError(
                f"lockout_failures_max must be 1..100, got {self.lockout_failures_max}"
            )
        if not 1 <= self.lockout_minutes <= 24 * 60:
            raise ValueError(f"lockout_minutes must be 1..1440, got {self.lockout_minutes}")
        if not 1 <= self.session_hours <= 7 * 24:
            raise ValueError(f"session_hours must be 1..168, got {self.session_hours}")
        for name, low, high in (
            ("lockout_wait_s_min", 1, self.lockout_minutes * 60),
            ("source_failures_max", 1, 1_000),
            ("source_wait_s_min", 1, self.lockout_minutes * 60),
            ("login_attempts_per_s", 1, 10_000),
            ("login_attempts_burst", 1, 100_000),
            ("known_address_days", 1, 3_660),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be {low}..{high}, got {value}")

    @property
    def known_address_window(self) -> timedelta:
        return timedelta(days=self.known_address_days)

    @property
    def session_duration(self) -> timedelta:
        return timedelta(hours=self.session_hours)
