"""What ``serve`` runs for the desk: the mail receiver turns a mail into a ticket, and a
tick alerts a breached SLA once (audit chain), sends the queued replies and answers a new
public update in bulk, once."""

from __future__ import annotations

import smtplib
import socket
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from support_desk import Desk, post_update

from haltguard.db.session import session_scope
from haltguard.notify.settings import NotifySettings
from haltguard.responders.settings import SmtpSettings
from haltguard.security.models import AuditEntry
from haltguard.support.loop import SupportLoop
from haltguard.support.settings import SupportSettings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Inbox:
    def __init__(self) -> None:
        self.recipients: list[str] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        self.recipients += envelope.rcpt_tos
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_mail_in_becomes_a_ticket_and_a_tick_alerts_and_sends(desk: Desk) -> None:
    inbox = Inbox()
    outgoing = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    outgoing.start()
    settings = SupportSettings(smtp_port=_free_port())
    loop = SupportLoop(desk.factory, desk.clock, settings, NotifySettings(smtp=SmtpSettings(
        host="127.0.0.1", port=outgoing.port, sender="support@exchange.example")),
        send_mail=True, interval_s=3_600).start()
    try:
        assert loop.intake is not None
        with smtplib.SMTP("127.0.0.1", loop.intake.port, timeout=10) as client:
            reply = client.sendmail("taro@example.com", ["support@exchange.example"],
                                    b"From: taro@example.com\r\nSubject: halt\r\n\r\n"
                                    b"BTC-JPY is down\r\n")
        assert reply == {}
        tickets = desk.client.get("/api/support/tickets", headers=desk.as_("sam")).json()
        assert [(t["channel"], t["incident_id"]) for t in tickets["items"]] == [
            ("email", desk.incident_id)]
        ticket_id = tickets["items"][0]["id"]
        desk.clock.advance(timedelta(hours=2))
        loop.tick()
        loop.tick()
        with session_scope(desk.factory) as session:
            alerts = session.scalars(select(AuditEntry.target).where(
                AuditEntry.action == "support.sla_breach")).all()
        assert alerts == [f"SUP-{ticket_id}"]
        desk.client.post(f"/api/support/tickets/{ticket_id}/replies",
                         json={"body": "Trading resumes soon."}, headers=desk.as_("sam"))
        loop.tick()
        assert inbox.recipients == ["taro@example.com"]
        post_update(desk.factory, desk.clock, desk.incident_id, "復旧しました", "Recovered")
        loop.tick()
        loop.tick()  # the update is answered once, however many ticks see it
        assert inbox.recipients == ["taro@example.com"] * 2
    finally:
        loop.stop(5)
        outgoing.stop()
