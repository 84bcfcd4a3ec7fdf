"""The backoff rule behind login throttling: failures past a bound make the next attempt wait.

Pure: the caller passes the counters and the time and stores what comes back. The same rule
holds back an account (its row keeps the counters, so an admin can clear them from any
process) and a source address (kept in memory by ``throttle.py``).

The ``failures_max``-th consecutive failure starts a wait of ``wait_s_min`` seconds; each
further failure doubles it, up to ``wait_s_max``. Attempts refused during a wait are not
failures (their credentials are not even checked), so a wait only grows with guesses that
were actually tried. Once a wait has been over for ``wait_s_max`` more, the count starts
afresh: an operator who comes back later gets the full number of attempts again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from haltguard.security.config import SecuritySettings

_DOUBLINGS_MAX = 30  # 2**30 times any wait is far past every cap


@dataclass(frozen=True)
class LockoutState:
    failures: int
    locked_until: datetime | None


@dataclass(frozen=True)
class BackoffRule:
    """When failures start to cost waiting time, and how much."""

    failures_max: int
    wait_s_min: int
    wait_s_max: int

    def __post_init__(self) -> None:
        if self.failures_max < 1 or not 1 <= self.wait_s_min <= self.wait_s_max:
            raise ValueError(
                f"a backoff needs failures_max >= 1 and 1 <= wait_s_min <= wait_s_max, got "
                f"{self.failures_max}, {self.wait_s_min}, {self.wait_s_max}"
            )

    def wait_after(self, failures: int) -> timedelta | None:
        """How long the ``failures``-th consecutive failure holds the next attempt back."""
        if failures < self.failures_max:
            return None
        doublings = min(failures - self.failures_max, _DOUBLINGS_MAX)
        return timedelta(seconds=min(self.wait_s_min << doublings, self.wait_s_max))

    @property
    def forget_after(self) -> timedelta:
        return timedelta(seconds=self.wait_s_max)


def account_rule(settings: SecuritySettings) -> BackoffRule:
    """The backoff of one account (an existing one or a username nobody has)."""
    return BackoffRule(
        settings.lockout_failures_max, settings.lockout_wait_s_min, settings.lockout_minutes * 60
    )


def source_rule(settings: SecuritySettings) -> BackoffRule:
    """The backoff of one source address, whatever usernames it tries."""
    return BackoffRule(
        settings.source_failures_max, settings.source_wait_s_min, settings.lockout_minutes * 60
    )


def is_locked(state: LockoutState, now: datetime) -> bool:
    return state.locked_until is not None and now < state.locked_until


def after_failure(state: LockoutState, now: datetime, rule: BackoffRule) -> LockoutState:
    """Count one more failure; from the bound on, each one starts a (longer) wait."""
    failures = state.failures
    if state.locked_until is not None and now >= state.locked_until + rule.forget_after:
        failures = 0
    failures += 1
    wait = rule.wait_after(failures)
    if wait is None:
        return LockoutState(failures=failures, locked_until=None)
    return LockoutState(failures=failures, locked_until=now + wait)


def after_success() -> LockoutState:
    return LockoutState(failures=0, locked_until=None)
