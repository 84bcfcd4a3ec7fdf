"""The standby's side: follow the journal stream into this node's own journal and venue.

Each batch message is checked before anything is written: its commands must continue this
node's journal without a gap (a message whose commands this node already holds is skipped,
one that starts past the next expected seq is a gap: the stream no longer holds what this
node misses). Then its records are appended and fsynced to the local journal, applied to
the local venue, and the position saved (``replication.json``, rewritten after each batch;
it may lag, never lead: a lagging one only makes the next start skip messages it holds).
Snapshots are written every ``snapshot_every`` commands, as the primary's runtime does.

A node with a problem (a gap, a command its venue refuses) stops following and says why in
:attr:`FollowerProgress.problem`; the failover flow will not let such a node take the lease,
so it never serves a partial history.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from haltguard.common.clock import NsClock
from haltguard.journal import Journal, JournalReader, recover
from haltguard.journal.codec import RecordDecoder
from haltguard.replication.errors import StreamGapError
from haltguard.replication.link import StreamLink
from haltguard.replication.models import (
    HEADER_FIRST_SEQ,
    HEADER_KIND,
    HEADER_LAST_SEQ,
    HEADER_LAST_TS,
    HEADER_RECORD_VERSION,
    HEADER_TERM,
    KIND_TAKEOVER,
    BatchHeader,
    FollowerProgress,
)
from haltguard.venue.commands import Command
from haltguard.venue.engine import Venue

log = logging.getLogger(__name__)

POSITION_FILE = "replication.json"
WAIT_S = 0.05
LAG_SAMPLES_MAX = 10_000
MESSAGES_PER_SYNC_MAX = 256  # stream messages a standby journals with one fsync
DIVERGED_PREFIX = "diverged-"
JOURNAL_ENTRIES = ("segments", "snapshots", "quarantine.json", POSITION_FILE)
"""What of a data directory is the journal (the rest, a database or keys, stays put)."""


def read_header(headers: dict[str, str] | None) -> BatchHeader:
    found = headers or {}
    return BatchHeader(
        kind=found.get(HEADER_KIND, ""),
        first_seq=int(found.get(HEADER_FIRST_SEQ, "0")),
        last_seq=int(found.get(HEADER_LAST_SEQ, "0")),
        last_ts=int(found.get(HEADER_LAST_TS, "0")),
        term=int(found.get(HEADER_TERM, "0")),
        record_version=int(found.get(HEADER_RECORD_VERSION, "0")),
    )


def decode_batch(data: bytes, header: BatchHeader) -> list[tuple[int, int, Command]]:
    """The (seq, ts, command) of every record of a batch message; StreamGapError when the
    records are damaged or do not run from ``first_seq`` to ``last_seq``."""
    records: list[tuple[int, int, Command]] = []
    try:
        decoder = RecordDecoder(header.record_version)
    except ValueError as exc:
        raise _gap(f"a batch in a record format this node cannot read ({exc})") from None
    _, next_seq, stop = decoder.decode_span(
        data, 0, header.first_seq, sink=lambda s, t, c: records.append((s, t, c)))
    if stop is not None or next_seq != header.last_seq + 1:
        raise _gap(f"the batch for seq {header.first_seq}..{header.last_seq} does not decode "
                   f"whole ({stop.reason if stop else f'ends at {next_seq - 1}'})")
    return records


def _gap(detail: str) -> StreamGapError:
    return StreamGapError(
        f"this standby cannot continue its journal from the stream: {detail}",
        message_ja="待機系はストリームから自分のジャーナルを続けられません（欠落があります）",
        next_step="it will not take the primary's lease. Rebuild it: stop it, replace its data "
        "directory with a copy of a snapshot of the primary's (or an empty one while the "
        "stream still holds the whole history), and start it again",
    )


class Follower:
    """Applies the journal stream to a data directory's venue and journal, on a thread."""

    def __init__(self, data_dir: Path, link: StreamLink, *, clock: NsClock = time.time_ns,
                 snapshot_every: int | None = None) -> None:
        self.data_dir = data_dir
        self.link = link
        self.clock = clock
        self.snapshot_every = snapshot_every or link.settings.snapshot_every
        data_dir.mkdir(parents=True, exist_ok=True)
        self.venue: Venue
        self.venue, _ = recover(data_dir, repair=True)
        self.journal = Journal(data_dir)
        self.last_ts = self.venue.last_ts
        self.progress = FollowerProgress(applied_seq=self.venue.last_seq,
                                         stream_seq=self._saved_stream_seq())
        self.term = 0
        self._received_last_seq = self.venue.last_seq
        self._inbox: queue.Queue[Msg] = queue.Queue()
        self._subscription: Any = None
        self._stop = threading.Event()
        self._caught_up = threading.Condition()
        self._thread: threading.Thread | None = None
        self._since_snapshot = 0
        self.lags_ms: deque[float] = deque(maxlen=LAG_SAMPLES_MAX)  # per batch, newest last

    # -- position --------------------------------------------------------------------------

    def _saved_stream_seq(self) -> int:
        try:
            saved = json.loads((self.data_dir / POSITION_FILE).read_text())
        except (OSError, ValueError):
            return 0
        # Only a position no further than the journal is usable; a later one cannot happen
        # (it is written after the journal's sync) unless files were copied by hand.
        if int(saved.get("applied_seq", -1)) > self.venue.last_seq:
            return 0
        return int(saved.get("stream_seq", 0))

    def _save_position(self) -> None:
        path = self.data_dir / POSITION_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"stream_seq": self.progress.stream_seq,
                                         "applied_seq": self.progress.applied_seq}))
        os.replace(temporary, path)

    # -- running ---------------------------------------------------------------------------

    def start(self) -> Follower:
        """Subscribe from the next stream message and apply on a thread of its own."""
        self._subscription = self.link.call(
            self.link.subscribe_from(self.progress.stream_seq + 1, self._inbox))
        self._thread = threading.Thread(target=self._run, name="standby-apply", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = [self._inbox.get(timeout=WAIT_S)]
            except queue.Empty:
                continue
            while len(messages) < MESSAGES_PER_SYNC_MAX:  # group commit, as the primary's
                try:
                    messages.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self.apply_messages(messages)
            except StreamGapError as exc:
                self.progress.problem = str(exc)
                log.error("%s; %s", exc, exc.next_step)
                return
            except Exception as exc:  # the venue refused a replicated command: a bug
                self.progress.problem = (
                    f"applying the stream failed at seq {self.progress.applied_seq + 1}: "
                    f"{exc!r}; this standby stopped following and will not take the lease")
                log.exception("standby stopped")
                return
            finally:
                with self._caught_up:
                    self._caught_up.notify_all()

    def apply_message(self, message: Msg) -> None:
        """:meth:`apply_messages` for one message."""
        self.apply_messages([message])

    def apply_messages(self, messages: list[Msg]) -> None:
        """Check the messages in order, journal their new records with one fsync, apply
        them, save the position; skip what this node holds. On a gap, what came before it
        is committed and StreamGapError raised."""
        next_seq = self.progress.applied_seq + 1  # the next command this node needs
        stream_seq = self.progress.stream_seq
        fresh: list[tuple[int, int, Command]] = []
        headers: list[BatchHeader] = []
        pending = 0
        try:
            for message in messages:
                message_seq = int(message.metadata.sequence.stream)
                if message_seq <= stream_seq:
                    continue  # delivered again after a reconnect
                header = read_header(message.headers)
                if header.kind == KIND_TAKEOVER:
                    self.term = header.term
                elif header.last_seq >= next_seq:
                    if header.first_seq > next_seq:
                        raise _gap(f"the next message starts at seq {header.first_seq} but "
                                   f"this node holds up to seq {next_seq - 1} (the stream no "
                                   "longer retains the commands in between)")
                    fresh += [r for r in decode_batch(message.data, header)
                              if r[0] >= next_seq]
                    next_seq = header.last_seq + 1
                    headers.append(header)
                stream_seq = message_seq
                pending = int(message.metadata.num_pending or 0)
        finally:
            self._commit(fresh, headers, stream_seq, pending)

    def _commit(self, fresh: list[tuple[int, int, Command]], headers: list[BatchHeader],
                stream_seq: int, pending: int) -> None:
        progress = self.progress
        if fresh:
            append = self.journal.append
            for seq, ts, command in fresh:
                append(seq, ts, command)
            self.journal.sync()
            apply = self.venue.apply
            for seq, ts, command in fresh:
                apply(seq, ts, command, emit=False)
            self.last_ts = fresh[-1][1]
            progress.applied_seq = fresh[-1][0]
            progress.batches_applied += len(headers)
            now = self.clock()
            for header in headers:
                self.lags_ms.append(max(0.0, (now - header.last_ts) / 1e6))
            progress.lag_ms = self.lags_ms[-1]
            self._received_last_seq = max(self._received_last_seq, headers[-1].last_seq)
            self._since_snapshot += len(fresh)
            if self._since_snapshot >= self.snapshot_every:
                self.journal.checkpoint(self.venue, self.last_ts)
                progress.snapshots += 1
                self._since_snapshot = 0
        if stream_seq > progress.stream_seq:
            progress.stream_seq = stream_seq
            progress.stream_last_seq = max(progress.stream_last_seq, stream_seq + pending)
            progress.lag_commands = max(0, self._received_last_seq - progress.applied_seq)
            self._save_position()

    def catch_up(self, timeout_s: float) -> bool:
        """Wait until every message the stream holds now is applied; False on a timeout or
        a problem (then this node must not serve)."""
        _, last_stream_seq, _ = self.link.call(self.link.stream_end())
        deadline = time.monotonic() + timeout_s
        with self._caught_up:
            while self.progress.stream_seq < last_stream_seq and not self.progress.problem:
                left = deadline - time.monotonic()
                if left <= 0 or (self._thread is not None and not self._thread.is_alive()):
                    return False
                self._caught_up.wait(min(left, WAIT_S))
        return not self.progress.problem

    def stop(self) -> None:
        """Stop following, close the journal (everything applied is synced already)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._subscription is not None:
            try:
                self.link.call(self._subscription.unsubscribe(), 3.0)
            except Exception:  # the link is gone: the subscription is too
                log.debug("unsubscribe failed", exc_info=True)
            self._subscription = None
        self.journal.close()

    def status(self) -> dict[str, object]:
        return asdict(self.progress)


def set_aside_if_diverged(data_dir: Path, link: StreamLink) -> Path | None:
    """Move ``data_dir`` aside when its journal's last command is not the stream's command
    at that seq: a primary that crashed or was fenced between its fsync and the stream's
    acknowledgement holds one batch nobody was told about, which the next primary may have
    replaced with others under the same seqs. Only the last batch can differ (a primary
    journals the next batch only after the stream took this one), so comparing the last
    command (its ts and content) tells. Returns where the directory went (kept for
    investigation, inside ``data_dir``) or None when it continues the stream."""
    if not (data_dir / "segments").exists():
        return None
    venue, _ = recover(data_dir, repair=True)
    last_seq = venue.last_seq
    if last_seq == 0:
        return None
    found = link.call(link.find_batch(last_seq))
    if found is not None:
        headers, data = found
        theirs = [r for r in decode_batch(data, read_header(headers)) if r[0] == last_seq]
        if theirs and theirs[0] == _local_record(data_dir, last_seq):
            return None
    kept = data_dir / f"{DIVERGED_PREFIX}{time.time_ns()}"
    kept.mkdir()
    for name in JOURNAL_ENTRIES:
        if (data_dir / name).exists():
            shutil.move(str(data_dir / name), kept / name)
    log.warning("%s ends at seq %d, which the stream does not hold as this node wrote it "
                "(never acknowledged): its journal moved to %s; rebuilding from the stream",
                data_dir, last_seq, kept)
    return kept


def _local_record(data_dir: Path, seq: int) -> tuple[int, int, Command] | None:
    reader = JournalReader(data_dir)
    try:
        reader.seek(seq)
        for sequenced, _ in reader.read_available(1):
            if sequenced.seq == seq:
                return sequenced.seq, sequenced.ts, sequenced.command
    finally:
        reader.close()
    return None
