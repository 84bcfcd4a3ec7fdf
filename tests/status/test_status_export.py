"""The exported page: static files that need nothing of the service. Served by Python's plain
``http.server`` in another process, after the service and its database are gone, the page,
its JSON and feeds are all there; every change is exported again by the hook."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from status_support import SQLITE_ONLY, StatusApi

from haltguard.app.operations import create_app
from haltguard.gateway.control import InProcessVenueControl
from haltguard.responders.service import ManualClock
from haltguard.security.testing import fast_test_settings
from haltguard.status.publisher import DirectoryExporter
from haltguard.status.settings import StatusSettings
from haltguard.status.site import REVISION_FILE, export_site, load_directory
from haltguard.status.statuspage import DOCUMENTS
from haltguard.web.context import context_of
from haltguard.web.settings import Settings

pytestmark = SQLITE_ONLY

SERVER_START_S_MAX = 10.0
LOOP_WAIT_S_MAX = 10.0
LINK = re.compile(r'(?:href|src)="([^"]*)"')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def plain_http_server(directory: Path) -> Iterator[str]:
    """``python -m http.server`` on ``directory``: a host that knows nothing of haltguard."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S_MAX
        while True:
            try:
                httpx.get(base + "/", timeout=1.0)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(SERVER_START_S_MAX)


def _export_story(api: StatusApi, directory: Path) -> dict[str, int]:
    api.page("/status/")
    incident = api.open_incident(affected_markets=["BTC-JPY"])
    api.halt(incident["id"], "BTC-JPY")
    api.clock.advance(timedelta(minutes=5))
    api.publish(incident["id"], "investigating")
    api.publisher.refresh()
    site = api.publisher.site
    assert site is not None
    export_site(site, directory)
    return incident


def test_the_exported_page_is_served_by_a_plain_http_server_with_the_service_gone(
    api: StatusApi, tmp_path: Path
) -> None:
    directory = tmp_path / "public"
    incident = _export_story(api, directory)
    api.client.close()
    context_of(api.app).engine.dispose()
    for database in tmp_path.glob("*.sqlite3*"):
        database.unlink()
    with plain_http_server(directory) as base:
        ja = httpx.get(base + "/")
        en = httpx.get(base + "/en/")
        assert "重大な障害が発生しています" in ja.text
        assert "現在、障害が発生しており、原因を調査しております。" in ja.text
        assert "Major System Outage" in en.text
        for name in DOCUMENTS:
            for prefix in ("", "en/"):
                document = httpx.get(f"{base}/{prefix}api/v2/{name}")
                assert document.status_code == 200, name
                assert document.json()["page"]["id"] == "haltguard"
        assert httpx.get(base + "/api/v2/summary.json").json()["incidents"][0]["id"] \
            == f"INC-{incident['id']}"
        assert httpx.get(base + "/history.atom").text.startswith("<?xml")
        detail = httpx.get(f"{base}/en/incidents/INC-{incident['id']}.html")
        assert "We are experiencing a problem" in detail.text


def test_the_exported_page_uses_only_relative_links_inline_css_and_no_script(
    api: StatusApi, tmp_path: Path
) -> None:
    directory = tmp_path / "public"
    _export_story(api, directory)
    pages = sorted(directory.rglob("*.html"))
    assert len(pages) == 4  # both indexes and the incident in both languages
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "<script" not in text
        assert '<link rel="stylesheet"' not in text and "<style>" in text
        for link in LINK.findall(text):
            assert not link.startswith(("/", "http:", "https:")), (page.name, link)
            target = (page.parent / link).resolve()
            if link.endswith("/"):
                target = target / "index.html"
            assert target.is_file(), f"{page.relative_to(directory)} links to missing {link}"


def test_every_change_is_exported_again_by_the_hook(api: StatusApi, tmp_path: Path) -> None:
    directory = tmp_path / "public"
    api.publisher.add_hook(DirectoryExporter(directory))
    api.page("/status/")
    first = (directory / REVISION_FILE).read_text()
    api.call("POST", "/api/status/components/website/override",
             body={"status": "major_outage", "reason": "the CDN is down"})
    api.publisher.refresh()
    second = (directory / REVISION_FILE).read_text()
    assert second != first
    assert load_directory(directory).version == second.strip()
    summary = (directory / "api/v2/components.json").read_text(encoding="utf-8")
    assert '"id":"website","name":"ウェブサイト","status":"major_outage"' in summary


def test_the_loop_started_with_the_app_exports_the_page_without_any_request(
    engine: Engine, venue: InProcessVenueControl, clock: ManualClock, tmp_path: Path
) -> None:
    directory = tmp_path / "cdn-origin"
    app = create_app(Settings(database_url=str(engine.url), migrate_on_start=False),
                     venue_control=venue, clock=clock, engine=engine,
                     security_settings=fast_test_settings(), escalation_interval_s=None,
                     status_settings=StatusSettings(url="https://status.example.test/",
                                                    loop_interval_s=0.5,
                                                    export_dirs=(directory,)))
    with TestClient(app):
        deadline = time.monotonic() + LOOP_WAIT_S_MAX
        while not (directory / REVISION_FILE).exists():
            assert time.monotonic() < deadline, "the status loop exported nothing"
            time.sleep(0.05)
    page = (directory / "index.html").read_text(encoding="utf-8")
    assert "BTC/JPY 取引" in page and "すべてのシステムが正常に稼働しています" in page
