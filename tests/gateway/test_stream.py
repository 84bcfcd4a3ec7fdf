"""The streaming order entry against a real runtime on a real socket: pipelined orders
answered in order once durable, bad frames, oversized frames, slow and vanishing clients."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from gateway_support import start_runtime

from haltguard.gateway.frames import FRAME_HEADER
from haltguard.gateway.runtime import VenueRuntime
from haltguard.gateway.stream import StreamLimits, StreamServer
from haltguard.gateway.stream_client import StreamClient, StreamClosedError
from haltguard.journal import recover


def order(index: int, **changes: Any) -> dict[str, Any]:
    """A resting limit order of account 1 or 2 (buys below, sells above the mid)."""
    side = "buy" if index % 2 else "sell"
    price = 4_990_000 - index % 50 if side == "buy" else 5_010_000 + index % 50
    return {"market": "BTC-JPY", "account": 1 + index % 2, "side": side, "qty": "0.001",
            "price": str(price), "client_order_id": f"o{index}", **changes}


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[VenueRuntime]:
    runtime = start_runtime(tmp_path / "venue")
    yield runtime
    runtime.stop()


def serve(runtime: VenueRuntime, **limits: Any) -> StreamServer:
    return StreamServer(runtime, "127.0.0.1", 0, StreamLimits(**limits)).start()


def wait_for(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


def test_pipelined_orders_are_answered_in_order_each_once_journaled(
    venue: VenueRuntime, tmp_path: Path
) -> None:
    server = serve(venue)
    try:
        sent = [order(index) for index in range(3_000)]
        with StreamClient(*server.address) as client:
            answers = client.place_many(sent, window=512)
    finally:
        server.stop()
    assert [a["order"]["client_order_id"] for a in answers] == [o["client_order_id"]
                                                                 for o in sent]
    seqs = [answer["seq"] for answer in answers]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(answer["order"]["status"] == "resting" for answer in answers)
    recovered, _ = recover(tmp_path / "venue", repair=False)
    assert recovered.last_seq >= seqs[-1]  # every answered order is in the journal on disk


def test_an_invalid_order_gets_the_rest_routes_error_and_the_stream_carries_on(
    venue: VenueRuntime,
) -> None:
    server = serve(venue)
    try:
        with StreamClient(*server.address) as client:
            answers = client.place_many([
                order(1, qty="0.00001"),  # off the lot grid
                order(2, market="NOPE-JPY"),
                order(3, side="sideways"),
                {"account": 1},  # no market
                order(4),
            ])
    finally:
        server.stop()
    assert [a.get("error", {}).get("code") for a in answers] == [
        "invalid_quantity", "unknown_market", "invalid_request", "invalid_request", None]
    assert "lot size" in answers[0]["error"]["message"]
    assert "side" in answers[2]["error"]["message"]
    assert answers[4]["order"]["client_order_id"] == "o4"


def test_the_venues_own_refusal_is_answered_with_its_reason_and_seq(venue: VenueRuntime) -> None:
    server = serve(venue)
    try:
        with StreamClient(*server.address) as client:
            first, reused = client.place_many([order(1), order(1, qty="0.002")])
    finally:
        server.stop()
    assert reused["error"]["code"] == "client_order_id_reused"
    assert reused["error"]["seq"] == first["seq"] + 1


def test_a_frame_that_is_not_messagepack_gets_an_invalid_frame_answer_in_its_place(
    venue: VenueRuntime,
) -> None:
    server = serve(venue)
    try:
        with StreamClient(*server.address) as client:
            client.send([order(1)])
            client.send_raw(FRAME_HEADER.pack(2) + b"\xc1\xc1")  # 0xc1 is never MessagePack
            client.send_raw(FRAME_HEADER.pack(1) + msgspec.msgpack.encode(7))
            client.send([order(2)])
            answers = client.receive(4)
    finally:
        server.stop()
    assert answers[0]["order"]["client_order_id"] == "o1"
    assert answers[1]["error"]["code"] == "invalid_frame"
    assert answers[2]["error"]["code"] == "invalid_frame"
    assert answers[3]["order"]["client_order_id"] == "o2"


def test_an_oversized_frame_is_answered_then_closed_and_other_connections_are_untouched(
    venue: VenueRuntime,
) -> None:
    server = serve(venue, frame_bytes_max=256)
    try:
        with StreamClient(*server.address) as other, StreamClient(*server.address) as client:
            client.send([order(1)])
            client.send_raw(struct.pack(">I", 10_000) + b"x" * 100)
            answers = client.receive(2)
            with pytest.raises(StreamClosedError):
                client.receive(1)
            assert other.place_many([order(2)])[0]["order"]["client_order_id"] == "o2"
    finally:
        server.stop()
    assert answers[0]["order"]["client_order_id"] == "o1"
    assert answers[1]["error"]["code"] == "frame_too_large"
    assert "10000 bytes" in answers[1]["error"]["message"]
    assert answers[1]["error"]["message_ja"]


def test_a_client_that_never_reads_is_dropped_and_others_carry_on(venue: VenueRuntime) -> None:
    server = serve(venue, write_buffer_bytes_max=4_096, write_stall_s_max=0.5,
                   unacked_max=256)
    before = venue.status().last_seq
    stuck = socket.create_connection(server.address)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4_096)
    try:
        payload = b"".join(
            FRAME_HEADER.pack(len(body)) + body
            for body in (msgspec.msgpack.encode(order(index)) for index in range(20_000))
        )
        stuck.settimeout(20)
        with contextlib.suppress(ConnectionError):  # the venue may drop it while it sends
            stuck.sendall(payload)
        with StreamClient(*server.address) as other:  # served while the other is stuck
            assert other.place_many([order(99_999)])[0]["order"]["client_order_id"] == "o99999"
        wait_for(lambda: server.connection_count == 0)  # the reader that never reads: dropped
        time.sleep(0.5)
        # Dropped, not served to the end: the venue stopped reading its orders.
        assert venue.status().last_seq < before + 20_000
    finally:
        stuck.close()
        server.stop()


def test_a_client_gone_mid_batch_leaves_what_was_read_journaled_and_others_unaffected(
    venue: VenueRuntime,
) -> None:
    server = serve(venue)
    before = venue.status().last_seq
    try:
        with StreamClient(*server.address) as client:
            client.send([order(index) for index in range(2_000)])
        wait_for(lambda: venue.status().last_seq > before and venue.status().queue_depth == 0)
        with StreamClient(*server.address) as other:
            answer = other.place_many([order(5_000)])[0]
    finally:
        server.stop()
    read = answer["seq"] - before - 1  # orders of the vanished client the venue journaled
    assert 0 < read <= 2_000
    orders = venue.read(lambda v: v.open_orders(1, "BTC-JPY") + v.open_orders(2, "BTC-JPY"))
    assert len(orders) == read + 1


def test_a_full_venue_queue_answers_overloaded_with_retry_after(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path / "venue", queue_depth_max=64)
    server = serve(runtime, unacked_max=4_096)
    try:
        with StreamClient(*server.address) as client:
            answers = client.place_many([order(index) for index in range(3_000)], window=4_000)
    finally:
        server.stop()
        runtime.stop()
    overloaded = [a for a in answers if a.get("error", {}).get("code") == "overloaded"]
    placed = [a for a in answers if "order" in a]
    assert overloaded and placed and len(overloaded) + len(placed) == 3_000
    assert overloaded[0]["error"]["retry_after_s"] == runtime.limits.retry_after_s


def test_empty_trailing_and_undecodable_frames_each_get_invalid_frame_in_their_place(
    venue: VenueRuntime,
) -> None:
    server = serve(venue)
    good = msgspec.msgpack.encode(order(1))
    try:
        with StreamClient(*server.address) as client:
            client.send_raw(FRAME_HEADER.pack(0))  # an empty frame
            client.send_raw(FRAME_HEADER.pack(len(good) + 1) + good + b"\xc0")  # two objects
            client.send_raw(FRAME_HEADER.pack(3) + b"\xa2\xff\xfe")  # a string, not UTF-8
            client.send([order(2)])
            answers = client.receive(4)
    finally:
        server.stop()
    assert [a.get("error", {}).get("code") for a in answers] == [
        "invalid_frame", "invalid_frame", "invalid_frame", None]
    assert answers[3]["order"]["client_order_id"] == "o2"


def test_orders_split_across_reads_byte_by_byte_are_answered_whole(venue: VenueRuntime) -> None:
    server = serve(venue)
    payload = b"".join(FRAME_HEADER.pack(len(body)) + body
                       for body in (msgspec.msgpack.encode(order(i)) for i in range(3)))
    try:
        with StreamClient(*server.address) as client:
            for index in range(len(payload)):
                client.send_raw(payload[index:index + 1])
                if index % 50 == 0:
                    time.sleep(0.001)  # let the venue read the pieces one at a time
            answers = client.receive(3)
    finally:
        server.stop()
    assert [a["order"]["client_order_id"] for a in answers] == ["o0", "o1", "o2"]


def test_a_client_gone_mid_frame_places_nothing_of_that_frame(venue: VenueRuntime) -> None:
    server = serve(venue)
    body = msgspec.msgpack.encode(order(1))
    before = venue.status().last_seq
    try:
        with StreamClient(*server.address) as client:
            client.send_raw(FRAME_HEADER.pack(len(body)) + body[: len(body) // 2])
        with StreamClient(*server.address) as other:
            answer = other.place_many([order(2)])[0]
    finally:
        server.stop()
    assert answer["seq"] == before + 1  # the half frame was never an order
    assert venue.read(lambda v: v.open_orders(2, "BTC-JPY")) == []


def test_connections_past_the_limit_are_refused_with_a_reason(venue: VenueRuntime) -> None:
    server = serve(venue, connections_max=1)
    try:
        with StreamClient(*server.address) as first:
            assert first.place_many([order(1)])[0]["order"]["client_order_id"] == "o1"
            with StreamClient(*server.address) as second:
                refusal = second.receive(1)[0]
                with pytest.raises(StreamClosedError):
                    second.receive(1)
            assert first.place_many([order(3)])[0]["order"]["client_order_id"] == "o3"
    finally:
        server.stop()
    assert refusal["error"]["code"] == "too_many_connections"
    assert refusal["error"]["message_ja"]
