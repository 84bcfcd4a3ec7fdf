"""The public venue API of ``haltguard serve`` when the venue is a process of its own.

:class:`VenueForwarder` is a plain ASGI app that passes each ``/v1`` and ``/venue`` request to
the child venue over its request channel (``gateway/channel.py``: the parsed request as one
frame, many in flight on one connection) and hands the answer back. While the child is
down (restarting after a crash) it answers at once with ``503``, ``Retry-After`` and the
venue's error shape naming the restart, instead of letting clients wait on a dead port.
Load shedding and the request-flood limiter run in front of it, in this process, so they
hold through a restart of the venue.

:class:`ChildStatus` polls the child's admin status so the shedder knows the queue depth and
the health monitors know whether the venue runs, without a round trip per request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from haltguard.gateway.app import VENUE_BODY_BYTES_MAX
from haltguard.gateway.channel import ChannelClient, ChannelClosedError
from haltguard.web.asgi import BODY_RECEIVE_S_MAX_DEFAULT, answer_error, receive_body

log = logging.getLogger(__name__)

FORWARD_TIMEOUT_S = 30.0
RETRY_AFTER_S = 1
STATUS_POLL_S = 0.2
STATUS_TIMEOUT_S = 1.0


class VenueForwarder:
    """Forwards HTTP requests to the venue process over its request channel
    (:class:`~haltguard.gateway.channel.ChannelClient`, one pipelined connection);
    ``down_reason`` says why the venue is down ("" while it runs), checked before each
    request. A body is read whole first, at most what the venue takes and within
    ``receive_s_max`` (``413`` / ``408`` otherwise), so a slow client holds nothing of the
    venue's."""

    def __init__(self, channel_host: str, channel_port: int, down_reason: Callable[[], str],
                 *, receive_s_max: float = BODY_RECEIVE_S_MAX_DEFAULT) -> None:
        self.channel_host = channel_host
        self.channel_port = channel_port
        self.down_reason = down_reason
        self.receive_s_max = receive_s_max
        self._channel: ChannelClient | None = None
        self.forwarded = 0
        self.refused_down = 0

    def channel(self) -> ChannelClient:
        """One channel per server; made on the server's event loop."""
        if self._channel is None:
            self._channel = ChannelClient(self.channel_host, self.channel_port,
                                          timeout_s=FORWARD_TIMEOUT_S)
        return self._channel

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.aclose()
            self._channel = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await answer_error(send, 404, "not_found", "the venue API speaks HTTP only")
            return
        down = self.down_reason()
        if down:
            self.refused_down += 1
            await answer_error(send, 503, "venue_restarting", f"{down}; retry shortly",
                               RETRY_AFTER_S)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if has_dot_segment(raw_path):
            await answer_error(send, 400, "invalid_path",
                               "a path segment of '.' or '..' is not allowed; send the path "
                               "without them (see /venue/docs for the venue API's routes)")
            return
        body = await receive_body(receive, send, VENUE_BODY_BYTES_MAX, self.receive_s_max)
        if body is None:
            return
        address = scope.get("client")
        try:
            response = await self.channel().request(
                scope["method"], scope["path"], raw_path, query=scope.get("query_string", b""),
                headers=scope["headers"], body=body,
                client=str(address[0]) if address else "unknown")
        except ChannelClosedError as exc:
            self.refused_down += 1
            await answer_error(send, 503, "venue_restarting",
                               f"the venue process is not answering ({exc}); it is being "
                               "restarted from its journal; retry shortly. An order sent just "
                               "now may have been taken: retry it with the same "
                               "client_order_id", RETRY_AFTER_S)
            return
        except TimeoutError:
            await answer_error(send, 504, "ack_timeout",
                               f"the venue did not answer within {FORWARD_TIMEOUT_S:g} s; the "
                               "request may still be applied. Check the account's orders "
                               "before retrying (a retry with the same client_order_id is "
                               "safe)")
            return
        await send({"type": "http.response.start", "status": response.status,
                    "headers": response.headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": False})
        self.forwarded += 1


def has_dot_segment(raw_path: bytes) -> bool:
    """Whether ``raw_path`` has a ``.`` or ``..`` segment, which the HTTP client would resolve
    on the way: the request would reach another route than the one the shedder judged."""
    return any(segment in (b".", b"..") for segment in raw_path.split(b"/"))


@dataclass
class ChildRuntimeStatus:
    """The child's runtime counters as the monitors and the shedder read them
    (:class:`haltguard.gateway.load_signals.RuntimeStatusLike`)."""

    running: bool
    failure: str
    queue_depth: int
    queue_depth_max: int
    commands: int
    overloads: int
    last_seq: int


class ChildStatus:
    """The latest status of the child venue, polled every ``interval_s`` on a thread."""

    def __init__(self, base_url: str, admin_token: str, queue_depth_max: int,
                 down_reason: Callable[[], str], *, interval_s: float = STATUS_POLL_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token
        self.down_reason = down_reason
        self.interval_s = interval_s
        self._latest = ChildRuntimeStatus(False, "not polled yet", 0, queue_depth_max, 0, 0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_forever, name="venue-status",
                                        daemon=True)

    def start(self) -> ChildStatus:
        self.poll_once()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def __call__(self) -> ChildRuntimeStatus:
        return self._latest

    def queue_depth(self) -> tuple[int, int]:
        latest = self._latest
        return latest.queue_depth, latest.queue_depth_max

    def poll_once(self, client: httpx.Client | None = None) -> ChildRuntimeStatus:
        previous = self._latest
        down = self.down_reason()
        if down:
            self._latest = ChildRuntimeStatus(False, down, 0, previous.queue_depth_max,
                                              previous.commands, previous.overloads,
                                              previous.last_seq)
            return self._latest
        try:
            if client is None:
                with httpx.Client(timeout=STATUS_TIMEOUT_S) as own:
                    data = self._fetch(own)
            else:
                data = self._fetch(client)
            self._latest = ChildRuntimeStatus(
                running=bool(data["running"]), failure=str(data["failure"]),
                queue_depth=int(data["queue_depth"]),
                queue_depth_max=int(data["queue_depth_max"]), commands=int(data["commands"]),
                overloads=int(data["overloads"]), last_seq=int(data["last_seq"]),
            )
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            self._latest = ChildRuntimeStatus(
                False, f"the venue process does not answer its status ({exc})", 0,
                previous.queue_depth_max, previous.commands, previous.overloads,
                previous.last_seq,
            )
        return self._latest

    def _fetch(self, client: httpx.Client) -> dict[str, Any]:
        response = client.get(self.base_url + "/v1/admin/status",
                              headers={"Authorization": f"Bearer {self.admin_token}"})
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def _poll_forever(self) -> None:
        with httpx.Client(timeout=STATUS_TIMEOUT_S) as client:
            while not self._stop.wait(self.interval_s):
                try:
                    self.poll_once(client)
                except Exception:
                    log.exception("polling the venue's status failed; trying again")
