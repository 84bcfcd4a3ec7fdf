"""The request channel between ``serve`` and the venue process: many requests in flight on one
connection, each answered by id whatever the order they finish in; a broken peer fails what
was waiting and the next request connects again."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest
from starlette.types import Receive, Scope, Send

from haltguard.app.listening import bind_listener
from haltguard.gateway.channel import (
    REQUEST_FRAME_BYTES_MAX,
    ChannelClient,
    ChannelClosedError,
    ChannelServer,
)


class SlowFirstVenue:
    """Answers ``/slow`` after the others have been answered, echoing what it was sent."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope)
        message = await receive()
        if scope["path"] == "/slow":
            await self.release.wait()
        elif scope["path"] == "/raise":
            raise RuntimeError("a bug in the venue app")
        else:
            self.release.set()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body",
                    "body": scope["path"].encode() + b":" + message["body"],
                    "more_body": True})
        await send({"type": "http.response.body", "body": b"!", "more_body": False})


Venue = tuple[SlowFirstVenue, ChannelServer, int]


def with_venue(scenario: Callable[[Venue], Awaitable[None]]) -> None:
    """Run ``scenario`` on a fresh loop with a venue answering the channel on a free port."""

    async def run() -> None:
        app = SlowFirstVenue()
        listener = bind_listener("127.0.0.1", 0)
        server = ChannelServer(app, listener)
        await server.start()
        try:
            await scenario((app, server, listener.getsockname()[1]))
        finally:
            server.close()
            listener.close()

    asyncio.run(run())


async def _ask(client: ChannelClient, path: str, body: bytes = b"") -> tuple[int, bytes]:
    response = await client.request("POST", path, path.encode(), query=b"",
                                    headers=[(b"content-type", b"text/plain")], body=body,
                                    client="203.0.113.7")
    return response.status, response.body


def test_requests_in_flight_together_are_each_answered_by_their_own_id() -> None:
    async def scenario(venue: Venue) -> None:
        app, _, port = venue
        client = ChannelClient("127.0.0.1", port, timeout_s=5)

        answers = await asyncio.gather(_ask(client, "/slow", b"1"),
                                       *(_ask(client, f"/fast/{n}", b"2") for n in range(50)))
        await client.aclose()

        assert answers[0] == (200, b"/slow:1!")
        assert answers[1:] == [(200, f"/fast/{n}:2!".encode()) for n in range(50)]
        assert {scope["client"][0] for scope in app.seen} == {"203.0.113.7"}

    with_venue(scenario)


def test_an_answer_without_a_length_gets_one_for_the_whole_body() -> None:
    async def scenario(venue: Venue) -> None:
        _, _, port = venue
        client = ChannelClient("127.0.0.1", port, timeout_s=5)

        response = await client.request("GET", "/fast", b"/fast", query=b"", headers=[], body=b"",
                                         client="127.0.0.1")
        await client.aclose()

        assert (b"content-length", b"7") in response.headers
        assert response.body == b"/fast:!"

    with_venue(scenario)


def test_an_app_that_raises_is_answered_500_in_the_venue_error_shape() -> None:
    async def scenario(venue: Venue) -> None:
        _, _, port = venue
        client = ChannelClient("127.0.0.1", port, timeout_s=5)

        status, body = await _ask(client, "/raise")
        await client.aclose()

        assert status == 500
        assert b'"internal_error"' in body

    with_venue(scenario)


def test_a_request_not_answered_in_time_fails_with_a_timeout() -> None:
    async def scenario(venue: Venue) -> None:
        _, _, port = venue
        client = ChannelClient("127.0.0.1", port, timeout_s=0.3)

        with pytest.raises(TimeoutError):
            await _ask(client, "/slow")
        await client.aclose()

    with_venue(scenario)


def test_a_lost_connection_fails_the_waiting_requests_and_the_next_one_connects_again() -> None:
    async def scenario(venue: Venue) -> None:
        app, _, port = venue
        client = ChannelClient("127.0.0.1", port, timeout_s=5)
        waiting = asyncio.ensure_future(_ask(client, "/slow"))
        await asyncio.sleep(0.1)
        connection = client._connection
        assert connection is not None and connection.transport is not None

        connection.transport.abort()  # as when the venue process is killed
        with pytest.raises(ChannelClosedError):
            await waiting
        app.release.set()
        again = await _ask(client, "/fast", b"x")
        await client.aclose()

        assert again == (200, b"/fast:x!")

    with_venue(scenario)


def test_a_venue_not_listening_fails_the_request_at_once() -> None:
    async def scenario() -> None:
        with bind_listener("127.0.0.1", 0) as probe:
            closed_port = probe.getsockname()[1]
        client = ChannelClient("127.0.0.1", closed_port, timeout_s=5)

        with pytest.raises(ChannelClosedError, match="cannot connect"):
            await _ask(client, "/fast")

    asyncio.run(scenario())


@pytest.mark.parametrize("frame", [
    struct.pack(">I", REQUEST_FRAME_BYTES_MAX + 1),  # announces a frame over the limit
    struct.pack(">I", 3) + b"\xc1\xc1\xc1",  # MessagePack that does not decode
    struct.pack(">I", 2) + b"\x92\x01",  # decodes, but is not a request
])
def test_a_bad_frame_closes_that_connection_and_the_server_keeps_answering(frame: bytes) -> None:
    async def scenario(venue: Venue) -> None:
        _, _, port = venue
        loop = asyncio.get_running_loop()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.setblocking(False)
            await loop.sock_sendall(raw, frame)
            closed = await asyncio.wait_for(loop.sock_recv(raw, 100), 5)
        client = ChannelClient("127.0.0.1", port, timeout_s=5)
        answer = await _ask(client, "/fast", b"ok")
        await client.aclose()

        assert closed == b""
        assert answer == (200, b"/fast:ok!")

    with_venue(scenario)
