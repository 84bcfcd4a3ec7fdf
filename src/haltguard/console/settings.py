"""The console's knobs, each with its bound and unit in its name.

Plain values: the composition root gives the console a :class:`ConsoleSettings` (defaults
unless told otherwise); tests build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

IDLE_MINUTES_DEFAULT = 30
LIVE_POLL_MS_DEFAULT = 250
LIVE_KEEPALIVE_S_DEFAULT = 15
LIVE_CLIENTS_MAX_DEFAULT = 200
TIMELINE_SHOWN_MAX = 200
OVERVIEW_DECISIONS_MAX = 10
AUDIT_PAGE_ROWS_MAX = 100


@dataclass(frozen=True)
class ConsoleSettings:
    """``idle_minutes``: a console session with no page view or form for this long is ended
    (audited as a logout). ``live_poll_ms``: how often one watcher per process looks for a
    change (every connected browser shares it). ``live_keepalive_s``: a comment line sent to
    idle live connections so proxies keep them. ``live_clients_max``: live connections
    beyond this are refused (the page still works by reloading)."""

    idle_minutes: int = IDLE_MINUTES_DEFAULT
    live_poll_ms: int = LIVE_POLL_MS_DEFAULT
    live_keepalive_s: int = LIVE_KEEPALIVE_S_DEFAULT
    live_clients_max: int = LIVE_CLIENTS_MAX_DEFAULT

    def __post_init__(self) -> None:
        for name, low, high in (
            ("idle_minutes", 1, 24 * 60),
            ("live_poll_ms", 20, 5_000),
            ("live_keepalive_s", 1, 300),
            ("live_clients_max", 1, 10_000),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"console.{name} must be {low}..{high}, got {value}")
