"""The sequencer: gap-free sequence numbers and time that never goes backwards."""

from __future__ import annotations

import pytest

from haltguard.gateway.sequencer import Sequencer


class SteppingClock:
    """A wall clock that reads the given values in turn (and repeats the last one)."""

    def __init__(self, *readings: int) -> None:
        self.readings = list(readings)

    def __call__(self) -> int:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def test_sequence_numbers_continue_from_the_recovered_seq_without_gaps() -> None:
    sequencer = Sequencer(last_seq=41, last_ts=1_000, clock=SteppingClock(2_000, 3_000, 4_000))

    stamps = [sequencer.stamp() for _ in range(3)]

    assert stamps == [(42, 2_000), (43, 3_000), (44, 4_000)]
    assert (sequencer.last_seq, sequencer.last_ts) == (44, 4_000)


def test_a_clock_stepping_back_is_clamped_to_the_last_stamp_and_counted() -> None:
    sequencer = Sequencer(clock=SteppingClock(5_000, 4_000, 6_000))

    times = [sequencer.stamp()[1] for _ in range(3)]

    assert times == [5_000, 5_000, 6_000]
    assert sequencer.clock_steps_back == 1


def test_a_clock_behind_the_recovered_time_never_moves_time_back() -> None:
    sequencer = Sequencer(last_seq=10, last_ts=9_000, clock=SteppingClock(1_000))

    assert sequencer.stamp() == (11, 9_000)
    assert sequencer.now() == 9_000


def test_take_back_lets_the_next_command_reuse_the_seq_and_time() -> None:
    sequencer = Sequencer(last_seq=5, last_ts=100, clock=SteppingClock(200, 300))
    sequencer.stamp()

    sequencer.take_back()

    assert (sequencer.last_seq, sequencer.last_ts) == (5, 100)
    assert sequencer.stamp() == (6, 300)


def test_take_back_undoes_only_the_most_recent_stamp() -> None:
    sequencer = Sequencer(clock=SteppingClock(1))
    sequencer.stamp()
    sequencer.take_back()

    with pytest.raises(RuntimeError):
        sequencer.take_back()


def test_negative_starting_points_are_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        Sequencer(last_seq=-1)
