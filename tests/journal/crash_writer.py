"""The child process of the crash test: recover, then journal commands until killed.

Prints ``ack <seq>`` (flushed) after each group commit returns: every seq up to it is
acknowledged. Also applies each batch to a venue and checkpoints now and then, so a kill
can land in the middle of a snapshot too. Real fsync throughout.
"""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

from haltguard.journal import Journal, recover

from .support import command_stream, ts_of

CHECKPOINT_EVERY = 1_500
BATCH_MAX = 16


def main(data_dir: Path, seed: int) -> None:
    venue, report = recover(data_dir)
    print(f"recovered {report.last_seq}", flush=True)
    journal = Journal(data_dir, segment_bytes_max=64 << 10)
    rng = random.Random(seed)
    commands = itertools.islice(command_stream(), report.last_seq, None)
    seq = report.last_seq
    since_checkpoint = 0
    while True:  # until killed
        size = rng.randint(1, BATCH_MAX)
        batch = [(s, ts_of(s), next(commands)) for s in range(seq + 1, seq + 1 + size)]
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


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
