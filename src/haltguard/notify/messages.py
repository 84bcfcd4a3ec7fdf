"""What goes on the wire, built without I/O: emails, webhook bodies and their signatures.

Emails are ``multipart/alternative`` (plain text first, then HTML), both parts UTF-8 in
base64, so any SMTP server carries Japanese unchanged. A notice's email is prepared once
per language (:class:`NoticeEmail`) and then filled per subscriber with a few string joins:
building each message with the standard ``email`` package costs about 1.4 ms, which alone
would cap fan-out below 1,000 messages/s on one core. The tests parse what this module
writes with the standard library parser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, make_msgid

from haltguard.notify.models import Language
from haltguard.notify.texts import Texts, fill, texts_for

CRLF = "\r\n"
SIGNATURE_HEADER = "X-Haltguard-Signature"
DELIVERY_HEADER = "X-Haltguard-Delivery"
HTML_STYLE = "font-family:sans-serif;line-height:1.6;color:#1a1a1a;max-width:40rem"
PHRASE_BOX_STYLE = "border:2px solid #2b6cb0;border-radius:6px;padding:8px 12px;margin:0 0 16px"


@dataclass(frozen=True)
class NoticeContent:
    """One notice in one language, as the outbox read it from the database."""

    notice_id: int
    key: str
    kind: str
    language: Language
    subject: str
    body: str
    html: str | None
    link: str
    affected_component_ids: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class MailIdentity:
    """Who the emails come from."""

    sender_address: str
    service_name: str
    domain: str
    """Message-ID domain and List-Id."""

    @property
    def from_header(self) -> str:
        return formataddr((self.service_name, self.sender_address), charset="utf-8")

    @property
    def list_id(self) -> str:
        return f"<notices.{self.domain}>"


def header_value(name: str, value: str) -> str:
    """``value`` as it may stand in a header: RFC 2047 encoded (and folded) when not ASCII."""
    if value.isascii() and len(name) + len(value) < 76:
        return value
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name=name, maxlinelen=76).encode(linesep=CRLF)


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", CRLF)


def _base64_lines(text: str) -> str:
    return base64.encodebytes(text.encode("utf-8")).decode("ascii").replace("\n", CRLF)


def compose(headers: list[tuple[str, str]], text: str, html_text: str, boundary: str) -> bytes:
    """A complete ``multipart/alternative`` message; ``headers`` must already be encoded.

    The boundary holds ``_``, which base64 never produces, so it cannot occur in a part.
    """
    assert "_" in boundary and boundary.isascii()
    lines = [f"{name}: {value}" for name, value in headers]
    lines.append("MIME-Version: 1.0")
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    head = CRLF.join(lines)
    parts = (
        f"--{boundary}{CRLF}Content-Type: text/plain; charset=utf-8{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}{_base64_lines(text)}"
        f"--{boundary}{CRLF}Content-Type: text/html; charset=utf-8{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}{_base64_lines(html_text)}"
        f"--{boundary}--{CRLF}"
    )
    return (head + CRLF + CRLF + parts).encode("ascii")


def delivery_message_id(notice_key: str, notice_id: int, subscriber_id: int, domain: str) -> str:
    """The same Message-ID on every attempt of one delivery, so a message sent twice after
    an ambiguous crash is recognisable (and de-duplicated by many mail systems)."""
    tag = hashlib.sha256(f"{notice_key}|{subscriber_id}".encode()).hexdigest()[:12]
    return f"<notice-{notice_id}.{subscriber_id}.{tag}@{domain}>"


def text_to_html(text: str) -> str:
    """Paragraphs on blank lines, line breaks kept, everything escaped."""
    paragraphs = [part for part in text.replace("\r\n", "\n").split("\n\n") if part.strip()]
    return "".join(
        "<p>" + html.escape(part.strip()).replace("\n", "<br>") + "</p>" for part in paragraphs
    )


class NoticeEmail:
    """A notice's email in one language, ready to be filled in per subscriber.

    Each part is ``prefix + phrase + middle + unsubscribe URL + suffix``; only the phrase,
    the address, the link token and the Message-ID differ between subscribers.
    """

    def __init__(self, content: NoticeContent, identity: MailIdentity) -> None:
        texts: Texts = texts_for(content.language)
        words = texts.notice
        footer = fill(words.footer, service=identity.service_name)
        self.content = content
        self.identity = identity
        self._subject = header_value("Subject", content.subject)
        self._from = identity.from_header
        self._text_prefix = f"{words.phrase_label}: "
        self._text_middle = (
            f"{CRLF}{CRLF}{_crlf(content.body.strip())}{CRLF}{CRLF}{words.details}: {content.link}"
            f"{CRLF}{CRLF}-- {CRLF}{words.phrase_help}{CRLF}{footer}{CRLF}{words.unsubscribe}: "
        )
        self._text_suffix = CRLF
        content_html = content.html if content.html is not None else text_to_html(content.body)
        self._html_prefix = (
            f'<!DOCTYPE html><html lang="{content.language.value}"><head><meta charset="utf-8">'
            f"<title>{html.escape(content.subject)}</title></head>"
            f'<body style="{HTML_STYLE}"><div style="{PHRASE_BOX_STYLE}">'
            f"<strong>{html.escape(words.phrase_label)}:</strong> "
        )
        self._html_middle = (
            f"<br><small>{html.escape(words.phrase_help)}</small></div>{content_html}"
            f'<p><a href="{html.escape(content.link)}">{html.escape(words.details)}</a></p>'
            f'<hr><p style="font-size:12px;color:#555">{html.escape(footer)}<br>'
            '<a href="'
        )
        self._html_suffix = f'">{html.escape(words.unsubscribe)}</a></p></body></html>'

    def render(
        self,
        *,
        to_address: str,
        subscriber_id: int,
        phrase: str,
        unsubscribe_url: str,
        date_header: str,
    ) -> bytes:
        content = self.content
        message_id = delivery_message_id(
            content.key, content.notice_id, subscriber_id, self.identity.domain
        )
        text = self._text_prefix + phrase + self._text_middle + unsubscribe_url + self._text_suffix
        html_text = (
            self._html_prefix + html.escape(phrase) + self._html_middle
            + html.escape(unsubscribe_url) + self._html_suffix
        )
        headers = [
            ("From", self._from),
            ("To", to_address),
            ("Subject", self._subject),
            ("Date", date_header),
            ("Message-ID", message_id),
            ("Content-Language", content.language.value),
            ("List-Id", self.identity.list_id),
            ("List-Unsubscribe", f"<{unsubscribe_url}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Auto-Submitted", "auto-generated"),
        ]
        boundary = f"hg_{content.notice_id}_{subscriber_id}"
        return compose(headers, text, html_text, boundary)


def confirmation_email(
    *,
    identity: MailIdentity,
    language: Language,
    to_address: str,
    phrase: str,
    confirm_url: str,
    ttl_hours: int,
    date: datetime,
) -> bytes:
    """The one email an unconfirmed subscriber gets: the link that confirms, and their
    phrase, so even this first email proves it came from us."""
    texts = texts_for(language)
    words = texts.confirm_email
    service = identity.service_name
    subject = fill(words.subject, service=service)
    intro = fill(words.intro, service=service)
    expires = fill(words.expires, hours=str(ttl_hours))
    phrase_line = f"{texts.notice.phrase_label}: {phrase}"
    text = CRLF.join(
        [phrase_line, "", intro, "", f"{words.button}: {confirm_url}", expires, "",
         words.ignore, ""]
    )
    html_text = (
        f'<!DOCTYPE html><html lang="{language.value}"><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head><body style=\"{HTML_STYLE}\">"
        f'<div style="{PHRASE_BOX_STYLE}"><strong>{html.escape(texts.notice.phrase_label)}:'
        f"</strong> {html.escape(phrase)}</div><p>{html.escape(intro)}</p>"
        f'<p><a href="{html.escape(confirm_url)}">{html.escape(words.button)}</a></p>'
        f"<p>{html.escape(expires)}</p><p>{html.escape(words.ignore)}</p></body></html>"
    )
    headers = [
        ("From", identity.from_header),
        ("To", to_address),
        ("Subject", header_value("Subject", subject)),
        ("Date", format_datetime(date, usegmt=True)),
        ("Message-ID", make_msgid(domain=identity.domain)),
        ("Content-Language", language.value),
        ("Auto-Submitted", "auto-generated"),
    ]
    boundary = "hg_confirm_" + hashlib.sha256(confirm_url.encode()).hexdigest()[:16]
    return compose(headers, text, html_text, boundary)


def plain_message(content: NoticeContent) -> tuple[str, str]:
    """Title and body for a social or chat channel: the notice and its link, no phrase
    (these posts are public) and no unsubscribe link (operators run these channels)."""
    return content.subject, f"{content.body.strip()}\n\n{content.link}"


def webhook_body(content: NoticeContent, *, delivery_ref: str, unsubscribe_url: str) -> bytes:
    """The JSON a webhook receives; ``delivery`` is the same on every retry of it."""
    document = {
        "type": "notice",
        "delivery": delivery_ref,
        "notice": {
            "key": content.key,
            "kind": content.kind,
            "affected_component_ids": list(content.affected_component_ids),
            "language": content.language.value,
            "subject": content.subject,
            "body": content.body,
            "link": content.link,
            "created_at": content.created_at.isoformat(),
        },
        "unsubscribe_url": unsubscribe_url,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def webhook_signature(secret: str, timestamp_s: int, body: bytes) -> str:
    """``t=<unix s>,v1=<hex HMAC-SHA256 of "<t>." + body>``: receivers recompute it with
    their secret and refuse old timestamps, which stops forgery and replays."""
    signed = f"{timestamp_s}.".encode("ascii") + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp_s},v1={digest}"
