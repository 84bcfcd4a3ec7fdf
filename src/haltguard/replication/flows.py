"""A replicated venue node's life: follow as a standby, take over, serve, and step down.

    start ──► set aside a diverged tail ──► follow the stream (standby, /metrics) ──┐
      ▲                                                                             │
      │        lease free or run out, no problem here ──► take the lease ◄──────────┘
      │        ──► catch up with the whole stream ──► publish the takeover (fences the
      │        old primary) ──► serve as primary: every batch fsynced + published
      │                                                                             │
      └──── fenced (the stream refused a batch) or the lease lost ◄─────────────────┘

Both of ``serve``'s venue processes, and ``haltguard venue standby``, run this; whoever
takes the lease first is the primary. A node serving as primary answers nothing it could
not prove is in the stream; a node that was fenced acknowledges nothing more and comes back
round as a standby.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvicorn

from haltguard.gateway.runtime import BatchReplicator
from haltguard.replication.errors import FencedError, PublishFailedError
from haltguard.replication.lease import LeaseKeeper
from haltguard.replication.link import StreamLink
from haltguard.replication.models import (
    FollowerProgress,
    LeaseRecord,
    MarketsAfterFailover,
    ReplicationSettings,
)
from haltguard.replication.publisher import BatchPublisher
from haltguard.replication.standby import Follower, set_aside_if_diverged
from haltguard.replication.views import StandbyHttp

log = logging.getLogger(__name__)

CATCH_UP_S_MAX = 30.0
TAKEOVER_TRIES_MAX = 20
STANDBY_LINE_PREFIX = "haltguard venue standby"
FAILOVER_HALT_ACTOR_REASON = "failover: a standby took over; markets halted until a person resumes"


@dataclass
class Failover:
    """One change of primary this node made, for the record (``/v1/replication``)."""

    term: int
    previous_holder: str
    lease_taken_ns: int
    serving_ns: int = 0


@dataclass(frozen=True)
class NodePlace:
    """Where a node keeps its journal and answers."""

    data_dir: Path
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


ServePrimary = Callable[[BatchReplicator, threading.Event, str], object]
"""Serve the venue on the node's port with this replicator until the event is set (or the
process is asked to stop), after halting every trading market with the reason when it is not
empty: ``haltguard venue run``'s serving loop, handed in by the command that starts the node
(so this domain does not import the application that assembles it)."""
LockDataDir = Callable[[Path], int]


@dataclass
class NodeState:
    role: str = "starting"  # starting, standby, primary, stopped
    failovers: list[Failover] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)
    fenced: str = ""


class ReplicatedNode:
    """One venue node on the replicated journal, until SIGTERM/SIGINT."""

    def __init__(self, venue: NodePlace, replication: ReplicationSettings, nats_url: str, *,
                 serve_primary: ServePrimary, lock_data_dir: LockDataDir, name: str = "",
                 say: Callable[[str], None] = lambda line: print(line, flush=True)) -> None:
        self.venue = venue
        self.serve_primary = serve_primary
        self.lock_data_dir = lock_data_dir
        self.replication = replication
        self.nats_url = nats_url
        self.name = name or f"{venue.host}:{venue.port}:{os.getpid()}"
        self.say = say
        self.state = NodeState()
        self._stopping = threading.Event()
        self._follower: Follower | None = None

    def run(self) -> None:
        link = StreamLink(self.replication, self.nats_url, name=self.name).connect()
        try:
            while not self._stopping.is_set():
                self._catch_signals()
                taken = self._follow_until_leader(link)
                if taken is None:
                    break
                publisher, lease = taken
                self._serve_as_primary(publisher, lease)
        finally:
            self.state.role = "stopped"
            link.close()

    def stop(self) -> None:
        self._stopping.set()

    def _catch_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(_signum: int, _frame: FrameType | None) -> None:
            self._stopping.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)

    # -- standby ---------------------------------------------------------------------------

    def _progress(self) -> FollowerProgress:
        follower = self._follower
        return follower.progress if follower is not None else FollowerProgress()

    def _describe(self) -> dict[str, object]:
        return {"node": self.name, "progress": dataclasses.asdict(self._progress()),
                "failovers": [dataclasses.asdict(f) for f in self.state.failovers],
                "set_aside": self.state.set_aside, "fenced": self.state.fenced}

    def _follow_until_leader(self, link: StreamLink) -> tuple[BatchPublisher, LeaseKeeper] | None:
        data_dir = self.venue.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        kept = set_aside_if_diverged(data_dir, link)
        if kept is not None:
            self.state.set_aside.append(str(kept))
        lock = self.lock_data_dir(data_dir)
        follower = self._follower = Follower(data_dir, link).start()
        http = StandbyHttp(self.venue.host, self.venue.port, self._progress,
                           self._describe).start()
        self.state.role = "standby"
        self.say(f"{STANDBY_LINE_PREFIX} on {self.venue.url} pid {os.getpid()} following "
                 f"stream {self.replication.stream} at {self.nats_url} from seq "
                 f"{follower.progress.applied_seq}")
        lease = LeaseKeeper(link, self.name)
        threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
        try:
            poll_s = self.replication.lease_ttl_ms / 20_000  # a twentieth of the lease
            while not self._stopping.wait(poll_s):
                if follower.progress.problem:
                    continue  # never serve a partial history
                try:
                    taken = self._try_take_over(link, follower, lease)
                except Exception as exc:  # NATS slow or unreachable now: look again soon
                    log.warning("could not look at the primary's lease: %r", exc)
                    lease.stop()
                    continue
                if taken is not None:
                    return taken
            return None
        finally:
            follower.stop()
            self._follower = None
            http.stop()
            os.close(lock)

    def _try_take_over(self, link: StreamLink, follower: Follower,
                       lease: LeaseKeeper) -> tuple[BatchPublisher, LeaseKeeper] | None:
        before = _quietly(lease.current)
        record = lease.try_take()
        if record is None:
            return None
        taken_ns = time.time_ns()
        lost = threading.Event()
        publisher: list[BatchPublisher] = []

        def on_lost(reason: str) -> None:
            lost.set()
            for each in publisher:
                each.refuse(reason)

        lease.keep(on_lost)
        for _ in range(TAKEOVER_TRIES_MAX):
            if lost.is_set() or not follower.catch_up(CATCH_UP_S_MAX):
                break
            caught_up_ns = time.time_ns()
            candidate = BatchPublisher(link, expected_last=follower.progress.stream_seq,
                                       term=record.term)
            try:
                candidate.takeover(follower.progress.applied_seq, follower.last_ts)
            except FencedError:
                continue  # the old primary published meanwhile: catch up with it
            except PublishFailedError:
                break
            publisher.append(candidate)
            log.info("caught up to seq %d %.0f ms after taking the lease, takeover "
                     "published %.0f ms later", follower.progress.applied_seq,
                     (caught_up_ns - taken_ns) / 1e6, (time.time_ns() - caught_up_ns) / 1e6)
            if lost.is_set():
                candidate.refuse("another venue took the primary's lease")
            previous = before.holder if before is not None else ""
            if previous and previous != self.name:
                self.state.failovers.append(Failover(record.term, previous, taken_ns))
            return candidate, lease
        lease.release()
        return None

    # -- primary ---------------------------------------------------------------------------

    def _log_serving(self, failover: Failover) -> None:
        """Say when this node answers as primary, counted from taking the lease."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not serving(self.venue.host, self.venue.port):
            time.sleep(0.01)
        failover.serving_ns = time.time_ns()
        log.warning("serving as primary %.0f ms after taking the lease",
                    (failover.serving_ns - failover.lease_taken_ns) / 1e6)

    def _serve_as_primary(self, publisher: BatchPublisher, lease: LeaseKeeper) -> None:
        self.state.role = "primary"
        halt_reason = ""
        failover = self.state.failovers[-1] if self.state.failovers else None
        if (failover is not None and failover.term == publisher.term
                and self.replication.markets_after_failover is MarketsAfterFailover.HALT_ALL):
            halt_reason = FAILOVER_HALT_ACTOR_REASON
        if failover is not None and failover.term == publisher.term:
            log.warning("failover: %s took over from %s (term %d)", self.name,
                        failover.previous_holder, failover.term)
            threading.Thread(target=self._log_serving, args=(failover,), daemon=True).start()
        try:
            self.serve_primary(publisher, publisher.refused, halt_reason)
        finally:
            lease.stop()
        if publisher.refused.is_set():
            self.state.fenced = publisher.refusal
            log.error("this venue stopped acknowledging (%s); it becomes a standby",
                      publisher.refusal)
            return
        lease.release()
        self._stopping.set()


def _warm_up() -> None:
    """Import now what the HTTP server loads only when it starts (its protocol modules), so a
    takeover does not spend a tenth of a second or more importing them."""
    async def nothing(scope: object, receive: object, send: object) -> None:
        return None

    with contextlib.suppress(Exception):
        uvicorn.Config(nothing, log_level="warning", lifespan="off").load()


def serving(host: str, port: int) -> bool:
    """Whether the node answers ``/v1/health`` with 200. A bare loopback HTTP request: an
    httpx client loads the CA bundle when made (0.06 s of CPU each, 0.3 s the first time),
    which a node asking every 10 ms while it starts serving would take from itself."""
    connection = http.client.HTTPConnection(host, port, timeout=0.5)
    try:
        connection.request("GET", "/v1/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _quietly(read: Callable[[], LeaseRecord | None]) -> LeaseRecord | None:
    try:
        return read()
    except Exception:
        return None
