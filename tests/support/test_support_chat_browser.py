"""A chat handled end to end in a real browser (Debian's Chromium): the customer on the help
centre's chat page gets FAQ answers, asks for a person, sees the queue and the agent's
answers (an agent's markup shown as text), and ends the chat; its transcript is a ticket.
Screenshots are kept under ``test-artifacts/support/``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from support_desk import Desk

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "support"
SERVER_START_S_MAX = 10.0
WAIT_MS = 10_000

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="/usr/bin/chromium is missing: apt-get install -y chromium"),
]


@pytest.fixture
def live_url(desk: Desk) -> Iterator[str]:
    """The desk's app served by uvicorn on a free local port."""
    server = uvicorn.Server(uvicorn.Config(desk.app, host="127.0.0.1", port=0,
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


def _waiting_chat(agent: httpx.Client) -> str:
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        chats = agent.get("/api/support/chats").json()["items"]
        if chats and chats[0]["state"] == "waiting":
            return str(chats[0]["id"])
        time.sleep(0.05)
    raise AssertionError("no chat is waiting")


def test_a_customer_chats_in_the_browser_from_faq_to_agent_to_ticket(
    desk: Desk, live_url: str,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    desk.add_articles()
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    agent = httpx.Client(base_url=live_url, headers=desk.as_("sam"), timeout=10)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{live_url}/help/chat")
            page.get_by_label("お名前").fill("花子")
            page.get_by_role("button", name="チャットを始める").click()
            page.get_by_label("ご質問").fill("BTC-JPY の注文をキャンセルできない")
            page.get_by_role("button", name="送信").click()
            expect(page.get_by_role("link", name="取引停止中に注文をキャンセルできない理由")
                   ).to_be_visible()
            page.get_by_role("button", name="担当者と話す").click()
            expect(page.locator("#chat-queue")).to_have_text(
                "担当者におつなぎします。現在 1 番目です。")
            chat_id = _waiting_chat(agent)
            assert agent.post(f"/api/support/chats/{chat_id}/take").status_code == 200
            expect(page.locator("#chat-queue")).to_contain_text("sam")
            answer = agent.post(f"/api/support/chats/{chat_id}/messages",
                                json={"text": "<b>停止中</b>のためキャンセルできません"})
            assert answer.status_code == 201
            expect(page.get_by_text("sam: <b>停止中</b>のためキャンセルできません")).to_be_visible()
            assert page.locator("#chat-log b").count() == 0  # shown as text, not markup
            page.screenshot(path=ARTIFACTS_DIR / "chat-ja-phone.png", full_page=True)
            page.get_by_role("button", name="終了").click()
            expect(page.get_by_text("会話の記録はお問い合わせ SUP-")).to_be_visible()
            page.screenshot(path=ARTIFACTS_DIR / "chat-ja-closed.png", full_page=True)
        finally:
            browser.close()
    tickets = agent.get("/api/support/tickets", params={"channel": "chat"}).json()
    assert tickets["total"] == 1
    assert tickets["items"][0]["incident_id"] == desk.incident_id
    assert (ARTIFACTS_DIR / "chat-ja-phone.png").stat().st_size > 5_000
