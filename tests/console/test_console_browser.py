"""Two operators in two browsers handle a SEV1 end to end, on Debian's Chromium: open it,
halt BTC-JPY, publish a ja/en update, ask to resume, the second operator approves (seeing the
request appear without reloading), the market reopens through its auction, resolve. After each
step the venue's state and the audit chain are checked. Screenshots of the overview and the
incident page, in Japanese and English, go to ``test-artifacts/console/``; with
``HALTGUARD_UPDATE_SCREENSHOTS=1`` also to ``docs/screenshots/``, which the README shows."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from console_support import (
    ARTIFACTS_DIR,
    SCREENSHOTS_DIR,
    SQLITE_ONLY,
    later,
    rest_orders,
    totp_code,
)
from fastapi import FastAPI
from playwright.sync_api import Page, ViewportSize
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.gateway.control import InProcessVenueControl
from haltguard.incidents.models import Incident, TimelineEntry, TimelineKind
from haltguard.incidents.rules import IncidentStatus
from haltguard.responders.service import ManualClock
from haltguard.security import audit
from haltguard.security.models import AuditEntry
from haltguard.security.testing import ProvisionedOperator
from haltguard.status.models import StatusUpdate, UpdateState
from haltguard.venue.types import MarketState

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SERVER_START_S_MAX = 10.0
WAIT_MS = 20_000  # generous: the machine running the suite is shared
DESKTOP: ViewportSize = {"width": 1280, "height": 900}

pytestmark = [
    SQLITE_ONLY,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="/usr/bin/chromium is missing: apt-get install -y chromium"),
]


UPDATE_SCREENSHOTS_ENV = "HALTGUARD_UPDATE_SCREENSHOTS"
SCREENSHOTS = ("overview-ja", "overview-en", "incident-ja", "incident-en")


@pytest.fixture
def clock() -> ManualClock:
    """The operations clock at the wall clock's time, as the venue's, so the screenshots'
    times agree (it still moves only when told)."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    """The operations app served by uvicorn on a free local port."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off", timeout_graceful_shutdown=1))
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


def _log_in(page: Page, url: str, operator: ProvisionedOperator, clock: ManualClock) -> None:
    later(clock)
    page.goto(f"{url}/console/login")
    page.fill("input[name=username]", operator.username)
    page.fill("input[name=password]", operator.password)
    page.fill("input[name=totp_code]", totp_code(operator, clock.now()))
    page.click("form button[type=submit]")
    page.wait_for_url(f"{url}/console/overview")


def _audit(session_factory: sessionmaker[Session]) -> list[str]:
    """The audit chain's actions, after checking the whole chain verifies."""
    with session_factory() as session:
        verification = audit.verify(session)
        assert verification.ok, verification.summary()
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.index)))


def _wait_for(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.05)


