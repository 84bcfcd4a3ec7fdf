"""Inbound email: what is taken (any charset, HTML-only reduced to text, redeliveries once)
and what is refused with a clear SMTP answer (oversized, malformed, automatic replies), over
a real SMTP conversation with the receiver ``serve`` runs; nothing legitimate is lost."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from support_desk import START

from haltguard.db.session import session_scope
from haltguard.support import flows
from haltguard.support.errors import MailRefusedError
from haltguard.support.mail import MailIntake, parse_mail
from haltguard.support.models import SupportTicket
from haltguard.support.settings import SupportSettings

SETTINGS = SupportSettings(email_bytes_max=4_096)


def _message(body: str = "BTC-JPY の注文がキャンセルできません", *, subject: str = "取引停止",
             charset: str = "utf-8", **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = headers.pop("From", "山田 <taro@example.com>")
    message["To"] = "support@example.com"
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body, charset=charset)
    return message.as_bytes()


def test_an_iso_2022_jp_message_becomes_japanese_text() -> None:
    mail = parse_mail(_message(charset="iso-2022-jp"), bytes_max=4_096)
    assert mail.text == "BTC-JPY の注文がキャンセルできません"
    assert (mail.from_address, mail.from_name, mail.language) == ("taro@example.com", "山田",
                                                                  "ja")


def test_an_html_only_message_is_reduced_to_its_text() -> None:
    message = EmailMessage()
    message["From"] = "bob@example.com"
    message["Subject"] = "help"
    message.set_content("<p>My order <b>cannot</b> be cancelled</p><script>x()</script>",
                        subtype="html")
    mail = parse_mail(message.as_bytes(), bytes_max=4_096)
    assert mail.text == "My order cannot be cancelled"


@pytest.mark.parametrize(("raw", "code", "words"), [
    (_message("x" * 5_000), 552, "at most 4096"),
    (b"Subject: no sender\r\n\r\nhello\r\n", 550, "sender address"),
    (_message(From="not an address"), 550, "sender address"),
    (_message(Auto_Submitted="auto-replied"), 550, "automatic replies"),
    (_message("   "), 550, "empty"),
])
def test_bad_mail_is_refused_with_the_smtp_answer_that_says_why(raw: bytes, code: int,
                                                                words: str) -> None:
    with pytest.raises(MailRefusedError) as refused:
        parse_mail(raw, bytes_max=4_096)
    assert refused.value.smtp_code == code
    assert words in refused.value.message
    assert refused.value.message_ja


@pytest.fixture
def intake(session_factory: sessionmaker[Session]) -> Iterator[MailIntake]:
    def accept(raw: bytes) -> str:
        with session_scope(session_factory) as session:
            ticket, _ = flows.ticket_from_mail(session, raw, settings=SETTINGS, now=START)
            return ticket.ref

    receiver = MailIntake(accept, host="127.0.0.1", port=0, bytes_max=SETTINGS.email_bytes_max)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def _count(session_factory: sessionmaker[Session]) -> int:
    with session_scope(session_factory) as session:
        return session.scalar(select(func.count()).select_from(SupportTicket)) or 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_smtp_receiver_takes_good_mail_and_bounces_bad_mail_between_them(
    intake: MailIntake, session_factory: sessionmaker[Session],
) -> None:
    with smtplib.SMTP("127.0.0.1", intake.port, timeout=10) as client:
        good = _message(Message_ID="<one@example.com>")
        client.sendmail("taro@example.com", ["support@example.com"], good)
        with pytest.raises(smtplib.SMTPResponseException) as too_big:  # at MAIL FROM SIZE
            client.sendmail("taro@example.com", ["support@example.com"], _message("x" * 8_000))
        assert too_big.value.smtp_code == 552
        with pytest.raises(smtplib.SMTPDataError) as malformed:
            client.sendmail("x@example.com", ["support@example.com"],
                            b"Subject: hi\r\n\r\nno sender here\r\n")
        assert malformed.value.smtp_code == 550
        assert b"sender address" in malformed.value.smtp_error
        client.sendmail("hanako@example.com", ["support@example.com"],
                        _message("出金が届きません", Message_ID="<two@example.com>"))
        client.sendmail("taro@example.com", ["support@example.com"], good)  # redelivered
    assert _count(session_factory) == 2
