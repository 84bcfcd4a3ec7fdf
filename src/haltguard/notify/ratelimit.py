"""A per-client request limit for the public endpoints, kept in the process.

A fixed one-minute window per (bucket, client address). Memory is bounded: past
``CLIENTS_MAX`` addresses the oldest windows are dropped. Behind several processes each
enforces its own limit, which is enough to stop one client flooding the subscribe form.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

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
