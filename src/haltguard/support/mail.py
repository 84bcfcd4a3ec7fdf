"""Inbound email: from a raw message to a ticket's fields, and the SMTP receiver ``serve``
runs for it.

What is refused, and how the sender learns it (as an SMTP answer, so their mail server
bounces it with the text): a message over ``support.email_bytes_max`` (552), one that does
not parse into a sender and a text (550, saying what was missing), an automatic reply (550,
so two auto-responders never loop). Everything else becomes a ticket, in whatever charset it
came (ISO-2022-JP included); an HTML-only message is reduced to its text. The ``Message-ID``
makes a redelivered message the same ticket.

To take mail sent to an existing mailbox, forward it there (``docs/support.md``): most mail
services forward to another address, and an MTA can relay with a transport map to
``support.smtp_host:support.smtp_port``.
"""

from __future__ import annotations

import asyncio
import email.errors
import hashlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import parseaddr
from html import unescape
from html.parser import HTMLParser
from typing import Any

from aiosmtpd.controller import Controller

from haltguard.notify.channels import AddressError, check_email
from haltguard.support.errors import MailRefusedError, SupportError
from haltguard.support.models import BODY_LENGTH_MAX, SUBJECT_LENGTH_MAX

log = logging.getLogger(__name__)

TRUNCATED_NOTE = "\n[…]"


@dataclass(frozen=True)
class InboundMail:
    message_id: str
    from_address: str
    from_name: str
    subject: str
    text: str
    language: str


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self._skip += 1
        if tag in {"br", "p", "div", "li", "tr"}:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"} and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def text_of_html(markup: str) -> str:
    """The readable text of an HTML mail part (scripts and styles dropped)."""
    parser = _TextOfHtml()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in unescape("".join(parser.parts)).splitlines())
    return "\n".join(line for line in lines if line)


def _refuse(code: int, en: str, ja: str, step: str) -> MailRefusedError:
    return MailRefusedError(en, message_ja=ja, next_step=step, smtp_code=code)


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    raw = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset)
    except (LookupError, UnicodeError) as exc:
        raise _refuse(550, f"the message's text cannot be decoded as {charset} ({exc})",
                      "本文の文字コードを読み取れません",
                      "send it again as UTF-8 or ISO-2022-JP") from exc


def _body_text(message: Message) -> str:
    """The first text/plain part's text, else the first text/html part's, as text."""
    plain = html_part = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == "text/plain" and plain is None:
            plain = part
        elif part.get_content_type() == "text/html" and html_part is None:
            html_part = part
    if plain is not None:
        return _decoded(plain).strip()
    if html_part is not None:
        return text_of_html(_decoded(html_part)).strip()
    raise _refuse(550, "the message has no text part", "本文（テキスト）がありません",
                  "write the question in the body of the email")


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return str(value)


def guess_language(text: str) -> str:
    """``ja`` when the text holds kana or kanji, else ``en``."""
    return "ja" if any("\u3040" <= char <= "\u9fff" for char in text) else "en"


def parse_mail(raw: bytes, *, bytes_max: int) -> InboundMail:
    """The ticket fields of ``raw``, or :class:`MailRefusedError` saying why not."""
    if len(raw) > bytes_max:
        raise _refuse(552, f"the message is {len(raw)} bytes; at most {bytes_max} are taken",
                      f"メールが大きすぎます（上限 {bytes_max} バイト）",
                      "send the question without attachments, or use the contact form")
    try:
        message = BytesParser(policy=compat32).parsebytes(raw)
        sender = _header(message, "From")
        subject = " ".join(_header(message, "Subject").split())
        auto = _header(message, "Auto-Submitted").strip().lower()
    except (LookupError, ValueError, TypeError, IndexError) as exc:
        raise _refuse(550, f"the message cannot be read ({exc})", "メールを読み取れません",
                      "send it again from an ordinary mail program") from exc
    if auto not in {"", "no"}:
        raise _refuse(550, "automatic replies are not taken as questions",
                      "自動返信メールは受け付けません", "nothing to do")
    name, address = parseaddr(sender)
    try:
        address = check_email(address)
    except AddressError as exc:
        raise _refuse(550, f"the sender address {address!r} is not usable ({exc})",
                      "差出人のメールアドレスが正しくありません",
                      "send it from an address we can answer") from exc
    text = _body_text(message)
    if not text:
        raise _refuse(550, "the message's text is empty", "本文が空です",
                      "write the question in the body of the email")
    if len(text) > BODY_LENGTH_MAX:
        text = text[:BODY_LENGTH_MAX - len(TRUNCATED_NOTE)] + TRUNCATED_NOTE
    message_id = _header(message, "Message-ID").strip()[:250]
    if not message_id:
        message_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    return InboundMail(
        message_id=message_id, from_address=address, from_name=name[:200],
        subject=(subject or text.splitlines()[0])[:SUBJECT_LENGTH_MAX], text=text,
        language=guess_language(subject + text),
    )


Accept = Callable[[bytes], str]
"""Takes a raw message and returns the ticket's reference; raises a SupportError."""


class SupportMailHandler:
    """The aiosmtpd handler: each message is accepted (``250 OK SUP-12``) or refused with the
    code and text of the :class:`MailRefusedError`. ``accept`` runs on a worker thread."""

    def __init__(self, accept: Accept) -> None:
        self._accept = accept

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        try:
            ref = await asyncio.get_running_loop().run_in_executor(None, self._accept, data)
        except MailRefusedError as exc:
            return f"{exc.smtp_code} {exc.message}"
        except SupportError as exc:
            return f"451 {exc.message}"
        except Exception:
            log.exception("support mail intake failed")
            return "451 temporary failure; try again later"
        return f"250 OK {ref}"


class MailIntake:
    """The SMTP receiver on ``host:port`` (``port`` 0: a free one), started and stopped by
    its owner (``serve``, the tests)."""

    def __init__(self, accept: Accept, *, host: str, port: int, bytes_max: int) -> None:
        self._controller = Controller(
            SupportMailHandler(accept), hostname=host, port=port or _free_port(host),
            data_size_limit=bytes_max, decode_data=False,
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> MailIntake:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
