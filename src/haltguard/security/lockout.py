"""The lockout rule: after N consecutive failures an account is refused for M minutes.

Pure: the caller passes the counters and the time and stores what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from haltguard.security.config import SecuritySettings


@dataclass(frozen=True)
class LockoutState:
    failures: int
    locked_until: datetime | None


def is_locked(state: LockoutState, now: datetime) -> bool:
    return state.locked_until is not None and now < state.locked_until


def after_failure(state: LockoutState, now: datetime, settings: SecuritySettings) -> LockoutState:
    """Count one more failure; the one that reaches the bound starts the lock.

    A lock that has run out starts a fresh count, so an operator who waited gets the full
    number of attempts again.
    """
    failures = state.failures
    if state.locked_until is not None and now >= state.locked_until:
        failures = 0
    failures += 1
    if failures >= settings.lockout_failures_max:
        return LockoutState(failures=failures, locked_until=now + settings.lockout_duration)
    return LockoutState(failures=failures, locked_until=None)


def after_success() -> LockoutState:
    return LockoutState(failures=0, locked_until=None)
