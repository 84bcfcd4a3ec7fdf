"""The live page: one rendered :class:`Site`, refreshed on change and handed to exporters.

A refresh reads the venue's market states, brings the components and their statuses up to
date, picks up public updates recorded on incidents, moves maintenance along, and builds the
snapshot. Only when the snapshot differs from the last one is the page rendered again, and
only then do the hooks (directory exporters) run: one render per change, the same bytes
served until the next. Refreshes happen at most every ``refresh_interval_s`` when pages are
asked for, at once after an operator's change, and on every tick of the status loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Clock
from haltguard.db.session import session_scope
from haltguard.status import service
from haltguard.status.settings import StatusSettings
from haltguard.status.site import Site, build_site, export_site
from haltguard.status.snapshot import Snapshot
from haltguard.venue.control import VenueControl
from haltguard.venue.types import MarketState

log = logging.getLogger(__name__)

SiteHook = Callable[[Site], None]


class DirectoryExporter:
    """A hook that writes every new site to ``directory`` (a CDN's origin, another host)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, site: Site) -> None:
        written = export_site(site, self.directory)
        log.info("status page %s exported to %s (%d files changed)", site.version,
                 self.directory, written)


class StatusPublisher:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        clock: Clock,
        settings: StatusSettings,
        *,
        venue: VenueControl | None = None,
        hooks: tuple[SiteHook, ...] = (),
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.settings = settings
        self.venue = venue
        self._hooks = list(hooks)
        self._lock = threading.Lock()
        self._site: Site | None = None
        self._snapshot: Snapshot | None = None
        self._refreshed_at = float("-inf")
        self._stale = True
        self._refresh_queued = threading.Event()
        self.renders = 0

    @property
    def site(self) -> Site | None:
        return self._site

    def add_hook(self, hook: SiteHook) -> None:
        self._hooks.append(hook)

    def invalidate(self) -> None:
        """Something changed: the next request or tick refreshes without waiting."""
        self._stale = True

    def needs_refresh(self) -> bool:
        return self._stale or (
            time.monotonic() - self._refreshed_at >= self.settings.refresh_interval_s
        )

    def _market_states(self) -> dict[str, MarketState] | None:
        if self.venue is None:
            return None
        try:
            return self.venue.market_states()
        except Exception:
            log.warning("the venue did not answer its market states; markets keep their last "
                        "known status", exc_info=True)
            return None

    def _snapshot_now(self) -> Snapshot:
        states = self._market_states()
        with session_scope(self.session_factory) as session:
            now = self.clock.now()
            if states is not None:
                service.ensure_components(session, states.keys(), now=now)
            service.absorb_public_updates(session, now=now, settings=self.settings)
            service.advance_maintenances(session, now=now, settings=self.settings)
            service.refresh_statuses(session, now=now, market_states=states)
            return service.build_snapshot(session, now=now, settings=self.settings)

    def refresh(self) -> bool:
        """Bring the page up to date; True when it changed (and the hooks ran)."""
        with self._lock:
            self._stale = False
            self._refreshed_at = time.monotonic()
            snapshot = self._snapshot_now()  # a failure is retried after the interval
            if snapshot == self._snapshot and self._site is not None:
                return False
            site = build_site(snapshot)
            self._snapshot, self._site = snapshot, site
            self.renders += 1
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook(site)
            except Exception:
                log.exception("a status page hook failed; the next change retries it")
        return True

    def current(self) -> Site:
        """The page, refreshed first when due (waits for a refresh already running)."""
        if self.needs_refresh():
            self.refresh()
        if self._site is None:
            raise RuntimeError("the status page could not be built yet; the last refresh "
                               "failed (see the log) and is retried after the interval")
        return self._site

    def refresh_if_idle(self) -> None:
        """Refresh unless another thread is already at it (for serving without waiting)."""
        if self._lock.locked():
            return
        try:
            self.refresh()
        except Exception:
            log.exception("refreshing the status page failed; serving the last page")

    def queue_refresh(self) -> bool:
        """Claim the one background refresh slot; False when a refresh is already queued,
        so a burst of requests starts one refresh, not one each."""
        if self._refresh_queued.is_set():
            return False
        self._refresh_queued.set()
        return True

    def run_queued_refresh(self) -> None:
        try:
            self.refresh_if_idle()
        finally:
            self._refresh_queued.clear()
