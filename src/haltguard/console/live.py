"""Live updates: one watcher per process, a version number, and server-sent events.

Every connected browser holds one ``text/event-stream`` connection (:func:`event_stream`).
It carries no data of its own, only ``event: change`` with a version number; the page's
script then fetches the fragments it shows (each a normal, permission-checked request) and
swaps them in. So a browser never learns through the stream what its role could not read.

:class:`ChangeFeed` runs one poll on the server's event loop while anyone is connected (and
none when nobody is): every ``live_poll_ms`` it reads a fingerprint of what the console
shows (the newest audit entry, timeline entry, page event, detection decision, status
update and status revision, one query over indexed keys) and the venue summary's states,
kill switch and freezes. When the fingerprint changes the version goes up and every
connection is woken. A change that is only more orders in the book (the last journal seq
and the resting-order counts) wakes them at most every ``QUIET_CHANGE_S``, so a busy
exchange does not make every console re-render four times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.console.settings import ConsoleSettings
from haltguard.console.venue_watch import VenueWatch
from haltguard.detection.models import DecisionRecord
from haltguard.incidents.models import TimelineEntry
from haltguard.responders.models import PageEventRecord
from haltguard.security.models import AuditEntry
from haltguard.status.models import StatusRevision, StatusUpdate

QUIET_CHANGE_S = 5.0
FOLLOWED_MAX = 16
"""How often a change of only the seq and order counts reaches the browsers, at most."""


def _fingerprint_query() -> Any:
    return select(
        select(func.max(AuditEntry.index)).scalar_subquery(),
        select(func.max(TimelineEntry.id)).scalar_subquery(),
        select(func.max(PageEventRecord.id)).scalar_subquery(),
        select(func.max(DecisionRecord.id)).scalar_subquery(),
        select(func.max(StatusUpdate.id)).scalar_subquery(),
        select(func.max(StatusRevision.revision)).scalar_subquery(),
    )


class ChangeFeed:
    """The version of what the console shows; connections wait for it to move."""

    def __init__(self, session_factory: sessionmaker[Session], watch: VenueWatch,
                 settings: ConsoleSettings) -> None:
        self.session_factory = session_factory
        self.watch = watch
        self.settings = settings
        self.version = 0
        self.clients = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._query = _fingerprint_query()
        self._last: tuple[object, ...] | None = None
        self._quiet: tuple[object, ...] | None = None
        self._quiet_at = 0.0
        self._followed: dict[str, Callable[[], object]] = {}

    def follow(self, name: str, reading: Callable[[], object]) -> None:
        """Also watch ``reading()`` (a cheap, comparable value, e.g. a drill's progress count),
        kept under ``name``: a screen outside the database and the venue adds what it shows."""
        if name in self._followed or len(self._followed) < FOLLOWED_MAX:
            self._followed[name] = reading

    def _read(self) -> tuple[tuple[object, ...], tuple[object, ...]]:
        """(what must reach the browsers now, what may wait up to ``QUIET_CHANGE_S``)."""
        with self.session_factory() as session:
            row = tuple(session.execute(self._query).one())
        summary = self.watch.summary()
        states = tuple((market.market, market.state, market.by) for market in summary.markets)
        followed = tuple(reading() for _, reading in sorted(self._followed.items()))
        loud = (*row, states, summary.kill_switch, summary.frozen_assets, summary.readable,
                followed)
        quiet = (summary.last_seq,)
        return loud, quiet

    def poll_once(self, loud: tuple[object, ...], quiet: tuple[object, ...]) -> bool:
        """Take one reading; True when the browsers are to be told."""
        now = time.monotonic()
        if self._last is None:
            self._last, self._quiet, self._quiet_at = loud, quiet, now
            return False
        if loud != self._last or (quiet != self._quiet and now - self._quiet_at >= QUIET_CHANGE_S):
            self._last, self._quiet, self._quiet_at = loud, quiet, now
            return True
        return False

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def _poll(self) -> None:
        interval_s = self.settings.live_poll_ms / 1000
        while self.clients > 0:
            loud, quiet = await asyncio.to_thread(self._read)
            if self.poll_once(loud, quiet):
                self._bump()
            await asyncio.sleep(interval_s)
        self._task = None

    def join(self) -> bool:
        """Count one more connection (False when ``live_clients_max`` are connected)."""
        if self.clients >= self.settings.live_clients_max:
            return False
        self.clients += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll())
        return True

    def leave(self) -> None:
        self.clients -= 1

    async def wait_beyond(self, version: int, timeout_s: float) -> int:
        """The version once it is past ``version``, or ``version`` after ``timeout_s``."""
        if self.version != version:
            return self.version
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        return self.version


async def event_stream(feed: ChangeFeed, still_allowed: Any) -> AsyncIterator[str]:
    """The text of one connection: the current version, then one event per change and a
    comment line when quiet. ``still_allowed()`` is checked at each quiet interval: a session
    that ended (logout, idle, disabled) closes its stream."""
    if not feed.join():
        yield "retry: 60000\nevent: full\ndata: 0\n\n"
        return
    try:
        version = feed.version
        yield f"retry: 2000\nevent: hello\ndata: {version}\n\n"
        while True:
            newer = await feed.wait_beyond(version, feed.settings.live_keepalive_s)
            if newer == version:
                if not await still_allowed():
                    return
                yield ": quiet\n\n"
                continue
            version = newer
            yield f"event: change\ndata: {version}\n\n"
    finally:
        feed.leave()
