"""Plain ASGI pieces for middleware that answers before (or instead of) an app: reading a
bounded request body within a deadline, the body limits of every route, and the JSON error
every haltguard API answers with.

A request body is read whole before any route sees it, at most ``bytes_max`` bytes (a larger
one is ``413`` as soon as its ``Content-Length`` says so, or as soon as that many bytes
arrived) and within ``receive_s_max`` seconds from the first byte asked for (a client that
claims 100 bytes and sends 5 holds nothing longer than that: ``408``). Nothing of a refused
request reaches a route, so nothing is half-applied.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_RECEIVE_S_MAX_DEFAULT = 10.0
"""How long a whole request body may take to arrive, from the first byte asked for."""
BODY_RECEIVE_S_MAX_MAX = 300.0
BODY_BYTES_MAX_MAX = 64 * 1024 * 1024
"""No route takes more than this, whatever is configured."""


async def read_body(receive: Receive, bytes_max: int) -> bytes | None:
    """The whole request body, or None once it exceeds ``bytes_max``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away; the app sees an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > bytes_max:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def answer_error(
    send: Send, status: int, code: str, message: str, retry_after_s: int = 0
) -> None:
    """The APIs' error shape, ``{"error": {"code", "message"}}``, with ``Retry-After`` when
    the caller should come back, sent without an app."""
    headers, body = error_answer(code, message, retry_after_s)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def error_answer(code: str, message: str,
                 retry_after_s: int = 0) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of :func:`answer_error`, for servers that write bytes."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if retry_after_s:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    return headers, body


def _route_pattern(template: str) -> re.Pattern[str]:
    """``/api/incidents/{id}/postmortem`` as a pattern where ``{...}`` is one path segment."""
    parts = re.split(r"\{[^}/]+\}", template)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


@dataclass(frozen=True)
class BodyLimits:
    """How large a request body may be and how long it may take to arrive.

    ``bytes_max`` holds for every route but those in ``routes``: (path template, bytes max)
    pairs, the first matching template wins (``{name}`` stands for one path segment).
    """

    bytes_max: int
    receive_s_max: float = BODY_RECEIVE_S_MAX_DEFAULT
    routes: tuple[tuple[str, int], ...] = ()
    _patterns: tuple[tuple[re.Pattern[str], int], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        for where, size in (("bytes_max", self.bytes_max), *self.routes):
            if not 0 <= size <= BODY_BYTES_MAX_MAX:
                raise ValueError(f"body limit for {where} must be 0..{BODY_BYTES_MAX_MAX} bytes, "
                                 f"not {size}")
        if not 0 < self.receive_s_max <= BODY_RECEIVE_S_MAX_MAX:
            raise ValueError(f"receive_s_max must be more than 0 and at most "
                             f"{BODY_RECEIVE_S_MAX_MAX:g} s, not {self.receive_s_max}")
        patterns = tuple((_route_pattern(template), size) for template, size in self.routes)
        object.__setattr__(self, "_patterns", patterns)

    def bytes_max_for(self, path: str) -> int:
        """The most a request to ``path`` may carry."""
        for pattern, size in self._patterns:
            if pattern.fullmatch(path):
                return size
        return self.bytes_max


def _declared_body(scope: Scope) -> int | None:
    """The body length the headers announce: its ``Content-Length``, 0 for none, or None
    when it comes in chunks of unknown total."""
    length = 0
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            length = int(value)
        elif name in {b"transfer-encoding", b"content-length"}:
            return None  # chunked, or a length the server should have refused: read, bounded
    return length


async def receive_body(
    receive: Receive, send: Send, bytes_max: int, receive_s_max: float
) -> bytes | None:
    """The whole body within the limits, or None after answering ``413`` (too large) or
    ``408`` (too slow) itself."""
    try:
        async with asyncio.timeout(receive_s_max):
            body = await read_body(receive, bytes_max)
    except TimeoutError:
        await answer_error(send, 408, "request_timeout",
                           f"the request body did not arrive within {receive_s_max:g} s; send "
                           "the whole request at once and try again")
        return None
    if body is None:
        await answer_error(send, 413, "request_too_large", _too_large(bytes_max))
    return body


def _too_large(bytes_max: int) -> str:
    return (f"the request body is larger than {bytes_max} bytes, the most this route takes; "
            "send less (split it, or shorten the texts) and try again")


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` first, then whatever the client sends next (its
    disconnect)."""
    return replaying({"type": "http.request", "body": body, "more_body": False}, receive)


def replaying(first: Message, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``first`` (a message already read) again, then whatever
    the client sends next."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return first
        return await receive()

    return replayed


class BodyLimitMiddleware:
    """Reads every request body whole, within :class:`BodyLimits`, before the app sees it."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_body(scope)
        if declared == 0:  # nothing to wait for (a GET, a body-less POST)
            await self.app(scope, receive, send)
            return
        bytes_max = self.limits.bytes_max_for(scope["path"])
        if declared is not None and declared > bytes_max:
            await answer_error(send, 413, "request_too_large", _too_large(bytes_max))
            return
        body = await receive_body(receive, send, bytes_max, self.limits.receive_s_max)
        if body is not None:
            await self.app(scope, replay(body, receive), send)
