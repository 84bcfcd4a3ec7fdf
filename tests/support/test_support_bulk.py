"""Bulk replies and the incident drill: 10,000 questions from the form, email and chat, all
linked to the incident; one mail per customer per public update, none twice however often
the reply is asked for; SLA timers as the clock says; the mails go out with the customer's
anti-phishing phrase."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from support_desk import Desk, post_update

from haltguard.common.clock import ManualClock
from haltguard.db.session import session_scope
from haltguard.notify import service as notify_service
from haltguard.notify.models import EmailSubscribe
from haltguard.notify.settings import NotifySettings
from haltguard.responders.settings import SmtpSettings
from haltguard.status.settings import StatusSettings
from haltguard.support import flows, service
from haltguard.support.models import Channel, SupportOutgoingMail, SupportTicket
from haltguard.support.settings import SupportSettings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DRILL_TICKETS = 10_000
CUSTOMERS_WITH_EMAIL = 6_000
QUESTIONS = ("BTC-JPY の注文がキャンセルできません", "取引が停止していますか？資産は安全ですか",
             "My BTC-JPY order cannot be cancelled", "BTC/JPY が止まっています")


def _email(n: int) -> str:
    return f"customer{n % CUSTOMERS_WITH_EMAIL}@example.com"


def _has_email(n: int) -> bool:
    return not (n % 3 == 2 and n % 10 == 2)


def _arrive(session: Session, n: int, settings: SupportSettings, clock: ManualClock,
            candidates: service.IncidentCandidates) -> None:
    """Question ``n``: form, email or chat in turn; every tenth chat without an address."""
    question = QUESTIONS[n % len(QUESTIONS)]
    kind = n % 3
    if kind == 1:
        raw = (f"From: c{n} <{_email(n)}>\r\nSubject: =?utf-8?b?5Y+W5byV?=\r\n"
               f"Message-ID: <m{n}@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n"
               f"\r\n{question}\r\n").encode()
        flows.ticket_from_mail(session, raw, settings=settings, now=clock.now(),
                               candidates=candidates)
        return
    channel = Channel.FORM if kind == 0 else Channel.CHAT
    email = _email(n) if _has_email(n) else ""
    service.create_ticket(session, service.NewTicket(
        channel=channel, subject=question[:20], body=question, language="ja",
        customer_name=f"c{n}", customer_email=email, source_key=f"{channel.value}:{n}",
    ), settings=settings, now=clock.now(), candidates=candidates.get(session, clock.now()))


@pytest.mark.slow
def test_an_incident_drill_of_10000_questions_is_answered_once_per_customer(desk: Desk) -> None:
    settings = SupportSettings()
    candidates = service.IncidentCandidates()
    customers = len({_email(n) for n in range(DRILL_TICKETS) if _has_email(n)})
    for start in range(0, DRILL_TICKETS, 1_000):
        with session_scope(desk.factory) as session:
            for n in range(start, start + 1_000):
                _arrive(session, n, settings, desk.clock, candidates)
        desk.clock.advance(timedelta(minutes=7))  # ten batches over 70 minutes
    with session_scope(desk.factory) as session:
        linked = session.scalar(select(func.count()).where(
            SupportTicket.incident_id == desk.incident_id)) or 0
        by_channel = dict(session.execute(select(SupportTicket.channel, func.count())
                                          .group_by(SupportTicket.channel)).all())
    assert linked == DRILL_TICKETS
    assert by_channel == {"form": 3_334, "email": 3_333, "chat": 3_333}

    post_update(desk.factory, desk.clock, desk.incident_id, "原因を特定しました", "Identified")
    first = desk.client.post(f"/api/support/incidents/{desk.incident_id}/bulk-reply",
                             json={}, headers=desk.as_("sam"))
    assert first.status_code == 200, first.text
    assert first.json()["created"] is True
    assert first.json()["tickets_answered"] == DRILL_TICKETS
    assert first.json()["mails_queued"] == customers
    again = desk.client.post(f"/api/support/incidents/{desk.incident_id}/bulk-reply",
                             json={}, headers=desk.as_("sue")).json()
    assert (again["created"], again["id"]) == (False, first.json()["id"])

    desk.clock.advance(timedelta(minutes=30))
    post_update(desk.factory, desk.clock, desk.incident_id, "復旧しました", "Recovered")
    second = desk.client.post(f"/api/support/incidents/{desk.incident_id}/bulk-reply",
                              json={}, headers=desk.as_("sam")).json()
    assert second["created"] is True and second["mails_queued"] == customers
    with session_scope(desk.factory) as session:
        per_customer_update = session.execute(
            select(SupportOutgoingMail.bulk_reply_id, SupportOutgoingMail.customer_key,
                   func.count()).group_by(SupportOutgoingMail.bulk_reply_id,
                                          SupportOutgoingMail.customer_key)).all()
    assert len(per_customer_update) == 2 * customers
    assert {count for _, _, count in per_customer_update} == {1}

    # Batches arrived at 0, 7, ..., 63 minutes, each due an hour later; the first reply went
    # out at 70 minutes: the batches of 0 and 7 minutes were late, the eight others in time.
    report = desk.client.get("/api/support/report", params={"incident_id": desk.incident_id},
                             headers=desk.as_("sam")).json()
    assert report["tickets"] == DRILL_TICKETS
    assert report["first_response_met"] == 8_000
    assert report["first_response_breached"] == 2_000
    assert report["backlog"] == DRILL_TICKETS
    assert sum(hour["total"] for hour in report["per_hour"]) == DRILL_TICKETS


def test_a_bulk_reply_without_a_public_update_says_to_publish_one(desk: Desk) -> None:
    desk.form()
    refused = desk.client.post(f"/api/support/incidents/{desk.incident_id}/bulk-reply",
                               json={}, headers=desk.as_("sam"))
    assert refused.status_code == 422
    assert "publish a status update" in refused.json()["error"]["next_step"]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        import email
        import email.policy

        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_the_bulk_reply_mails_carry_the_update_and_the_anti_phishing_phrase(
    desk: Desk, inbox: tuple[Inbox, int], session_factory: sessionmaker[Session],
) -> None:
    box, port = inbox
    notify = NotifySettings(smtp=SmtpSettings(host="127.0.0.1", port=port,
                                              sender="support@exchange.example"))
    with session_scope(session_factory) as session:
        secret = notify_service.link_secret(session, notify, desk.clock.now())
        outcome = notify_service.subscribe_email(session, EmailSubscribe(
            email="taro@example.com", anti_phishing_phrase="青い月"), settings=notify,
            secret=secret, now=desk.clock.now())
        assert outcome.confirmation is not None
        token = parse_qs(urlsplit(outcome.confirmation.confirm_url).query)["token"][0]
        notify_service.confirm(session, token, secret=secret, now=desk.clock.now())
    desk.form()
    desk.form(customer_email="bob@example.com", customer_name="Bob", language="en",
              body="BTC-JPY is halted, is my order safe?")
    desk.form()  # taro asks again: still one mail
    post_update(desk.factory, desk.clock, desk.incident_id, "原因を特定しました。",
                "We have found the cause.")
    with session_scope(session_factory) as session:
        flows.bulk_reply(session, desk.incident_id, update_entry_id=None, macro_name="",
                         actor="sam", settings=SupportSettings(),
                         status_settings=StatusSettings(), now=desk.clock.now())
    with session_scope(session_factory) as session:
        counts = flows.send_queued(session, notify_settings=notify, now=desk.clock.now())
    assert (counts.sent, counts.failed) == (2, 0)
    by_address = {str(message["To"]): message for message in box.messages}
    assert set(by_address) == {"taro@example.com", "bob@example.com"}
    taro = _text(by_address["taro@example.com"])
    assert taro.startswith("あなたのフィッシング対策フレーズ: 青い月")
    assert "原因を特定しました。" in taro and "山田太郎 様" in taro
    bob = _text(by_address["bob@example.com"])
    assert "We never ask for your password" in bob
    assert "We have found the cause." in bob and "Dear Bob" in bob
