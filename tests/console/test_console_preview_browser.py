"""The status page preview in Chromium: the console's policy lets its own frame show the
rendered public page (and the frame's own policy its inline style), so an operator sees the
page in both languages before publishing a maintenance announcement."""

from __future__ import annotations

import pytest
from console_support import ARTIFACTS_DIR
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from test_console_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    WAIT_MS,
    _log_in,
    clock,
    live_url,
)

from haltguard.responders.service import ManualClock
from haltguard.security.testing import ProvisionedOperator
from haltguard.status import service as status
from haltguard.status.models import UpdateState

__all__ = ["clock", "live_url"]  # the browser test's fixtures: the wall clock, a served app

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="/usr/bin/chromium is missing: apt-get install -y chromium"),
]


def test_a_commander_sees_the_rendered_public_page_before_publishing_a_maintenance(
    *, app: FastAPI, live_url: str, operators: dict[str, ProvisionedOperator],
    clock: ManualClock, session_factory: sessionmaker[Session],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with session_factory.begin() as session:
        status.ensure_components(session, ["BTC-JPY"], now=clock.now())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        blocked: list[str] = []
        page.on("console", lambda message: blocked.append(message.text)
                if "Content Security Policy" in message.text else None)
        _log_in(page, live_url, operators["carol"], clock)
        page.goto(f"{live_url}/console/status-admin")
        page.fill("input[name=scheduled_for]", "2030-01-10T02:00:00+09:00")
        page.fill("input[name=scheduled_until]", "2030-01-10T04:00:00+09:00")
        page.check("input[name=components][value='market:BTC-JPY']")
        page.fill("input[name=name_ja]", "定期メンテナンス")
        page.fill("input[name=name_en]", "Planned maintenance")
        page.click("text=メンテナンスを予定 >> nth=-1")
        draft = page.locator("form.draft").first
        draft.locator("textarea[name=body_en]").fill("Trading in BTC-JPY pauses for two hours.")
        with context.expect_page() as opened:
            draft.locator("button", has_text="プレビュー").click()
        preview = opened.value
        preview.on("console", lambda message: blocked.append(message.text)
                   if "Content Security Policy" in message.text else None)
        preview.set_default_timeout(WAIT_MS)
        expect(preview.locator("[data-preview-notice]")).to_contain_text("Planned maintenance")
        frames = preview.frame_locator("iframe.preview")
        expect(frames.nth(0).locator("body")).to_contain_text("定期メンテナンス")
        expect(frames.nth(1).locator("body")).to_contain_text(
            "Trading in BTC-JPY pauses for two hours.")
        assert blocked == [], blocked
        ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
        preview.wait_for_load_state("networkidle")
        preview.screenshot(path=str(ARTIFACTS_DIR / "console-preview-ja.png"), full_page=True)
        with session_factory() as session:  # the preview left the draft a draft
            drafts = list(session.scalars(status.updates_query(state=UpdateState.DRAFT)))
            assert len(drafts) == 1 and "pauses" not in drafts[0].body_en
        browser.close()
