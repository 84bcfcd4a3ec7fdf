"""A client for the streaming order entry (:mod:`haltguard.gateway.stream`).

Blocking and small on purpose: a socket, the frame format, and :meth:`StreamClient.place_many`
which keeps up to ``window`` orders in flight and returns every answer in order. The
benchmark and the tests use it; a market maker's own client needs only the frame format.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from haltguard.gateway.frames import FRAME_HEADER
from haltguard.gateway.stream import encode_frame

WINDOW_DEFAULT = 4_096  # orders in flight; keep it at or under the server's unacked_max
RECEIVE_BYTES = 256 * 1024


class StreamClosedError(ConnectionError):
    """The venue closed the connection; ``answers`` holds those received until then."""

    def __init__(self, message: str, answers: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.answers = answers


class StreamClient:
    """One connection to a venue's streaming port."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 30.0) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout_s)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()
        self._decode = msgspec.msgpack.Decoder().decode

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close()

    def send(self, orders: Iterable[Mapping[str, Any]]) -> int:
        """Send ``orders`` (maps of the REST order fields plus ``market``) without waiting;
        returns how many were sent."""
        frames = [encode_frame(order) for order in orders]
        self.send_raw(b"".join(frames))
        return len(frames)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (tests send broken frames this way)."""
        self._socket.sendall(data)

    def receive(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` answers, in order; :class:`StreamClosedError` if the venue closes
        the connection first (its ``answers`` attribute holds those received)."""
        answers: list[dict[str, Any]] = []
        buffer = self._buffer
        header_size = FRAME_HEADER.size
        offset = 0
        while len(answers) < count:
            if len(buffer) - offset >= header_size:
                (length,) = FRAME_HEADER.unpack_from(buffer, offset)
                end = offset + header_size + length
                if end <= len(buffer):
                    answers.append(self._decode(memoryview(buffer)[offset + header_size:end]))
                    offset = end
                    continue
            del buffer[:offset]
            offset = 0
            chunk = self._socket.recv(RECEIVE_BYTES)
            if not chunk:
                raise StreamClosedError(
                    f"the venue closed the stream after {len(answers)} of {count} answers",
                    answers)
            buffer += chunk
        del buffer[:offset]
        return answers

    def place_many(
        self, orders: Sequence[Mapping[str, Any]], *, window: int = WINDOW_DEFAULT
    ) -> list[dict[str, Any]]:
        """Send every order pipelined, at most ``window`` unanswered; every answer, in order."""
        if window < 2:
            raise ValueError("window must be at least 2")
        step = window // 2
        chunks = [orders[start:start + step] for start in range(0, len(orders), step)]
        answers: list[dict[str, Any]] = []
        if not chunks:
            return answers
        self.send(chunks[0])
        for index, chunk in enumerate(chunks):
            if index + 1 < len(chunks):
                self.send(chunks[index + 1])
            answers += self.receive(len(chunk))
        return answers
