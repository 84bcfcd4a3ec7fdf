"""The backoff rule on its own: from the bound on, each failure doubles the wait, up to the
cap; attempts are free again once a wait has long run out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from haltguard.security import lockout
from haltguard.security.testing import fast_test_settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RULE = lockout.BackoffRule(failures_max=3, wait_s_min=30, wait_s_max=600)


def fail(times: int, state: lockout.LockoutState, at: datetime) -> lockout.LockoutState:
    for _ in range(times):
        state = lockout.after_failure(state, at, RULE)
    return state


def test_failures_below_the_bound_do_not_hold_back() -> None:
    state = fail(2, lockout.after_success(), T0)
    assert state.failures == 2 and not lockout.is_locked(state, T0)


def test_the_failure_reaching_the_bound_holds_back_for_the_shortest_wait() -> None:
    state = fail(3, lockout.after_success(), T0)
    assert state.locked_until == T0 + timedelta(seconds=30)
    assert lockout.is_locked(state, T0 + timedelta(seconds=29))
    assert not lockout.is_locked(state, T0 + timedelta(seconds=30))


def test_each_further_failure_doubles_the_wait_up_to_the_cap() -> None:
    waits = [RULE.wait_after(failures) for failures in range(1, 10)]
    assert [wait.total_seconds() if wait else None for wait in waits] == [
        None, None, 30, 60, 120, 240, 480, 600, 600]


def test_a_failure_long_after_the_wait_ran_out_starts_a_fresh_count() -> None:
    locked = fail(5, lockout.after_success(), T0)
    assert locked.locked_until == T0 + timedelta(seconds=120)
    soon = fail(1, locked, T0 + timedelta(seconds=121))
    assert soon.failures == 6 and soon.locked_until is not None
    later = fail(1, locked, T0 + timedelta(seconds=120 + 600))
    assert later.failures == 1 and later.locked_until is None


def test_the_account_rule_comes_from_the_settings_and_caps_at_the_lockout_minutes() -> None:
    rule = lockout.account_rule(fast_test_settings(lockout_failures_max=4, lockout_minutes=10,
                                                   lockout_wait_s_min=5))
    assert rule == lockout.BackoffRule(failures_max=4, wait_s_min=5, wait_s_max=600)


def test_a_backoff_with_a_wait_below_one_second_is_refused() -> None:
    with pytest.raises(ValueError, match="wait_s_min <= wait_s_max"):
        lockout.BackoffRule(failures_max=3, wait_s_min=0, wait_s_max=10)
