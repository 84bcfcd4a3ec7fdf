"""A real process killed with SIGKILL mid-load loses no acknowledged command."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path

from haltguard.journal import recover, verify

from .support import command_stream, replay

TESTS_ROOT = Path(__file__).resolve().parents[2]


def _run_and_kill(data_dir: Path, seed: int, run_s: float) -> int:
    """Start the writer, let it acknowledge for ``run_s``, SIGKILL it; return the last ack."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.journal.crash_writer", str(data_dir), str(seed)],
        cwd=TESTS_ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    started = child.stdout.readline()
    assert started.startswith("recovered"), started
    deadline = time.monotonic() + run_s
    acked = 0
    for line in child.stdout:
        acked = int(line.split()[1])
        if time.monotonic() >= deadline:
            break
    child.send_signal(signal.SIGKILL)
    for line in child.stdout:  # printed before the kill: acknowledged as well
        acked = int(line.split()[1])
    child.wait(10)
    assert child.returncode == -signal.SIGKILL, f"the writer ended by itself: {child.returncode}"
    return acked


def test_every_acknowledged_command_survives_sigkill_and_state_equals_a_replay(
    data_dir: Path,
) -> None:
    for round_number, run_s in enumerate((0.6, 0.4)):
        acked = _run_and_kill(data_dir, seed=round_number, run_s=run_s)
        assert acked > 0
        venue, report = recover(data_dir)
        assert report.last_seq >= acked, report.describe()
        recovered = list(itertools.islice(command_stream(), report.last_seq))
        assert venue.state_hash() == replay(recovered).state_hash()
        assert venue.check_invariants() == []
    assert verify(data_dir).ok
