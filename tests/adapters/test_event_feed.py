"""The event feed through an adapter: every event once, in order, across dropped
connections, from the other venue's stream and from our venue's polled feed, whose old
cursors are answered from the journal."""

from __future__ import annotations

import threading
from pathlib import Path

from adapter_support import other_venue, our_spec, our_venue

from haltguard.adapters.control import AdapterVenueControl
from haltguard.adapters.feed import EventFollower
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.event_log import EventLog
from haltguard.venue.commands import CancelOrder, PlaceOrder
from haltguard.venue.control import FeedEvent
from haltguard.venue.types import MarketState, OrderType, Side, TimeInForce


def _collect(control: AdapterVenueControl, count: int, *, after_seq: int = 0
             ) -> tuple[EventFollower, list[FeedEvent], threading.Event]:
    seen: list[FeedEvent] = []
    enough = threading.Event()

    def take(events: list[FeedEvent]) -> None:
        seen.extend(events)
        if len(seen) >= count:
            enough.set()

    return EventFollower(control, take, after_seq=after_seq).start(), seen, enough


def test_a_stream_cut_every_seven_events_is_followed_without_gaps_or_repeats() -> None:
    with other_venue() as (venue, control):
        venue.faults.drop_stream_after = 7
        follower, seen, enough = _collect(control, 60)
        try:
            for number in range(30):
                venue.place("BTCJPY", 1, "BUY", price=100, quantity=1, client_ref=f"c{number}")
                venue.cancel(f"O-{number + 1}")
            assert enough.wait(10), f"only {len(seen)} events arrived"
        finally:
            follower.stop()
        assert [event.seq for event in seen] == list(range(1, 61))
        assert follower.reconnects >= 60 // 7
        assert {event.kind for event in seen} == {"order_accepted", "order_cancelled"}
        assert {event.market for event in seen} == {"BTC-JPY"}


def test_a_follower_started_from_a_cursor_sees_only_what_came_after() -> None:
    with other_venue() as (venue, control):
        for number in range(5):
            venue.place("BTCJPY", 1, "BUY", price=100, quantity=1, client_ref=f"c{number}")
        follower, seen, enough = _collect(control, 2, after_seq=3)
        try:
            assert enough.wait(5)
        finally:
            follower.stop()
        assert [event.seq for event in seen] == [4, 5]


def _order(number: int) -> PlaceOrder:
    return PlaceOrder("BTC-JPY", 1, Side.BUY, qty=1, price=1_000_000,
                      order_type=OrderType.LIMIT, tif=TimeInForce.GTC,
                      client_order_id=f"feed-{number}")


def test_our_venues_feed_reads_the_same_through_the_adapter_as_in_process(
    tmp_path: Path,
) -> None:
    with our_venue(tmp_path / "venue") as (runtime, server), AdapterVenueControl(
        our_spec(server.url)
    ) as adapter:
        for number in range(10):
            runtime.submit_and_wait(_order(number))
        adapter.set_market_state("BTC-JPY", MarketState.HALTED, actor="t", reason="feed")
        through_http = adapter.read_events(0, 5000)
        in_process = InProcessVenueControl(runtime).read_events(0, 5000)
    assert [e.position for e in through_http.events] == [e.position for e in in_process.events]
    assert through_http.cursor == in_process.cursor == runtime.status().last_seq
    kinds = [event.kind for event in through_http.events]
    assert kinds.count("order_accepted") == 10 and kinds[-1] == "state_changed"


def test_an_old_cursor_is_answered_from_the_journal_exactly_as_from_memory(
    tmp_path: Path,
) -> None:
    with our_venue(tmp_path / "venue") as (runtime, _server):
        small = EventLog(runtime, events_kept_max=5)
        large = EventLog(runtime)
        for number in range(20):
            result = runtime.submit_and_wait(_order(number))
            runtime.submit_and_wait(CancelOrder("BTC-JPY", 1, order_id=_order_id(result)))
        start = runtime.status().last_seq - 40
        from_journal, cursor_journal = small.read(start, 1000)
        from_memory, cursor_memory = large.read(start, 1000)
    assert from_journal == from_memory and len(from_journal) == 40
    assert cursor_journal == cursor_memory


def test_pages_end_on_whole_commands_and_resume_without_gaps(tmp_path: Path) -> None:
    with our_venue(tmp_path / "venue") as (runtime, _server):
        log = EventLog(runtime)
        first = runtime.status().last_seq
        for number in range(12):
            runtime.submit_and_wait(_order(number))
        pages, cursor = [], first
        while True:
            page, cursor_next = log.read(cursor, 5)
            if not page:
                break
            pages.append(page)
            cursor = cursor_next
    seqs = [seq for page in pages for seq, _ in page]
    assert seqs == list(range(first + 1, first + 13))
    assert all(len(page) <= 5 for page in pages)


def _order_id(result: object) -> int:
    return next(event.order_id for event in result.events  # type: ignore[attr-defined]
                if type(event).__name__ == "OrderAccepted")
