"""Per-address request limits for the public routes (the subscribe form, the confirm and
unsubscribe links, the page acknowledgement link), kept in the process.

A fixed one-minute window per (bucket, client address). Memory is bounded: past
``CLIENTS_MAX`` addresses the oldest windows are dropped. Behind several processes each
enforces its own limit, which is enough to stop one client flooding a form or a link.
Shared HTTP plumbing: the notify and responders domains both guard public links with it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from haltguard.common.errors import ErrorKind, HaltguardError
from haltguard.web.context import context

WINDOW_S = 60.0
CLIENTS_MAX = 100_000


class RateLimiter:
    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._windows: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, bucket: str, client: str, per_minute: int) -> int:
        """0 if the request may go ahead, else the seconds until the client may retry."""
        assert per_minute > 0
        now = self._monotonic()
        key = (bucket, client)
        with self._lock:
            started, count = self._windows.pop(key, (now, 0))
            if now - started >= WINDOW_S:
                started, count = now, 0
            count += 1
            self._windows[key] = (started, count)
            while len(self._windows) > CLIENTS_MAX:
                self._windows.popitem(last=False)
            if count <= per_minute:
                return 0
            return max(1, int(started + WINDOW_S - now + 0.999))


@dataclass(frozen=True)
class PublicLinkLimits:
    """How many requests a minute one address may make to the public links (confirm,
    unsubscribe, acknowledge a page): one budget for all of them, a part of the operations
    context built from the notify settings."""

    link_requests_per_minute: int

    def __post_init__(self) -> None:
        if self.link_requests_per_minute < 1:
            raise ValueError("link_requests_per_minute must be at least 1")


class RateLimitedError(HaltguardError):
    """Too many requests from one address; the answer's ``Retry-After`` says when to retry."""

    kind = ErrorKind.TOO_MANY
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(retry_after_s)}


def limit_requests(request: Request, bucket: str, per_minute: int) -> None:
    """Refuse the request (429 with ``Retry-After``) once its address is over ``per_minute``
    in ``bucket``; the limiter is the app's one (a part of its operations context)."""
    client = request.client.host if request.client else "unknown"
    wait_s = context(request).part(RateLimiter).allow(bucket, client, per_minute)
    if wait_s:
        raise RateLimitedError(
            f"too many requests from your address; wait {wait_s} s and try again", wait_s
        )


def limit_links(request: Request) -> None:
    """The dependency of every public link route: one per-address budget for them all."""
    limits = context(request).part(PublicLinkLimits)
    limit_requests(request, "link", limits.link_requests_per_minute)
