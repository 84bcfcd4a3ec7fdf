"""How customers' own protection behaves: plain values ``app/config.py`` builds from the
configuration (``customers.*``); tests build :class:`CustomerSettings` directly."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from haltguard.customers.signing import (
    RECEIVE_WINDOW_MS_DEFAULT,
    RECEIVE_WINDOW_MS_MAX,
    REPLAY_ENTRIES_MAX_DEFAULT,
)

ADDRESS_HOLD_S_DEFAULT: Final = 24 * 3600
KEY_REFRESH_S_DEFAULT: Final = 1.0
TRAVEL_SPEED_KMH_MAX_DEFAULT: Final = 1_000
SIGNATURE_FAILURES_MAX_DEFAULT: Final = 20
SIGNATURE_FAILURES_WINDOW_S: Final = 60
BURST_ACCOUNTS_MIN_DEFAULT: Final = 20
BURST_WINDOW_S: Final = 600


class AuthMode(StrEnum):
    """Who may act on an account through the public ``/v1`` API."""

    KEYS = "keys"
    """Signed requests only: each key acts on its own account."""
    OPEN = "open"
    """The ``account`` field is taken as sent: the demo and loopback use only."""
    AUTO = "auto"
    """``open`` for ``--demo`` or a server bound to loopback only, else ``keys``."""


class CustomerSettingsError(ValueError):
    """A setting that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class CustomerSettings:
    auth: AuthMode = AuthMode.AUTO
    receive_window_ms: int = RECEIVE_WINDOW_MS_DEFAULT
    """How far a request's timestamp may be from the gateway's clock, either side."""
    replay_entries_max: int = REPLAY_ENTRIES_MAX_DEFAULT
    key_refresh_s: float = KEY_REFRESH_S_DEFAULT
    """How often the gateway looks for keys created, revoked or locked elsewhere."""
    address_hold_s: int = ADDRESS_HOLD_S_DEFAULT
    """A new withdrawal address is usable only this long after it was added."""
    withdrawal_review_minor: tuple[tuple[str, int], ...] = ()
    """Per asset: a withdrawal above this (minor units) is held for review."""
    location_header: str = ""
    """A header a trusted proxy sets to "latitude,longitude" of the client; "" : none."""
    travel_speed_kmh_max: int = TRAVEL_SPEED_KMH_MAX_DEFAULT
    signature_failures_max: int = SIGNATURE_FAILURES_MAX_DEFAULT
    """Refused signatures for one account within a minute before detection hears of it."""
    burst_accounts_min: int = BURST_ACCOUNTS_MIN_DEFAULT
    """Accounts adding keys (or addresses) within ten minutes before it counts as a burst."""
    totp_issuer: str = "haltguard"
    official_domains: tuple[str, ...] = ()
    """Shown in the security centre: where customers reach the exchange."""
    official_senders: tuple[str, ...] = ()
    """Shown in the security centre: the addresses the exchange's emails come from."""

    def __post_init__(self) -> None:
        if not 0 < self.receive_window_ms <= RECEIVE_WINDOW_MS_MAX:
            raise CustomerSettingsError(
                f"customers.receive_window_ms must be 1..{RECEIVE_WINDOW_MS_MAX}, not "
                f"{self.receive_window_ms}")
        for name in ("replay_entries_max", "travel_speed_kmh_max", "signature_failures_max",
                     "burst_accounts_min"):
            if getattr(self, name) < 1:
                raise CustomerSettingsError(f"customers.{name} must be at least 1")
        if self.address_hold_s < 0:
            raise CustomerSettingsError("customers.address_hold_s must not be negative")
        if self.key_refresh_s <= 0:
            raise CustomerSettingsError("customers.key_refresh_s must be positive")

    def review_limit_minor(self, asset: str) -> int | None:
        """The amount above which a withdrawal of ``asset`` is held; None: never held."""
        for code, limit in self.withdrawal_review_minor:
            if code == asset:
                return limit
        return None


def parse_review_limits(items: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """``("BTC=10000000", ...)`` as pairs; :class:`CustomerSettingsError` naming a bad one."""
    limits = []
    for item in items:
        asset, _, amount = item.partition("=")
        if not asset or not asset.isalnum() or not asset.isupper() or not amount.isdigit():
            raise CustomerSettingsError(
                f"customers.withdrawal_review_minor item {item!r}: write ASSET=MINOR_UNITS, "
                "e.g. BTC=10000000 (0.1 BTC)")
        limits.append((asset, int(amount)))
    return tuple(limits)


def resolved_mode(mode: AuthMode, *, demo: bool, host: str) -> tuple[AuthMode, str]:
    """The mode ``serve`` runs in, and why (what it prints at start)."""
    if mode is not AuthMode.AUTO:
        return mode, "customers.auth"
    if demo:
        return AuthMode.OPEN, "customers.auth = auto and --demo"
    if host in {"127.0.0.1", "localhost", "::1"}:
        return AuthMode.OPEN, f"customers.auth = auto and the server listens on {host} only"
    return AuthMode.KEYS, f"customers.auth = auto and the server listens on {host}"
