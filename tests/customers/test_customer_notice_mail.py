"""Customer notices by email (issue 19): each notice is mailed once, to its own customer,
in both languages with that customer's anti-phishing phrase, through a real SMTP server;
the outbox survives a restart and retries a server that was down."""

from __future__ import annotations

import socket
from datetime import timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from customer_support import HOLD_S, Bench, Key
from sqlalchemy import func, select

from haltguard.customers.mail import NoticeMailLoop
from haltguard.customers.models import CustomerNotice, CustomerNoticeMail, NoticeMailStatus
from haltguard.db.session import session_scope
from haltguard.notify.settings import NotifySettings
from haltguard.responders.settings import SmtpSettings

ADDRESS = "bc1qmailedaddressofthecustomer000000"
SENDER = "no-reply@exchange.example"


class Inbox:
    """A real SMTP server's handler: keeps each mail (or refuses all with ``answer``)."""

    def __init__(self, answer: str = "250 OK") -> None:
        self.mails: list[tuple[list[str], Message]] = []
        self.answer = answer

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        if self.answer.startswith("250"):
            self.mails.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return self.answer

    def to(self, address: str) -> list[Message]:
        return [mail for recipients, mail in self.mails if recipients == [address]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _settings(port: int) -> NotifySettings:
    return NotifySettings(smtp=SmtpSettings(host="127.0.0.1", port=port, sender=SENDER),
                          channel_timeout_s=5.0, attempts_max=3, backoff_base_s=60,
                          backoff_max_s=600)


def _text(mail: Message) -> str:
    for part in mail.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode("utf-8")
    raise AssertionError("no text part")


def _notice_count(bench: Bench, account: int) -> int:
    with session_scope(bench.session_factory) as session:
        return session.scalar(select(func.count()).select_from(CustomerNotice).where(
            CustomerNotice.account == account)) or 0


def _busy_customer(bench: Bench, phrase: str) -> Key:
    """A customer whose key, second factor, address, withdrawal and lock each left a
    notice."""
    first = bench.new_customer(phrase=phrase)
    bench.turn_on_2fa(first)
    key = bench.new_key(first, ["read", "withdraw"], code=bench.code(first.account))
    added = bench.signed(key, "POST", "/api/customers/me/addresses",
                         {"asset": "BTC", "address": ADDRESS, "code": bench.code(key.account)})
    assert added.status_code == 201, added.text
    bench.clock.advance(timedelta(seconds=HOLD_S))
    withdrawn = bench.signed(key, "POST", "/api/customers/me/withdrawals", {
        "asset": "BTC", "amount_minor": 1_000, "address": ADDRESS,
        "code": bench.code(key.account)})
    assert withdrawn.status_code in {200, 201}, withdrawn.text
    assert bench.signed(key, "POST", "/api/customers/me/lock", {}).status_code == 200
    return key


@pytest.fixture
def smtp() -> Any:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def test_each_notice_is_mailed_once_with_its_own_customers_phrase(
        bench: Bench, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    seven = _busy_customer(bench, "blue heron 7")
    eight = _busy_customer(bench, "red fox 8")
    loop = NoticeMailLoop(bench.session_factory, bench.clock, _settings(port))
    loop.tick()
    loop.tick()  # a second round mails nobody again
    for key, own, other in ((seven, "blue heron 7", "red fox 8"),
                            (eight, "red fox 8", "blue heron 7")):
        mails = inbox.to(f"c{key.account}@example.com")
        assert len(mails) == _notice_count(bench, key.account) >= 5
        subjects = {str(make_header(decode_header(mail["Subject"]))) for mail in mails}
        assert any("出金を受け付けました" in s and "Withdrawal requested" in s for s in subjects)
        for mail in mails:
            text = _text(mail)
            assert f"「{own}」" in text and f'"{own}"' in text  # both languages
            assert other not in text
            assert SENDER in mail["From"]


def test_a_server_that_was_down_gets_the_mail_after_a_restart(bench: Bench) -> None:
    key = bench.new_customer(phrase="green owl 3")
    port = _free_port()  # nobody listens here yet
    down = NoticeMailLoop(bench.session_factory, bench.clock, _settings(port)).tick()
    assert down.sent == 0 and down.retrying >= 1
    with session_scope(bench.session_factory) as session:
        waiting = session.scalars(select(CustomerNoticeMail).where(
            CustomerNoticeMail.to_address == f"c{key.account}@example.com")).all()
        assert waiting and {(m.status, m.attempts) for m in waiting} == {
            (NoticeMailStatus.QUEUED.value, 1)}
        assert all(m.last_error for m in waiting)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        restarted = NoticeMailLoop(bench.session_factory, bench.clock, _settings(port))
        assert restarted.tick().sent == 0  # the backoff is not over yet
        bench.clock.advance(timedelta(seconds=61))
        restarted.tick()
        mails = inbox.to(f"c{key.account}@example.com")
        assert len(mails) == len(waiting)
        assert all("green owl 3" in _text(mail) for mail in mails)
    finally:
        controller.stop()


def test_a_refused_mail_is_kept_as_failed_with_the_servers_answer(bench: Bench) -> None:
    key = bench.new_customer(phrase="grey wolf 5")
    inbox = Inbox(answer="550 no such mailbox")
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        NoticeMailLoop(bench.session_factory, bench.clock, _settings(controller.port)).tick()
    finally:
        controller.stop()
    with session_scope(bench.session_factory) as session:
        rows = session.scalars(select(CustomerNoticeMail).where(
            CustomerNoticeMail.to_address == f"c{key.account}@example.com")).all()
        assert rows and all(row.status == NoticeMailStatus.FAILED.value for row in rows)
        assert all("no such mailbox" in row.last_error for row in rows)
