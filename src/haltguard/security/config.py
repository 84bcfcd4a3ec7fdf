"""The knobs of operator security, each with a named bound, read once from the environment.

Every limit lives here so the manual, the CLI help and the tests quote the same numbers.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Now = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime; tests pass a controllable one."""

PASSWORD_LENGTH_MIN = 12
PASSWORD_LENGTH_MAX = 256
LOCKOUT_FAILURES_MAX = 5
LOCKOUT_MINUTES = 15
SESSION_HOURS = 12
TOKEN_DAYS_MAX = 366
TOTP_ISSUER = "haltguard"
SESSION_COOKIE_NAME = "haltguard_session"

ALLOWED_NETWORKS_ENV = "HALTGUARD_OPERATOR_NETWORKS"
COOKIE_SECURE_ENV = "HALTGUARD_COOKIE_SECURE"


def utc_now() -> datetime:
    """The real clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class SecuritySettings:
    """Operator-security policy.

    ``lockout_failures_max`` consecutive failed logins lock an account for
    ``lockout_minutes``; sessions expire ``session_hours`` after login; an empty
    ``allowed_networks`` lets operators act from anywhere, otherwise only from those CIDRs.
    The argon2id cost defaults are RFC 9106's second recommended profile.
    """

    password_length_min: int = PASSWORD_LENGTH_MIN
    lockout_failures_max: int = LOCKOUT_FAILURES_MAX
    lockout_minutes: int = LOCKOUT_MINUTES
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

    @property
    def lockout_duration(self) -> timedelta:
        return timedelta(minutes=self.lockout_minutes)

    @property
    def session_duration(self) -> timedelta:
        return timedelta(hours=self.session_hours)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecuritySettings:
        """Settings from ``HALTGUARD_OPERATOR_NETWORKS`` (comma-separated CIDRs) and
        ``HALTGUARD_COOKIE_SECURE`` (``0`` only for plain-HTTP development)."""
        env = os.environ if environ is None else environ
        networks = parse_networks(env.get(ALLOWED_NETWORKS_ENV, ""))
        cookie_secure = env.get(COOKIE_SECURE_ENV, "1").strip() not in {"0", "false", "no"}
        return cls(allowed_networks=networks, cookie_secure=cookie_secure)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 2001:db8::/32"`` as networks; a bad entry is an error naming it."""
    networks: list[IPNetwork] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(
                f"{ALLOWED_NETWORKS_ENV}: {item!r} is not a network; write CIDRs such as "
                f"10.0.0.0/8, separated by commas"
            ) from exc
    return tuple(networks)


def address_allowed(host: str | None, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether a client address may perform operator actions; no list means everyone may.

    A host that is not an IP address (a Unix socket, a test client) is outside any list.
    """
    if not networks:
        return True
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
