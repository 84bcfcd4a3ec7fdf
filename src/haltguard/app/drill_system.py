"""A system of the drill's own: ``haltguard drill --own-system`` (and the drill tests) start
a demo system, serve it on an ephemeral loopback port and subscribe a local receiver to its
notices, so every path a drill takes is the real one.

It lives with the app because it starts the system; the drill package only ever sees the
result through :class:`~haltguard.drill.surface.DrillSurface`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from haltguard.app.config import ServeConfig
from haltguard.app.system import System, start_system
from haltguard.drill.runner import NoticeObserver, ServerThread
from haltguard.drill.scenario import Progress


@contextmanager
def own_system(config: ServeConfig, progress: Progress) -> Iterator[System]:
    """Start a demo system on ``config`` (its data directory), serve it on an ephemeral
    port, and stop both afterwards."""
    progress(f"starting a demo system of the drill's own on {config.data_dir}")
    system = start_system(config, demo=True)
    server: ServerThread | None = None
    observer: NoticeObserver | None = None
    try:
        server = ServerThread(system.asgi_app(), **system.server_options()).start()
        observer = NoticeObserver().start(system)
        system.api_url = server.url
        if not system.config.venue_url:
            system.venue_api_url = server.url
        progress(f"serving it on {server.url}; notices go to a local observer channel")
        yield system
    finally:
        if server is not None:
            server.stop()
        if observer is not None:
            observer.stop()
        system.stop()
        progress("the drill's own system stopped")
