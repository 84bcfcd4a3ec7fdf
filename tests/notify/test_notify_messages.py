"""What goes on the wire, read back with the standard library: MIME structure, the phrase in
both parts, one-click unsubscribe headers, stable Message-IDs, signed links and webhooks."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from haltguard.notify.channels import AddressError, check_email, check_webhook_url
from haltguard.notify.messages import (
    MailIdentity,
    NoticeContent,
    NoticeEmail,
    confirmation_email,
    delivery_message_id,
    webhook_signature,
)
from haltguard.notify.models import Language
from haltguard.notify.texts import texts_for
from haltguard.notify.tokens import NEVER, LinkToken, TokenError, TokenPurpose, sign, verify

IDENTITY = MailIdentity("status@example.test", "Example Exchange status", "status.example.test")
UNSUBSCRIBE = "https://status.example.test/api/notify/unsubscribe?token=u.5.0.0.abc"
SECRET = b"k" * 40


def content(language: Language, html: str | None = None) -> NoticeContent:
    japanese = language is Language.JA
    return NoticeContent(
        notice_id=3, key="incident-7/update-1", kind="incident_update", language=language,
        subject="【障害】BTC/JPY 取引停止" if japanese else "[Incident] BTC/JPY halted",
        body="取引を停止しました。\n\n調査中です。" if japanese else "Halted.\n\nInvestigating.",
        html=html, link="https://status.example.test/incidents/7",
        affected_component_ids=("market.btc-jpy",), created_at=datetime(2026, 3, 2, tzinfo=UTC),
    )


def render(language: Language, phrase: str = "青い象", html: str | None = None) -> EmailMessage:
    raw = NoticeEmail(content(language, html), IDENTITY).render(
        to_address="user@example.test", subscriber_id=5, phrase=phrase,
        unsubscribe_url=UNSUBSCRIBE, date_header="Mon, 02 Mar 2026 00:00:00 GMT",
    )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None and rich is not None
    return str(plain.get_content()), str(rich.get_content())


@pytest.mark.parametrize("language", [Language.JA, Language.EN])
def test_notice_email_has_plain_text_and_html_parts_both_showing_the_phrase(
    language: Language,
) -> None:
    message = render(language)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    plain, rich = parts(message)
    label = texts_for(language).notice.phrase_label
    assert f"{label}: 青い象" in plain
    assert "青い象" in rich and label in rich
    assert content(language).link in plain and content(language).link in rich
    assert UNSUBSCRIBE in plain and UNSUBSCRIBE.replace("&", "&amp;") in rich
    assert message["Subject"] == content(language).subject
    assert message["Content-Language"] == language.value


def test_notice_email_carries_one_click_unsubscribe_headers() -> None:
    message = render(Language.JA)
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "<notices.status.example.test>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["From"].addresses[0].display_name == "Example Exchange status"


def test_subscriber_phrase_is_escaped_in_the_html_part() -> None:
    _, rich = parts(render(Language.EN, phrase='<script>alert("x")</script>'))
    assert "<script>" not in rich
    assert "&lt;script&gt;" in rich


def test_operator_html_is_used_as_given_and_plain_text_comes_from_the_body() -> None:
    plain, rich = parts(render(Language.EN, html="<p><strong>Halted</strong> at 09:00</p>"))
    assert "<strong>Halted</strong> at 09:00" in rich
    assert "Halted.\r\n\r\nInvestigating." in plain
    assert "<strong>" not in plain


def test_message_id_is_the_same_on_every_attempt_and_differs_between_subscribers() -> None:
    first = render(Language.JA)["Message-ID"]
    again = render(Language.JA)["Message-ID"]
    assert first == again == delivery_message_id("incident-7/update-1", 3, 5,
                                                 "status.example.test")
    assert delivery_message_id("incident-7/update-1", 3, 6, "status.example.test") != first


def test_confirmation_email_shows_the_phrase_and_the_confirm_link() -> None:
    raw = confirmation_email(
        identity=IDENTITY, language=Language.JA, to_address="new@example.test",
        phrase="赤い傘", confirm_url="https://status.example.test/api/notify/confirm?token=c.1",
        ttl_hours=168, date=datetime(2026, 3, 2, tzinfo=UTC),
    )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    plain, rich = parts(message)
    assert "赤い傘" in plain and "赤い傘" in rich
    assert "confirm?token=c.1" in plain and "168" in plain
    assert message["List-Unsubscribe"] is None


def test_both_languages_have_every_text_and_they_differ() -> None:
    japanese, english = texts_for(Language.JA), texts_for(Language.EN)
    assert japanese.notice.phrase_label != english.notice.phrase_label
    for section in ("notice", "confirm_email", "pages"):
        for texts in (japanese, english):
            assert all(str(value).strip() for value in vars(getattr(texts, section)).values())


def test_webhook_signature_verifies_with_its_secret_only() -> None:
    body = b'{"type":"notice"}'
    header = webhook_signature("s3cret", 1_770_000_000, body)
    timestamp, signature = (part.split("=", 1)[1] for part in header.split(","))
    expected = hmac.new(b"s3cret", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == expected
    assert webhook_signature("other", 1_770_000_000, body) != header


def test_confirm_link_works_until_it_expires() -> None:
    token = sign(SECRET, LinkToken(TokenPurpose.CONFIRM, 9, 2, 1_000))
    assert verify(SECRET, token, TokenPurpose.CONFIRM, 1_000).subscriber_id == 9
    with pytest.raises(TokenError, match="expired"):
        verify(SECRET, token, TokenPurpose.CONFIRM, 1_001)


def test_unsubscribe_link_never_expires() -> None:
    token = sign(SECRET, LinkToken(TokenPurpose.UNSUBSCRIBE, 9, 0, NEVER))
    assert verify(SECRET, token, TokenPurpose.UNSUBSCRIBE, 4_000_000_000).subscriber_id == 9


def test_forged_or_repurposed_links_are_refused() -> None:
    token = sign(SECRET, LinkToken(TokenPurpose.UNSUBSCRIBE, 9, 0, NEVER))
    forged = token.replace("u.9.", "u.10.")
    with pytest.raises(TokenError, match="not one we sent"):
        verify(SECRET, forged, TokenPurpose.UNSUBSCRIBE, 0)
    with pytest.raises(TokenError, match="not one we sent"):
        verify(b"x" * 40, token, TokenPurpose.UNSUBSCRIBE, 0)
    with pytest.raises(TokenError, match="something else"):
        verify(SECRET, token, TokenPurpose.CONFIRM, 0)
    with pytest.raises(TokenError, match="damaged"):
        verify(SECRET, "u.9.abc", TokenPurpose.UNSUBSCRIBE, 0)


def test_email_addresses_are_checked_and_lowercased() -> None:
    assert check_email(" Someone@Example.Test ") == "someone@example.test"
    with pytest.raises(AddressError, match="not an email address"):
        check_email("someone-at-example.test")
    with pytest.raises(AddressError, match="non-ASCII"):
        check_email("ユーザー@example.test")


def test_webhooks_to_private_addresses_are_refused_unless_allowed() -> None:
    with pytest.raises(AddressError, match="not a public internet address"):
        check_webhook_url("http://127.0.0.1:8080/hook", allow_private_hosts=False)
    with pytest.raises(AddressError, match="not a public internet address"):
        check_webhook_url("https://10.1.2.3/hook", allow_private_hosts=False)
    with pytest.raises(AddressError, match="https://"):
        check_webhook_url("ftp://example.test/hook", allow_private_hosts=False)
    assert check_webhook_url("http://127.0.0.1:8080/hook", allow_private_hosts=True)
