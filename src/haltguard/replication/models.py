"""The shapes replication passes around: its settings, the lease record, the headers of a
batch message, and a standby's progress.

A batch message is the records of one group commit, encoded as the journal encodes them but
with a symbol table of their own (the first record of each market in the message names it),
so a message decodes by itself, whatever segment either side writes to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import msgspec

HEADER_FIRST_SEQ: Final = "Hg-First-Seq"
HEADER_LAST_SEQ: Final = "Hg-Last-Seq"
HEADER_LAST_TS: Final = "Hg-Last-Ts"
HEADER_RECORD_VERSION: Final = "Hg-Record-Version"
HEADER_TERM: Final = "Hg-Term"
HEADER_KIND: Final = "Hg-Kind"
HEADER_EXPECTED_LAST_SEQUENCE: Final = "Nats-Expected-Last-Sequence"
KIND_BATCH: Final = "batch"
KIND_TAKEOVER: Final = "takeover"
"""A message without records a new primary publishes first: it extends the stream, so any
earlier writer's next publish fails its expected-sequence check (it is fenced)."""
WRONG_LAST_SEQUENCE_CODES: Final = frozenset({10071, 10164})
"""JetStream's error codes for a publish whose expected last sequence did not match."""
LEASE_KEY: Final = "primary"


class Replication(StrEnum):
    OFF = "off"
    JETSTREAM = "jetstream"


class MarketsAfterFailover(StrEnum):
    AS_JOURNAL = "as_journal"  # markets come back as the journal says
    HALT_ALL = "halt_all"  # every trading market halted; a person resumes


@dataclass(frozen=True)
class ReplicationSettings:
    """``continuity.*`` from ``app/config.py``; checked there and again here."""

    replication: Replication = Replication.OFF
    nats_url: str = ""  # "": ``serve`` starts a local nats-server from the wheel
    replicas: int = 1  # the stream's replicas: 1 for one NATS node, 3 in a cluster
    lease_ttl_ms: int = 1_500
    stream: str = "HALTGUARD_JOURNAL"
    markets_after_failover: MarketsAfterFailover = MarketsAfterFailover.AS_JOURNAL
    publish_timeout_ms: int = 10_000  # a batch not acknowledged by then fail-stops the venue
    # (long enough to ride out a JetStream leader election: 4 to 9 s after a node is lost)
    snapshot_every: int = 100_000  # commands a standby applies between its snapshots

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= 5:
            raise ValueError("continuity.replicas must be between 1 and 5")
        if not 200 <= self.lease_ttl_ms <= 60_000:
            raise ValueError("continuity.lease_ttl_ms must be between 200 and 60000")
        if not self.stream.replace("_", "").replace("-", "").isalnum():
            raise ValueError("continuity.stream may hold only letters, digits, '_' and '-'")
        if self.publish_timeout_ms < 100 or self.snapshot_every < 1:
            raise ValueError("publish_timeout_ms must be 100 or more, snapshot_every 1 or more")

    @property
    def subject(self) -> str:
        return f"haltguard.journal.{self.stream}"

    @property
    def lease_bucket(self) -> str:
        return f"{self.stream}_lease"

    @property
    def renew_every_s(self) -> float:
        """A third of the lease: two renewals may fail before it runs out."""
        return self.lease_ttl_ms / 3_000


class LeaseRecord(msgspec.Struct, frozen=True):
    """Who holds the primary's lease, since when, until when (by the holder's clock)."""

    holder: str  # a node's name (host:port:pid)
    term: int  # grows by one at each change of holder
    renewed_ns: int
    ttl_ms: int

    def expired(self, now_ns: int) -> bool:
        return now_ns > self.renewed_ns + self.ttl_ms * 1_000_000


@dataclass(frozen=True)
class BatchHeader:
    """What a batch message says about its records, read from its headers."""

    kind: str
    first_seq: int
    last_seq: int
    last_ts: int
    term: int
    record_version: int


@dataclass
class FollowerProgress:
    """A standby's position, for ``/metrics`` and the failover decision."""

    applied_seq: int = 0  # the last command applied to this node's venue and journal
    stream_seq: int = 0  # the last stream message applied (or skipped as held already)
    stream_last_seq: int = 0  # the stream's last message, as last seen
    lag_commands: int = 0  # commands published but not applied here
    lag_ms: float = 0.0  # the newest applied command's age when it was applied
    batches_applied: int = 0
    snapshots: int = 0
    problem: str = ""  # why this node must not serve ("" when it may)
