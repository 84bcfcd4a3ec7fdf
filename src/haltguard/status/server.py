"""A small dedicated HTTP server for the exported status page.

It serves one exported directory from memory (GET and HEAD, keep-alive, ETag and
``If-None-Match``, a gzip copy for clients that accept it) and reloads the directory when
the exporter writes a new ``revision.txt``. It needs neither the database nor the exchange:
run it on another host, or several workers of it behind a load balancer, and the page stays
up while the exchange is down. Responses are assembled from bytes prepared at load time, so
a request costs a dictionary lookup and one write.

With ``workers`` > 1 the listening socket is opened once and the worker processes share it
(pre-fork), each with its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

from haltguard.status.site import REVISION_FILE, Site, SiteFile, load_directory

log = logging.getLogger(__name__)

HEADER_BYTES_MAX = 16 * 1024
RELOAD_CHECK_S = 1.0
WORKERS_MAX = 64
LISTEN_BACKLOG = 4096
CACHE_CONTROL = b"public, max-age=5"


@dataclass(frozen=True)
class _Prepared:
    """The header lines of each answer for one file, built once per load."""

    ok: bytes
    ok_gzip: bytes | None
    not_modified: bytes
    item: SiteFile


def _prepare(item: SiteFile) -> _Prepared:
    common = (b"etag: " + item.etag.encode() + b"\r\ncache-control: " + CACHE_CONTROL
              + b"\r\nvary: accept-encoding\r\nx-content-type-options: nosniff\r\n")
    kind = b"content-type: " + item.content_type.encode() + b"\r\n"
    ok = common + kind + b"content-length: " + str(len(item.body)).encode() + b"\r\n"
    gzipped = None
    if item.gzipped is not None:
        gzipped = (common + kind + b"content-encoding: gzip\r\ncontent-length: "
                   + str(len(item.gzipped)).encode() + b"\r\n")
    return _Prepared(ok, gzipped, common, item)


class StaticSite:
    """What one worker serves; swapped whole on reload."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.prepared = {path: _prepare(item) for path, item in site.files.items()}
        self._date = b""
        self._date_second = -1

    def date_line(self) -> bytes:
        second = int(time.time())
        if second != self._date_second:
            self._date = b"date: " + formatdate(second, usegmt=True).encode() + b"\r\n"
            self._date_second = second
        return self._date

    def respond(self, head: bytes) -> tuple[bytes, bool]:
        """The full response to one request head, and whether to keep the connection."""
        line_end = head.find(b"\r\n")
        request_line = head if line_end < 0 else head[:line_end]
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return self._plain(400, b"Bad Request", b"bad request\n"), False
        method, target, version = parts
        headers = head[line_end + 2:].lower() if line_end >= 0 else b""
        keep = version == b"HTTP/1.1" and b"connection: close" not in headers
        if version == b"HTTP/1.0" and b"connection: keep-alive" in headers:
            keep = True
        if b"content-length:" in headers or b"transfer-encoding:" in headers:
            return self._plain(405, b"Method Not Allowed", b"GET or HEAD only\n"), False
        if method not in (b"GET", b"HEAD"):
            return self._plain(405, b"Method Not Allowed", b"GET or HEAD only\n",
                               b"allow: GET, HEAD\r\n"), keep
        path = unquote(target.split(b"?", 1)[0].decode("latin-1")).lstrip("/")
        if path == "" or path.endswith("/"):
            path += "index.html"
        prepared = self.prepared.get(path)
        if prepared is None:
            if (path + "/index.html") in self.prepared:
                location = ("/" + path + "/").encode("latin-1")
                return self._plain(308, b"Permanent Redirect", b"",
                                   b"location: " + location + b"\r\n"), keep
            return self._plain(404, b"Not Found", b"not found\n"), keep
        connection = b"" if keep else b"connection: close\r\n"
        if prepared.item.etag.encode() in headers:
            return (b"HTTP/1.1 304 Not Modified\r\n" + self.date_line() + connection
                    + prepared.not_modified + b"\r\n"), keep
        body = prepared.item.body
        header = prepared.ok
        if prepared.ok_gzip is not None and b"gzip" in headers:
            body, header = prepared.item.gzipped or body, prepared.ok_gzip
        if method == b"HEAD":
            body = b""
        return b"HTTP/1.1 200 OK\r\n" + self.date_line() + connection + header + b"\r\n" \
            + body, keep

    def _plain(self, status: int, reason: bytes, body: bytes, extra: bytes = b"") -> bytes:
        return (b"HTTP/1.1 " + str(status).encode() + b" " + reason + b"\r\n" + self.date_line()
                + b"content-type: text/plain; charset=utf-8\r\ncontent-length: "
                + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


class _Connection(asyncio.Protocol):
    def __init__(self, current: Callable[[], StaticSite]) -> None:
        self._current = current
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but behave like one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > HEADER_BYTES_MAX:
                    transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                    b"content-length: 0\r\nconnection: close\r\n\r\n")
                    transport.close()
                return
            head = bytes(self._buffer[:end])
            del self._buffer[:end + 4]
            response, keep = self._current().respond(head)
            transport.write(response)
            if not keep:
                transport.close()
                return


class DirectoryWatcher:
    """Keeps the site of an exported directory current: reloads on a new revision."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.static = StaticSite(load_directory(directory))
        self._seen = self._revision()

    def _revision(self) -> bytes:
        try:
            return (self.directory / REVISION_FILE).read_bytes()
        except FileNotFoundError:
            return b""

    def reload_if_changed(self) -> bool:
        revision = self._revision()
        if revision == self._seen:
            return False
        self.static = StaticSite(load_directory(self.directory))
        self._seen = revision
        log.info("status page reloaded at revision %s", revision.decode().strip())
        return True

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(RELOAD_CHECK_S)
            try:
                await loop.run_in_executor(None, self.reload_if_changed)
            except Exception:
                log.exception("reloading %s failed; serving the last page", self.directory)


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


async def serve_socket(sock: socket.socket, watcher: DirectoryWatcher,
                       stop: asyncio.Event | None = None) -> None:
    """Serve ``watcher``'s directory on an already listening socket until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(lambda: watcher.static), sock=sock)
    watch = asyncio.create_task(watcher.watch())
    try:
        if stop is None:
            await asyncio.Future()
        else:
            await stop.wait()
    finally:
        watch.cancel()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


def _run_worker(sock: socket.socket, directory: Path) -> None:
    """One worker's event loop; uvloop's when it is installed (less CPU per request)."""
    watcher = DirectoryWatcher(directory)
    try:
        import uvloop  # noqa: PLC0415 - optional (not on Windows), loaded only in a worker

        runner: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve_socket(sock, watcher))


def serve_directory(directory: Path, *, host: str, port: int, workers: int = 1) -> None:
    """Serve the exported ``directory`` until interrupted, with ``workers`` processes."""
    if not (directory / REVISION_FILE).exists():
        raise FileNotFoundError(
            f"{directory} holds no exported status page ({REVISION_FILE} missing); run "
            f"haltguard status export {directory} first"
        )
    if not 1 <= workers <= WORKERS_MAX:
        raise ValueError(f"workers must be 1..{WORKERS_MAX}")
    sock = listening_socket(host, port)
    children = []
    for _ in range(workers - 1):
        pid = os.fork()
        if pid == 0:
            try:
                _run_worker(sock, directory)
            finally:
                os._exit(0)
        children.append(pid)
    try:
        _run_worker(sock, directory)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