def test_two_operators_handle_a_sev1_from_halt_through_four_eyes_resume_to_resolved(
    *, app: FastAPI, live_url: str, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    venue: InProcessVenueControl, session_factory: sessionmaker[Session],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    rest_orders(venue, "BTC-JPY", 1234)
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            carol = browser.new_context(viewport=DESKTOP).new_page()
            dave = browser.new_context(viewport=DESKTOP).new_page()
            for page in (carol, dave):
                page.set_default_timeout(WAIT_MS)
            _log_in(carol, live_url, operators["carol"], clock)
            expect(carol.locator("tr[data-market=BTC-JPY] td.num")).to_have_text("1,234")

            # 1. Open a SEV1.
            carol.goto(f"{live_url}/console/incidents")
            carol.fill("input[name=title]", "Matching engine stalled on BTC-JPY")
            carol.select_option("select[name=category]", "software_bug")
            carol.select_option("select[name=severity]", "SEV1")
            carol.fill("input[name=affected_markets]", "BTC-JPY")
            carol.click("form[action='/console/incidents'] button[type=submit]")
            carol.wait_for_url(f"{live_url}/console/incidents/*")
            incident_id = int(carol.url.rsplit("/", 1)[1])
            incident_url = f"{live_url}/console/incidents/{incident_id}"
            with session_factory() as session:
                incident = session.get(Incident, incident_id)
                assert incident is not None and incident.severity == "SEV1"
            assert "incident.open" in " ".join(_audit(session_factory))

            # 2. Halt BTC-JPY, through the confirmation that names the effect.
            carol.fill("#actions input[name=reason]", "matching engine stalled")
            carol.click("#actions button[value=halt]")
            expect(carol.locator(".effect")).to_have_text(
                "BTC-JPY: 板上の注文 1,234 件、新規注文は受け付けません")
            assert venue.market_states()["BTC-JPY"] == MarketState.OPEN
            carol.click("form[action$='/act'] button[type=submit]")
            carol.wait_for_url(f"{incident_url}?notice=done_ok")
            assert venue.market_states()["BTC-JPY"] == MarketState.HALTED
            assert "market.halt" in _audit(session_factory)
            expect(carol.locator("#incident-live tr[data-market=BTC-JPY]")).to_have_attribute(
                "data-state", "halted")

            # 3. Publish the public update, Japanese and English side by side.
            carol.select_option("#public-update select[name=status]", "identified")
            carol.fill("#public-update input[name=cause_ja]", "マッチングエンジンの停止")
            carol.fill("#public-update input[name=cause_en]", "a stalled matching engine")
            carol.click("#public-update form.row button[type=submit]")
            carol.wait_for_url(f"{incident_url}?notice=done_ok")
            expect(carol.locator("textarea[name=body_ja]")).to_contain_text("マッチングエンジンの停止")
            expect(carol.locator("textarea[name=body_en]")).to_contain_text(
                "a stalled matching engine")
            carol.screenshot(path=ARTIFACTS_DIR / "console-incident-ja.png", full_page=True)
            carol.click("form.draft button[type=submit]:not([formaction])")
            carol.wait_for_url(f"{incident_url}?notice=done_ok")
            with session_factory() as session:
                published = session.scalars(select(StatusUpdate).where(
                    StatusUpdate.incident_id == incident_id)).one()
                assert published.state == UpdateState.PUBLISHED
                assert published.published_by == "carol"
                kinds = set(session.scalars(select(TimelineEntry.kind).where(
                    TimelineEntry.incident_id == incident_id)))
                assert TimelineKind.PUBLIC_UPDATE in kinds
            _audit(session_factory)

            # 4. The second operator is watching the incident; the first asks to resume.
            _log_in(dave, live_url, operators["dave"], clock)
            dave.goto(incident_url)
            expect(dave.locator("[data-approval-status=pending]")).to_have_count(0)
            carol.fill("#actions input[name=reason]", "engine restarted and checked")
            carol.fill("#actions input[name=auction_seconds]", "1")
            carol.click("#actions button[value=resume]")
            expect(carol.locator(".effect")).to_contain_text("BTC-JPY")
            carol.click("form[action$='/act'] button[type=submit]")
            carol.wait_for_url(f"{incident_url}?notice=waiting_second")
            assert venue.market_states()["BTC-JPY"] == MarketState.HALTED
            _audit(session_factory)

            # 5. It appears on the second operator's page without a reload; they approve.
            pending = dave.locator("[data-approval-status=pending]")
            expect(pending).to_have_count(1)
            assert dave.url == incident_url  # no navigation: the live update brought it
            pending.locator("button.primary").click()
            dave.wait_for_url(f"{incident_url}?notice=done_ok")
            _wait_for(lambda: venue.market_states()["BTC-JPY"] == MarketState.OPEN)
            expect(dave.locator("#incident-live tr[data-market=BTC-JPY]")).to_have_attribute(
                "data-state", "open")
            actions = _audit(session_factory)
            assert any(action.startswith("approval.") for action in actions), actions

            # 6. Resolve: every market the incident halted is open again.
            carol.select_option("form[action$='/transition'] select[name=status]", "resolved")
            carol.click("form[action$='/transition'] button[type=submit]")
            carol.wait_for_url(f"{incident_url}?notice=done_ok")
            expect(carol.locator("[data-incident-status]")).to_have_attribute(
                "data-incident-status", "resolved")
            with session_factory() as session:
                resolved = session.get(Incident, incident_id)
                assert resolved is not None and resolved.status == IncidentStatus.RESOLVED
            _audit(session_factory)

            # Screenshots: the overview and the incident, in both languages.
            dave.goto(f"{live_url}/console/overview")
            dave.screenshot(path=ARTIFACTS_DIR / "console-overview-ja.png", full_page=True)
            dave.click("a[href^='/console/language/en']")
            dave.wait_for_url(f"{live_url}/console/overview")
            expect(dave.locator("h1")).to_have_text("Overview")
            dave.screenshot(path=ARTIFACTS_DIR / "console-overview-en.png", full_page=True)
            dave.goto(incident_url)
            dave.screenshot(path=ARTIFACTS_DIR / "console-incident-en.png", full_page=True)
        finally:
            browser.close()
    for name in SCREENSHOTS:
        shot = ARTIFACTS_DIR / f"console-{name}.png"
        assert shot.stat().st_size > 10_000
        if os.environ.get(UPDATE_SCREENSHOTS_ENV) == "1":
            SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOTS_DIR / shot.name)
