"""The failover state's screen in the operator console (``/console/failover``): whether the
venue runs on the replicated journal and, when it does, which node is primary, who holds the
lease until when, each standby's lag (commands and milliseconds, as its ``/v1/replication``
reports it) and the last changes of primary. Read-only; ``continuity.read``, the permission
of the rest of the continuity evidence.

``serve`` owns the replica set (``app/replicas.py``); it hands this screen a reader with
:meth:`FailoverBoard.follow` (:class:`ReplicaSetReader`). Without one, replication is off
and the screen says how to turn it on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from haltguard.console import auth
from haltguard.console.navigation import Screen
from haltguard.console.web import (
    PREFIX,
    ConsoleRoute,
    guard,
    operations_of,
    render,
    run_work,
    viewer_for,
)
from haltguard.replication.lease import LeaseKeeper
from haltguard.replication.link import StreamLink
from haltguard.replication.models import ReplicationSettings
from haltguard.replication.processes import PrimaryWatch
from haltguard.security.permissions import Action

SCREEN = Screen("/failover", "フェイルオーバー", "Failover", Action.CONTINUITY_READ)
FAILOVERS_SHOWN = 20
STANDBY_READ_TIMEOUT_S = 0.5
NS_PER_MS = 1_000_000

router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)


def _at(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC)


@dataclass(frozen=True)
class LeaseState:
    holder: str
    term: int
    expires_at: datetime  # by the holder's clock: renewed + ttl


@dataclass(frozen=True)
class StandbyState:
    name: str
    url: str
    applied_seq: int
    lag_commands: int
    lag_ms: float
    problem: str  # "" while it may take over; else why not (or why it did not answer)


@dataclass(frozen=True)
class PrimaryChangeState:
    previous: str  # "" at start
    current: str  # "" while none serves
    at: datetime
    without_primary_s: float


@dataclass(frozen=True)
class ReplicationState:
    primary: str  # the serving node's name, "" while none serves
    primary_url: str
    down_reason: str
    lease: LeaseState | None
    lease_problem: str
    standbys: tuple[StandbyState, ...]
    changes: tuple[PrimaryChangeState, ...]  # newest first


class FailoverBoard:
    """A part of the app's context: where the screen reads the replica set (None: off)."""

    def __init__(self) -> None:
        self._read: Callable[[], ReplicationState] | None = None

    def follow(self, read: Callable[[], ReplicationState]) -> None:
        self._read = read

    def read(self) -> ReplicationState | None:
        return None if self._read is None else self._read()


class ReplicaSetReader:
    """The replica set as ``serve`` watches it: the primary and its changes from the
    :class:`PrimaryWatch`, each standby's progress from its ``/v1/replication``, and the
    lease from the stream's key-value bucket (one short connection per read)."""

    def __init__(self, watch: PrimaryWatch, settings: ReplicationSettings,
                 nats_url: str) -> None:
        self.watch = watch
        self.settings = settings
        self.nats_url = nats_url

    def __call__(self) -> ReplicationState:
        primary = self.watch.primary()
        lease, lease_problem = self._lease()
        with httpx.Client(timeout=STANDBY_READ_TIMEOUT_S) as client:
            standbys = tuple(self._standby(client, node.name, node.url)
                             for node in self.watch.nodes if node is not primary)
        changes = tuple(PrimaryChangeState(c.previous, c.current, _at(c.at_ns),
                                           c.without_primary_s)
                        for c in reversed(self.watch.changes[-FAILOVERS_SHOWN:]))
        return ReplicationState(
            primary=primary.name if primary is not None else "",
            primary_url=primary.url if primary is not None else "",
            down_reason=self.watch.down_reason(), lease=lease, lease_problem=lease_problem,
            standbys=standbys, changes=changes)

    def _lease(self) -> tuple[LeaseState | None, str]:
        link = StreamLink(self.settings, self.nats_url, name="console-failover")
        try:
            record = LeaseKeeper(link.connect(), "console").current()
        except Exception as exc:  # the screen says why; the rest still shows
            return None, f"the lease could not be read: {exc}"
        finally:
            link.close()
        if record is None:
            return None, ""
        return LeaseState(record.holder, record.term,
                          _at(record.renewed_ns + record.ttl_ms * NS_PER_MS)), ""

    @staticmethod
    def _standby(client: httpx.Client, name: str, url: str) -> StandbyState:
        try:
            answer = client.get(f"{url}/v1/replication")
            answer.raise_for_status()
            progress = answer.json()["progress"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            return StandbyState(name, url, 0, 0, 0.0, f"no answer from {url}: {exc}")
        return StandbyState(name, url, int(progress["applied_seq"]),
                            int(progress["lag_commands"]), float(progress["lag_ms"]),
                            str(progress.get("problem", "")))


@router.get("/failover", dependencies=guard(Action.CONTINUITY_READ))
async def failover_screen(request: Request) -> Response:
    """Replication on or off; when on, the primary, the lease, the standbys, the changes."""
    def work() -> Response:
        operator = auth.authorize(request, Action.CONTINUITY_READ)
        state = operations_of(request).part(FailoverBoard).read()
        return render(request, "failover.html", viewer_for(request, operator), state=state)

    return await run_work(request, work)
