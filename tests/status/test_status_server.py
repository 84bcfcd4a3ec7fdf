"""The dedicated static server over a real socket: the exported files, conditional requests,
gzip, keep-alive, and a reload when a new revision is exported."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from haltguard.status.server import DirectoryWatcher, listening_socket, serve_socket
from haltguard.status.site import Site, SiteFile, export_site

STOP_S_MAX = 5.0


def _site(text: str) -> Site:
    files = {
        "index.html": f"<!doctype html><p>{text}</p>{'.' * 2000}".encode(),
        "en/index.html": b"<!doctype html><p>english</p>",
        "api/v2/status.json": f'{{"status":"{text}"}}'.encode(),
        "revision.txt": f"{text}\n".encode(),
    }
    return Site({path: SiteFile.of(path, body) for path, body in files.items()}, text)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    directory = tmp_path / "public"
    export_site(_site("first"), directory)
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    watcher = DirectoryWatcher(directory)
    thread = threading.Thread(target=loop.run_until_complete,
                              args=(serve_socket(sock, watcher, stop),), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", directory
    loop.call_soon_threadsafe(stop.set)
    thread.join(STOP_S_MAX)
    sock.close()


def test_files_are_served_with_etag_and_a_304_for_a_client_that_has_them(
    served: tuple[str, Path],
) -> None:
    base, _ = served
    with httpx.Client(base_url=base) as client:
        page = client.get("/", headers={"Accept-Encoding": "identity"})
        assert page.status_code == 200 and "<p>first</p>" in page.text
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "date" in page.headers
        again = client.get("/", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert client.get("/en/").text == "<!doctype html><p>english</p>"
        assert client.get("/api/v2/status.json").json() == {"status": "first"}
        assert client.get("/missing.json").status_code == 404
        redirect = client.get("/en", follow_redirects=False)
        assert (redirect.status_code, redirect.headers["location"]) == (308, "/en/")
        assert client.post("/", content=b"x").status_code == 405


def test_gzip_goes_to_clients_that_accept_it(served: tuple[str, Path]) -> None:
    base, _ = served
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n"
                    b"Connection: close\r\n\r\n")
        data = b""
        while chunk := raw.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head
    assert gzip.decompress(body).startswith(b"<!doctype html><p>first</p>")


def test_one_connection_carries_many_requests(served: tuple[str, Path]) -> None:
    base, _ = served
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as raw:
        raw.sendall(b"GET /api/v2/status.json HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        data = b""
        deadline = time.monotonic() + STOP_S_MAX
        while data.count(b'{"status":"first"}') < 3:
            assert time.monotonic() < deadline, data
            data += raw.recv(65536)
    assert data.count(b"HTTP/1.1 200 OK") == 3


def test_a_new_export_is_picked_up_without_a_restart(served: tuple[str, Path]) -> None:
    base, directory = served
    export_site(_site("second"), directory)
    deadline = time.monotonic() + STOP_S_MAX
    while httpx.get(base + "/api/v2/status.json").json() != {"status": "second"}:
        assert time.monotonic() < deadline, "the server did not reload the new export"
        time.sleep(0.1)
