"""The primary's side of the replicated journal: each group-commit batch becomes one
JetStream message, published with the expected last sequence.

The venue thread calls :meth:`BatchPublisher.publish` after appending a batch and before its
fsync, so the publish's round trip overlaps the disk's; it calls the returned ``confirm``
after the fsync and the apply, and only then are callers answered. Batches are strictly one
after another (the next batch is taken only after this one is answered), so the expected
last sequence is simply the previous message's.

Fencing: a new primary's first message (a takeover, no records) moves the stream on, so a
deposed primary's next publish fails its expected-sequence check and it acknowledges
nothing more. Losing the lease (seen by :class:`~haltguard.replication.lease.LeaseKeeper`)
refuses the next batch without publishing it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from haltguard.journal.codec import RECORD_VERSION, BatchEncoder
from haltguard.replication.errors import FencedError, PublishFailedError, ReplicationError
from haltguard.replication.link import StreamLink
from haltguard.replication.models import (
    HEADER_FIRST_SEQ,
    HEADER_KIND,
    HEADER_LAST_SEQ,
    HEADER_LAST_TS,
    HEADER_RECORD_VERSION,
    HEADER_TERM,
    KIND_BATCH,
    KIND_TAKEOVER,
)
from haltguard.venue.commands import Command


def encode_batch(stamped: Sequence[tuple[int, int, Command, Any]]) -> bytes:
    """The batch's records as the journal encodes them, with a symbol table of their own
    (so the message decodes by itself)."""
    encoder = BatchEncoder(stamped[0][0] - 1, 0)
    append = encoder.append
    for seq, ts, command, _ in stamped:
        append(seq, ts, command)
    return encoder.take()


def batch_headers(kind: str, first_seq: int, last_seq: int, last_ts: int,
                  term: int) -> dict[str, str]:
    return {HEADER_KIND: kind, HEADER_FIRST_SEQ: str(first_seq), HEADER_LAST_SEQ: str(last_seq),
            HEADER_LAST_TS: str(last_ts), HEADER_TERM: str(term),
            HEADER_RECORD_VERSION: str(RECORD_VERSION)}


class BatchPublisher:
    """The runtime's :class:`~haltguard.gateway.runtime.BatchReplicator` on JetStream."""

    def __init__(self, link: StreamLink, *, expected_last: int, term: int) -> None:
        self.link = link
        self.term = term
        self._expected_last = expected_last  # the stream's last message sequence
        self._timeout_s = link.settings.publish_timeout_ms / 1000
        self._refusal = ""  # set once: the lease was lost or a publish failed
        self._refused = threading.Event()
        self.batches = 0

    @property
    def stream_seq(self) -> int:
        """The stream's last message as this publisher knows it."""
        return self._expected_last

    @property
    def refused(self) -> threading.Event:
        """Set once this node may acknowledge nothing more (fenced, lease lost, failure)."""
        return self._refused

    @property
    def refusal(self) -> str:
        return self._refusal

    def refuse(self, reason: str) -> None:
        """Acknowledge nothing from now on (called when the lease is lost)."""
        if not self._refusal:
            self._refusal = reason
        self._refused.set()

    def takeover(self, last_seq: int, last_ts: int) -> int:
        """Publish the takeover message that fences every earlier writer; its sequence.
        FencedError when the stream moved since it was read (catch up and try again)."""
        headers = batch_headers(KIND_TAKEOVER, last_seq + 1, last_seq, last_ts, self.term)
        seq = self.link.call(self.link.publish(b"", headers, self._expected_last),
                             self._timeout_s + 1)
        self._expected_last = seq
        return seq

    def publish(self, stamped: Sequence[tuple[int, int, Command, Any]]) -> Callable[[], None]:
        if self._refusal:
            return self._refuse_now
        payload = encode_batch(stamped)
        headers = batch_headers(KIND_BATCH, stamped[0][0], stamped[-1][0], stamped[-1][1],
                                self.term)
        expected = self._expected_last
        future = self.link.submit(self.link.publish(payload, headers, expected))

        def confirm() -> None:
            try:
                seq = future.result(self._timeout_s + 1)
            except FutureTimeoutError:
                future.cancel()
                self.refuse("the stream did not acknowledge a batch in time")
                raise PublishFailedError(
                    f"no acknowledgement from the stream within {self._timeout_s:.1f} s",
                    message_ja="ストリームから時間内に確認応答がありません",
                    next_step="check the NATS cluster; a standby takes over once the lease "
                    "runs out",
                ) from None
            except ReplicationError as exc:
                self.refuse(str(exc))
                raise
            self._expected_last = seq
            self.batches += 1

        return confirm

    def _refuse_now(self) -> None:
        raise FencedError(
            f"this venue may not acknowledge commands any more: {self._refusal}",
            message_ja="このベニューはもう確認応答できません（主系ではありません）",
            next_step="nothing to do: it becomes a standby; clients follow /v1/health to the "
            "primary",
        )
