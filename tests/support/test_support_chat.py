"""Chat over the WebSocket: FAQ answers first, then a queue position, an agent, and the
transcript as a ticket; what looks like HTML stays text; a full queue says to use the form."""

from __future__ import annotations

from typing import Any

import pytest
from support_desk import Desk

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SOCKET = "/api/support/public/chat"


def _start(socket: Any, name: str = "花子") -> str:
    socket.send_json({"type": "start", "name": name, "email": "hanako@example.com",
                      "language": "ja"})
    welcome = socket.receive_json()
    assert welcome["type"] == "welcome"
    return str(welcome["chat_id"])


def test_a_chat_goes_from_faq_answers_to_an_agent_to_a_ticket(desk: Desk) -> None:
    desk.add_articles()
    with desk.client.websocket_connect(SOCKET) as socket:
        chat_id = _start(socket)
        socket.send_json({"type": "message", "text": "BTC-JPY の注文をキャンセルできない"})
        suggestions = socket.receive_json()
        assert suggestions["type"] == "suggestions"
        assert suggestions["articles"][0]["url"] == "/help/articles/cancel-during-halt"
        socket.send_json({"type": "agent"})
        assert socket.receive_json()["position"] == 1
        waiting = desk.client.get("/api/support/chats", headers=desk.as_("sam")).json()
        assert [(c["id"], c["state"], c["position"]) for c in waiting["items"]] == [
            (chat_id, "waiting", 1)]
        taken = desk.client.post(f"/api/support/chats/{chat_id}/take", headers=desk.as_("sam"))
        assert taken.status_code == 200, taken.text
        assert socket.receive_json() == {"type": "agent_joined", "agent": "sam"}
        said = desk.client.post(f"/api/support/chats/{chat_id}/messages",
                                json={"text": "停止中のためキャンセルできません"},
                                headers=desk.as_("sam"))
        assert said.status_code == 201
        assert socket.receive_json()["text"] == "停止中のためキャンセルできません"
        other = desk.client.post(f"/api/support/chats/{chat_id}/messages",
                                 json={"text": "横取り"}, headers=desk.as_("sue"))
        assert other.status_code == 409
        socket.send_json({"type": "message", "text": "わかりました"})
        assert socket.receive_json()["type"] == "received"
        seen = desk.client.get(f"/api/support/chats/{chat_id}/messages", params={"after": 2},
                               headers=desk.as_("sam")).json()
        assert [m["text"] for m in seen["items"]] == ["わかりました"]
        socket.send_json({"type": "close"})
        events = [socket.receive_json(), socket.receive_json()]
        closed = next(event for event in events if event["type"] == "closed")
    ticket_id = int(closed["ticket_ref"].removeprefix("SUP-"))
    ticket = desk.client.get(f"/api/support/tickets/{ticket_id}", headers=desk.as_("sam")).json()
    assert (ticket["channel"], ticket["incident_id"]) == ("chat", desk.incident_id)
    assert ticket["sla"]["first_response"] == "met"
    messages = desk.client.get(f"/api/support/tickets/{ticket_id}/messages",
                               headers=desk.as_("sam")).json()
    assert [m["author_kind"] for m in messages["items"]] == ["customer", "agent", "customer"]


def test_html_in_a_chat_message_stays_text_everywhere(desk: Desk) -> None:
    markup = "<script>alert(1)</script><b>キャンセル</b>"
    with desk.client.websocket_connect(SOCKET) as socket:
        chat_id = _start(socket, name="<i>x</i>")
        socket.send_json({"type": "message", "text": markup})
        assert socket.receive_json()["type"] == "suggestions"
        socket.send_json({"type": "close"})
        closed = [socket.receive_json(), socket.receive_json()]
    ref = next(event for event in closed if event["type"] == "closed")["ticket_ref"]
    ticket_id = int(ref.removeprefix("SUP-"))
    messages = desk.client.get(f"/api/support/tickets/{ticket_id}/messages",
                               headers=desk.as_("sam")).json()
    assert messages["items"][0]["body"] == markup  # kept as written, shown as text
    assert chat_id


def test_bad_chat_messages_are_answered_with_an_error_and_the_chat_goes_on(desk: Desk) -> None:
    with desk.client.websocket_connect(SOCKET) as socket:
        socket.send_json({"type": "message", "text": "before start"})
        assert socket.receive_json()["code"] == "support_invalid"
        _start(socket)
        socket.send_text("not json")
        assert socket.receive_json()["type"] == "error"
        socket.send_json({"type": "message", "text": "x" * 2_001})
        assert "longer than 2000" in socket.receive_json()["message"]
        socket.send_json({"type": "message", "text": "出金について"})
        assert socket.receive_json()["type"] == "suggestions"


@pytest.fixture
def support_settings() -> Any:
    from haltguard.support.settings import SupportSettings

    return SupportSettings(chat_waiting_max=1)


def test_a_full_queue_sends_the_customer_to_the_contact_form(desk: Desk) -> None:
    with desk.client.websocket_connect(SOCKET) as first, \
            desk.client.websocket_connect(SOCKET) as second:
        _start(first)
        _start(second)
        first.send_json({"type": "agent"})
        assert first.receive_json()["position"] == 1
        second.send_json({"type": "agent"})
        refused = second.receive_json()
        assert refused["code"] == "support_chat_full"
        assert "お問い合わせフォーム" in refused["message_ja"]
