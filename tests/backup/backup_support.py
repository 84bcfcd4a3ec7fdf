"""Helpers for the backup tests: a venue journal written to disk, a database with rows."""

from __future__ import annotations

from pathlib import Path

from haltguard.journal import Journal
from haltguard.venue.commands import Command
from haltguard.venue.engine import Venue
from haltguard.venue.workload import order_flow, setup_commands

ACCOUNTS = 20
S3_ACCESS_KEY = "haltguard-test"
S3_SECRET_KEY = "haltguard-test-secret-0123"
S3_BUCKET = "haltguard-backups"
TS_START = 1_700_000_000_000_000_000
TS_STEP = 1_000_000  # 1 ms between commands


def workload(orders: int, seed: int = 7) -> list[Command]:
    """Setup (assets, market, funded accounts) followed by ``orders`` order commands."""
    commands = setup_commands(accounts=ACCOUNTS)
    commands.extend(order_flow(seed, orders, first_seq=len(commands) + 1, accounts=ACCOUNTS))
    return commands


def ts_of(seq: int) -> int:
    return TS_START + seq * TS_STEP


def write_journal(
    data_dir: Path, commands: list[Command], *, checkpoint_every: int = 0,
    segment_bytes_max: int = 64 << 20,
) -> Venue:
    """Journal ``commands`` (seq 1..n) in batches of 50, snapshot every ``checkpoint_every``
    commands (0: never); return the venue as applied."""
    journal = Journal(data_dir, segment_bytes_max=segment_bytes_max, unsafe_skip_fsync=True)
    venue = Venue()
    for seq, command in enumerate(commands, 1):
        journal.append(seq, ts_of(seq), command)
        venue.apply(seq, ts_of(seq), command)
        if seq % 50 == 0 or seq == len(commands):
            journal.sync()
            if checkpoint_every and seq % checkpoint_every == 0:
                journal.checkpoint(venue, ts_of(seq))
    journal.close()
    return venue
