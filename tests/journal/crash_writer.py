"""The child process of the crash test: recover, then journal commands until killed.

Prints ``ack <seq>`` (flushed) after each group commit returns: every seq up to it is
acknowledged. Also applies each batch to a venue and checkpoints now and then, so a kill
can land in the middle of a snapshot too. Real fsync throughout.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from haltguard.journal import Journal, recover

from .support import ts_of, workload

ORDERS = 100_000
CHECKPOINT_EVERY = 1_500
BATCH_MAX = 16


def main(data_dir: Path, seed: int) -> None:
    commands = workload(ORDERS)
    venue, report = recover(data_dir)
    print(f"recovered {report.last_seq}", flush=True)
    journal = Journal(data_dir, segment_bytes_max=64 << 10)
    rng = random.Random(seed)
    seq = report.last_seq
    since_checkpoint = 0
    while seq < len(commands):
        batch = [(s, ts_of(s), commands[s - 1]) for s in range(
            seq + 1, min(seq + rng.randint(1, BATCH_MAX), len(commands)) + 1
        )]
        journal.append_many(batch)
        journal.sync()
        print(f"ack {batch[-1][0]}", flush=True)
        for s, ts, command in batch:
            venue.apply(s, ts, command)
        seq = batch[-1][0]
        since_checkpoint += len(batch)
        if since_checkpoint >= CHECKPOINT_EVERY:
            journal.checkpoint(venue, ts_of(seq))
            since_checkpoint = 0
    journal.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
