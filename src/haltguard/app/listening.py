"""The listening socket of a server, bound before anything else starts, so a busy port stops a
start before it has done anything a person would have to undo."""

from __future__ import annotations

import socket


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv6 when the host has a colon); raises
    :class:`OSError` with nothing left open when the address cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener
