"""The lockout rule on its own: N failures lock for M minutes; the lock runs out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from haltguard.security import lockout
from haltguard.security.testing import fast_test_settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def fail(times: int, state: lockout.LockoutState, at: datetime) -> lockout.LockoutState:
    settings = fast_test_settings(lockout_failures_max=3, lockout_minutes=10)
    for _ in range(times):
        state = lockout.after_failure(state, at, settings)
    return state


def test_failures_below_the_bound_do_not_lock() -> None:
    state = fail(2, lockout.after_success(), T0)
    assert state.failures == 2 and not lockout.is_locked(state, T0)


def test_failure_reaching_the_bound_locks_for_the_configured_minutes() -> None:
    state = fail(3, lockout.after_success(), T0)
    assert state.locked_until == T0 + timedelta(minutes=10)
    assert lockout.is_locked(state, T0 + timedelta(minutes=9, seconds=59))
    assert not lockout.is_locked(state, T0 + timedelta(minutes=10))


def test_failure_after_the_lock_ran_out_starts_a_fresh_count() -> None:
    locked = fail(3, lockout.after_success(), T0)
    later = fail(1, locked, T0 + timedelta(minutes=11))
    assert later.failures == 1 and later.locked_until is None
