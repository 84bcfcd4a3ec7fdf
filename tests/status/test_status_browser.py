"""What a person sees: Debian's Chromium, with JavaScript off, opens the live page served by
uvicorn in both languages and on a phone-sized screen. Screenshots are kept under
``test-artifacts/status/``."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import ViewportSize
from status_support import ARTIFACTS_DIR, SQLITE_ONLY, StatusApi

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SERVER_START_S_MAX = 10.0
WAIT_MS = 5_000
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1200, "height": 900}

pytestmark = [
    SQLITE_ONLY,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="/usr/bin/chromium is missing: apt-get install -y chromium"),
]


@pytest.fixture
def live_url(api: StatusApi) -> Iterator[str]:
    """The same app served by uvicorn on a free local port."""
    server = uvicorn.Server(uvicorn.Config(api.app, host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S_MAX
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(SERVER_START_S_MAX)


def test_a_person_reads_the_outage_in_japanese_switches_to_english_and_reads_it_on_a_phone(
    api: StatusApi, live_url: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    incident = api.open_incident(affected_markets=["BTC-JPY"])
    api.halt(incident["id"], "BTC-JPY")
    api.clock.advance(timedelta(minutes=5))
    api.publish(incident["id"], "identified", cause_ja="注文データベースの障害",
                cause_en="a failure of the order database")
    api.clock.advance(timedelta(minutes=1))
    api.publisher.refresh()
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            desktop = browser.new_page(viewport=DESKTOP, java_script_enabled=False)
            desktop.set_default_timeout(WAIT_MS)
            desktop.goto(f"{live_url}/status/")
            expect(desktop.get_by_role("status")).to_have_text("重大な障害が発生しています")
            expect(desktop.get_by_text("【原因】注文データベースの障害")).to_be_visible()
            expect(desktop.get_by_text("BTC/JPY 取引", exact=True)).to_be_visible()
            desktop.screenshot(path=ARTIFACTS_DIR / "status-ja-desktop.png", full_page=True)
            desktop.get_by_role("link", name="English").click()
            assert desktop.url == f"{live_url}/status/en/"
            expect(desktop.get_by_role("status")).to_have_text("Major System Outage")
            expect(desktop.get_by_text("Cause: a failure of the order database")).to_be_visible()
            desktop.screenshot(path=ARTIFACTS_DIR / "status-en-desktop.png", full_page=True)
            desktop.get_by_role("link", name="日本語").click()
            assert desktop.url == f"{live_url}/status/"

            phone = browser.new_page(viewport=PHONE, java_script_enabled=False)
            phone.set_default_timeout(WAIT_MS)
            phone.goto(f"{live_url}/status/")
            expect(phone.get_by_role("status")).to_be_visible()
            expect(phone.get_by_text("【対象】BTC/JPY 取引")).to_be_visible()
            banner = phone.get_by_role("status").bounding_box()
            assert banner is not None and banner["x"] + banner["width"] <= PHONE["width"]
            bars = phone.get_by_role("img", name=re.compile(r"^BTC\/JPY 取引 過去90日間の状態"))
            assert re.search(r"\(稼働率 \d+\.\d\d%\)$", bars.get_attribute("aria-label") or "")
            box = bars.bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"]
            phone.screenshot(path=ARTIFACTS_DIR / "status-ja-phone.png", full_page=True)
            phone.goto(f"{live_url}/status/en/incidents/INC-{incident['id']}.html")
            expect(phone.get_by_text("We have identified the cause")).to_be_visible()
            phone.screenshot(path=ARTIFACTS_DIR / "status-en-incident-phone.png", full_page=True)
        finally:
            browser.close()
    for name in ("status-ja-desktop", "status-en-desktop", "status-ja-phone",
                 "status-en-incident-phone"):
        assert (ARTIFACTS_DIR / f"{name}.png").stat().st_size > 10_000
