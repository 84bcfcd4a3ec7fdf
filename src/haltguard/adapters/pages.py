"""One read of a venue's event feed as an adapter file describes it: a page of a polled
feed, or the events of one Server-Sent Events connection, in the contract's shape."""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import httpx

from haltguard.adapters.calls import build_request, read_path
from haltguard.adapters.spec import AdapterSpec, Call, FeedSpec
from haltguard.venue.control import FEED_KINDS, EventPage, FeedEvent, VenueControlError

SSE_IDLE_S_MIN: Final = 0.2
BODY_SHOWN_CHARS_MAX: Final = 300


def feed_of(spec: AdapterSpec) -> FeedSpec:
    if spec.feed is None:
        raise VenueControlError(
            f"the adapter {spec.name!r} describes no event feed; add feed: to it")
    return spec.feed


def feed_request(spec: AdapterSpec, cursor: int, limit: int) -> tuple[str, dict[str, str]]:
    """The URL and headers that read the feed from ``cursor``."""
    feed = feed_of(spec)
    call = Call(key="feed", method="GET", url=feed.url, headers={}, body=None,
                success_status=(200,), read={}, confirm="answer")
    values = {**spec.variables, "cursor": cursor, "limit": limit,
              "idempotency_key": secrets.token_hex(8), "timestamp_ms": time.time_ns() // 1_000_000}
    request = build_request(call, spec.headers, spec.signing, values)
    return request.url, request.headers


def feed_event(spec: AdapterSpec, item: Any, fallback_index: int) -> FeedEvent:
    """One event of the venue's feed in the contract's shape, read with ``feed.read``."""
    read = feed_of(spec).read
    seq = int(read_path(item, read["seq"]))
    index = int(read_path(item, read["index"])) if "index" in read else fallback_index
    word = str(read_path(item, read["kind"])) if "kind" in read else "other"
    kind = feed_of(spec).kinds.get(word, word)
    try:
        market = str(read_path(item, read["market"])) if "market" in read else ""
    except KeyError:
        market = ""
    return FeedEvent(seq, index, kind if kind in FEED_KINDS else "other",
                     spec.our_market(market) if market else "",
                     item if isinstance(item, dict) else {"value": item})


def read_page(spec: AdapterSpec, client: httpx.Client, after_seq: int, limit: int) -> EventPage:
    """Events after ``after_seq`` (about ``limit``), and the cursor to read from next."""
    feed = feed_of(spec)
    limit = max(1, min(limit, feed.page_events_max))
    if feed.type == "sse":
        idle_s = max(SSE_IDLE_S_MIN, feed.poll_interval_s * 4)
        events = list(itertools.islice(
            sse_events(spec, client, after_seq, limit, idle_s=idle_s), limit))
        return EventPage(events, events[-1].seq if events else after_seq)
    url, headers = feed_request(spec, after_seq, limit)
    try:
        response = client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise VenueControlError(f"cannot read the venue's event feed at {url} ({exc})") from exc
    if response.status_code != 200:
        raise VenueControlError(f"the venue's event feed answered {response.status_code}: "
                                f"{response.text[:BODY_SHOWN_CHARS_MAX]}")
    try:
        data = response.json()
        items = read_path(data, feed.read["list"])
        events = [feed_event(spec, item, i) for i, item in enumerate(items)]
        cursor = (int(read_path(data, feed.read["cursor"])) if "cursor" in feed.read
                  else (events[-1].seq if events else after_seq))
    except (KeyError, TypeError, ValueError) as exc:
        raise VenueControlError(f"the venue's event feed cannot be read with "
                                f"{spec.where('feed.read')}: {exc}") from exc
    return EventPage(events, cursor)


def sse_events(spec: AdapterSpec, client: httpx.Client, after_seq: int, limit: int, *,
               idle_s: float | None, read_s: float | None = None,
               stream_sink: Callable[[httpx.Response], None] | None = None,
               ) -> Iterator[FeedEvent]:
    """Events of one SSE connection from ``after_seq``. With ``idle_s`` (a one-off read) it
    ends after that long without an event; without, it ends when the connection does, and
    an HTTP error (a read quiet for ``read_s`` too) propagates: the follower reconnects."""
    url, headers = feed_request(spec, after_seq, limit)
    headers = {**headers, "Accept": "text/event-stream", "Last-Event-ID": str(after_seq)}
    timeout = httpx.Timeout(spec.request_s, read=idle_s if idle_s is not None else read_s)
    try:
        with client.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                raise VenueControlError(
                    f"the venue's event stream at {url} answered {response.status_code}")
            if stream_sink is not None:
                stream_sink(response)
            yield from _parse_sse(spec, response.iter_lines())
    except httpx.ReadTimeout:
        if idle_s is None:
            raise
    except httpx.HTTPError as exc:
        if idle_s is None:
            raise
        raise VenueControlError(f"the venue's event stream at {url} failed ({exc})") from exc


def _parse_sse(spec: AdapterSpec, lines: Iterator[str]) -> Iterator[FeedEvent]:
    """Server-Sent Events: ``data:`` lines up to a blank line make one event; its ``id:``
    is the seq when the data does not carry one."""
    data: list[str] = []
    last_id = ""
    for line in lines:
        if line == "":
            if data:
                item: Any = json.loads("\n".join(data))
                if isinstance(item, dict) and last_id and "seq" not in item:
                    item = {**item, "seq": last_id}
                yield feed_event(spec, item, 0)
            data = []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id":
            last_id = value
