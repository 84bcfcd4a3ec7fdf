"""The journal's errors. Each one names what is wrong and where, so an operator can act."""

from __future__ import annotations

from pathlib import Path


class JournalError(Exception):
    """Base class: the journal cannot do what was asked."""


class JournalCorruptionError(JournalError):
    """Acknowledged history is damaged or missing. Never repaired automatically.

    A torn tail (an incomplete last write) is not corruption: recovery cuts it off. Anything
    else (a bad record with valid records after it, a gap in sequence numbers, a missing
    segment, damage inside a sealed segment) stops recovery here, naming the file and byte
    offset, because skipping it would silently lose or reorder acknowledged commands.
    """

    def __init__(self, segment: Path | str, offset: int, problem: str) -> None:
        self.segment = str(segment)
        self.offset = offset
        self.problem = problem
        super().__init__(
            f"journal corrupted in {self.segment} at byte offset {offset}: {problem}. "
            "Acknowledged commands may be affected, so nothing was repaired; restore the data "
            "directory from a replica or backup, or have an engineer inspect that offset."
        )


class UnjournalableCommandError(JournalError, ValueError):
    """A command that cannot be stored (a number outside 64 bits, an oversized record).

    Raised before anything is buffered, so the runtime can refuse the command and reuse
    its sequence number.
    """


class JournalSequenceError(JournalError, ValueError):
    """An append whose ``seq`` is not the next one, or whose ``ts`` goes backwards."""


class SnapshotError(JournalError):
    """A snapshot file is unreadable, fails its checksum, or rebuilds a different state."""
