"""Waiting in a drill: a wait that never ends says what it awaited and what it last saw."""

from __future__ import annotations

import pytest

from haltguard.drill.waiting import DrillError, wait_for


def test_wait_for_says_what_it_awaited_and_what_it_last_saw() -> None:
    with pytest.raises(DrillError) as raised:
        wait_for(lambda: None, 0.1, "the venue to come back", seen=lambda: "still down")
    assert str(raised.value) == ("waited 0.1 s for the venue to come back; last seen: "
                                 "still down")
