"""Reading and following a venue's event feed through an adapter: polling with a cursor, or
Server-Sent Events.

:func:`~haltguard.adapters.pages.read_page` is one read from a cursor (the contract's
``read_events``).
:class:`EventFollower` follows the feed on a thread: after any drop it reconnects from the
last position it delivered (backing off, at most ``RECONNECT_BACKOFF_S_MAX`` apart) and
drops what it already delivered, so its consumer sees every event once, in order. A venue
that numbers a command's events with an index is resumed from the start of the last
command, since a drop may cut a command's events in two.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Final

import httpx

from haltguard.adapters.control import AdapterVenueControl
from haltguard.adapters.pages import feed_of, read_page, sse_events
from haltguard.venue.control import FeedEvent, VenueControlError

RECONNECT_BACKOFF_S_MAX: Final = 2.0
STREAM_IDLE_S: Final = 0.5
"""A stream quiet this long is reopened from the cursor (so a stop or a silent dead
connection is noticed within it)."""


class EventFollower:
    """Follows the feed from ``after_seq`` and calls ``on_events`` with each new run of
    events, never one twice and none missing, across drops and reconnects."""

    def __init__(self, control: AdapterVenueControl,
                 on_events: Callable[[list[FeedEvent]], None], *, after_seq: int = 0) -> None:
        self.control = control
        self.feed = feed_of(control.spec)
        self.on_events = on_events
        self.cursor = after_seq
        self._page_cursor = after_seq
        self.reconnects = 0
        self.duplicates_dropped = 0
        self.last_problem = ""
        self._last_position = (after_seq, 1 << 62)  # nothing at after_seq is wanted
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: httpx.Response | None = None
        self._drop = threading.Event()

    def start(self) -> EventFollower:
        self._thread = threading.Thread(target=self._run, name="venue-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.drop_connection()
        if self._thread is not None:
            self._thread.join(5)

    def drop_connection(self) -> None:
        """Cut the current connection as a network failure would (the follower reconnects)."""
        self._drop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # racing the reader; either way it ends
                response.close()

    def _deliver(self, events: list[FeedEvent]) -> None:
        fresh = []
        for event in events:
            if event.position <= self._last_position:
                self.duplicates_dropped += 1
                continue
            fresh.append(event)
            self._last_position = event.position
            self.cursor = event.seq
        if fresh:
            self.on_events(fresh)

    def _resume_after(self) -> int:
        """Where a stream reconnects: a drop may cut a command's events in two, so a feed
        with an index resumes at the start of the last command (repeats are dropped)."""
        if "index" in self.feed.read and self.cursor > 0:
            return self.cursor - 1
        return self.cursor

    def _run(self) -> None:
        backoff_s = self.feed.poll_interval_s
        while not self._stop.is_set():
            position = self._last_position
            try:
                if self.feed.type == "sse":
                    self._follow_stream()
                else:
                    self._poll_once()
                backoff_s = self.feed.poll_interval_s
            except (VenueControlError, httpx.HTTPError, ValueError, KeyError) as exc:
                self.last_problem = str(exc)
                self.reconnects += 1
                if self._last_position != position:  # it was moving: reconnect at once
                    backoff_s = self.feed.poll_interval_s
                    continue
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2 or 0.05, RECONNECT_BACKOFF_S_MAX)

    def _poll_once(self) -> None:
        if self._drop.is_set():
            self._drop.clear()
            self.reconnects += 1
        page = read_page(self.control.spec, self.control.client, self._page_cursor,
                         self.feed.page_events_max)
        self._deliver(page.events)
        self._page_cursor = max(self._page_cursor, page.cursor)  # pages end on whole commands
        if not page.events:
            self._stop.wait(self.feed.poll_interval_s)

    def _follow_stream(self) -> None:
        self._drop.clear()
        def keep(response: httpx.Response) -> None:
            self._response = response

        try:
            for event in sse_events(self.control.spec, self.control.client,
                                    self._resume_after(), self.feed.page_events_max,
                                    idle_s=None, read_s=STREAM_IDLE_S, stream_sink=keep):
                self._deliver([event])
                if self._stop.is_set() or self._drop.is_set():
                    break
            if self._drop.is_set():
                self.reconnects += 1
            elif not self._stop.is_set():
                raise VenueControlError("the venue closed the event stream")
        except httpx.ReadTimeout:
            return  # quiet: reopen from the cursor
        except (httpx.HTTPError, RuntimeError) as exc:
            if not self._stop.is_set():
                raise VenueControlError(f"the event stream dropped ({exc})") from exc
        finally:
            self._response = None
