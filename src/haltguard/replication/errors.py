"""Errors of the replication domain, each saying what went wrong and what to do, in English
and Japanese. :class:`ReplicationError` is the one base."""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError


class ReplicationError(HaltguardError):
    """A replication step refused or failed; ``next_step`` says what to do."""

    kind = ErrorKind.UNAVAILABLE
    code = "replication_failed"

    def __init__(self, message: str, *, message_ja: str, next_step: str) -> None:
        super().__init__(message, next_step=next_step, message_ja=message_ja)


class ReplicationConfigError(ReplicationError):
    """The replication settings cannot work (no NATS reachable, more replicas than servers)."""

    kind = ErrorKind.INVALID
    code = "replication_config"


class FencedError(ReplicationError):
    """The stream refused this writer's batch: another venue extended it (it holds the
    lease now). Nothing of the refused batch may be acknowledged."""

    code = "replication_fenced"


class StreamGapError(ReplicationError):
    """The stream does not continue this node's journal: a gap in command sequence numbers,
    or history the stream no longer retains. Such a node must not serve."""

    kind = ErrorKind.CONFLICT
    code = "replication_gap"


class PublishFailedError(ReplicationError):
    """The stream did not acknowledge a batch in time (NATS unreachable, no quorum)."""

    code = "replication_publish_failed"
