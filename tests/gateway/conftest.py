"""Gateway fixtures live in ``gateway_support`` so tests can import its helpers by name."""

from gateway_support import client, live_server, runtime

__all__ = ["client", "live_server", "runtime"]
