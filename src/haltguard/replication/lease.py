"""The leader lease: one key in a JetStream key-value bucket, changed only by
compare-and-set on its revision.

Whoever holds an unexpired lease is the one venue that may try to extend the journal
stream. The holder renews it every third of its TTL; a standby takes it once it has not
been renewed for a whole TTL (judged by the standby's clock against the holder's stamp, so
the hosts' clocks must agree to well within the TTL: NTP does). The lease only decides who
*tries*: safety comes from the stream's expected-sequence check (see ``publisher.py``), so
two venues that both believe they lead still cannot both extend the journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future

from haltguard.common.clock import NsClock
from haltguard.replication.link import StreamLink
from haltguard.replication.models import LeaseRecord

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Takes, renews and gives up the primary's lease for one node."""

    def __init__(self, link: StreamLink, holder: str, clock: NsClock = time.time_ns) -> None:
        self.link = link
        self.holder = holder
        self.clock = clock
        self.ttl_ms = link.settings.lease_ttl_ms
        self.revision = 0
        self.record: LeaseRecord | None = None
        self._renewal: Future[None] | None = None

    def current(self) -> LeaseRecord | None:
        """The lease as stored now (None when nobody holds one)."""
        record, _ = self.link.call(self.link.read_lease())
        return record

    def try_take(self) -> LeaseRecord | None:
        """Take the lease if it is free, expired or already ours; the record, or None when
        another node holds a live one (or won the race for it)."""
        record, revision = self.link.call(self.link.read_lease())
        now_ns = self.clock()
        if record is not None and record.holder != self.holder and not record.expired(now_ns):
            return None
        term = (record.term if record is not None else 0) + 1
        mine = LeaseRecord(self.holder, term, now_ns, self.ttl_ms)
        new_revision = self.link.call(self.link.write_lease(mine, revision))
        if new_revision is None:
            return None
        self.record, self.revision = mine, new_revision
        if record is not None and record.holder != self.holder:
            log.warning("took the primary's lease from %s (term %d -> %d)", record.holder,
                        record.term, term)
        return mine

    def keep(self, on_lost: Callable[[str], None]) -> None:
        """Renew every third of the TTL on the link's loop until :meth:`stop`; ``on_lost``
        (called on that loop) once a renewal finds the lease taken or unreachable past its
        end."""
        assert self.record is not None, "take the lease first"
        self._renewal = self.link.submit(self._renew_forever(on_lost))

    async def _renew_forever(self, on_lost: Callable[[str], None]) -> None:
        assert self.record is not None
        every_s = self.link.settings.renew_every_s
        term = self.record.term
        while True:
            await asyncio.sleep(every_s)
            renewed = LeaseRecord(self.holder, term, self.clock(), self.ttl_ms)
            try:
                revision = await asyncio.wait_for(
                    self.link.write_lease(renewed, self.revision), every_s)
            except Exception as exc:  # NATS unreachable: the lease runs out unless it returns
                if self.clock() > self.record.renewed_ns + self.ttl_ms * 1_000_000:
                    on_lost(f"the lease could not be renewed before it ran out ({exc!r})")
                    return
                continue
            if revision is None:
                on_lost("another venue took the primary's lease")
                return
            self.record, self.revision = renewed, revision

    def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None

    def release(self) -> None:
        """Give the lease up now (a clean stop), so a standby need not wait for its TTL."""
        self.stop()
        if self.record is None:
            return
        ended = LeaseRecord(self.holder, self.record.term, 0, self.ttl_ms)
        try:
            self.link.call(self.link.write_lease(ended, self.revision), 2.0)
        except Exception:  # unreachable: it runs out by itself
            log.warning("could not give up the lease; it runs out in %d ms", self.ttl_ms)
        self.record = None
