"""The venue's durable journal: segmented log, snapshots, recovery, readers, verification.

Every command is appended and fsynced (group commit) before it is applied or acknowledged;
recovery rebuilds the venue from the newest snapshot plus the log's tail; readers follow
the log with the events each command produced; ``verify`` checks the whole retained journal
and ``repair`` (:mod:`haltguard.journal.repair`) cuts damage after the commit mark on an
operator's decision. Format and fsync policy: docs/adr/0001-journal-format-and-fsync-policy.md.
"""

from haltguard.journal.codec import check_journalable
from haltguard.journal.errors import (
    JournalCorruptionError,
    JournalError,
    JournalSequenceError,
    SnapshotError,
    UnjournalableCommandError,
)
from haltguard.journal.log import Journal
from haltguard.journal.reader import JournalReader
from haltguard.journal.recovery import RecoveryReport, recover
from haltguard.journal.segments import TornTail
from haltguard.journal.snapshots import write_snapshot
from haltguard.journal.verify import VerifyReport, verify

__all__ = [
    "Journal",
    "JournalCorruptionError",
    "JournalError",
    "JournalReader",
    "JournalSequenceError",
    "RecoveryReport",
    "SnapshotError",
    "TornTail",
    "UnjournalableCommandError",
    "VerifyReport",
    "check_journalable",
    "recover",
    "verify",
    "write_snapshot",
]
