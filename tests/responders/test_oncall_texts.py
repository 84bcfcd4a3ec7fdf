"""Texts a person reads: pages and the ack page, in Japanese and English."""

from __future__ import annotations

from haltguard.incidents.rules import CATEGORIES, Category, Severity
from haltguard.responders.contacts import INCIDENT_CATEGORIES, SEVERITIES
from haltguard.responders.texts import ack_page_html, page_message


def message(language: str = "ja") -> tuple[str, str]:
    built = page_message(
        page_id=12, incident_id="INC-42", summary="BTC/JPY matching stalled",
        category="server_down", severity="SEV1", level_number=2, ack_timeout_s=300,
        ack_url="https://h.example/api/pages/12/ack?token=t", language=language,  # type: ignore[arg-type]
    )
    return built.subject, built.body


def test_page_carries_incident_summary_and_ack_link_in_both_languages() -> None:
    subject, body = message()
    assert "INC-42" in subject and "BTC/JPY matching stalled" in subject
    assert "障害呼出" in subject and "Page" in subject
    assert "インシデント: INC-42" in body and "Incident: INC-42" in body
    assert "概要: BTC/JPY matching stalled" in body and "Summary: BTC/JPY" in body
    assert "サーバーダウン" in body and "Server down" in body
    assert body.count("https://h.example/api/pages/12/ack?token=t") == 2
    assert "haltguard oncall ack 12" in body
    assert "5 分後" in body and "in 5 min" in body


def test_recipient_language_comes_first() -> None:
    _, japanese_first = message("ja")
    _, english_first = message("en")
    assert japanese_first.index("インシデント") < japanese_first.index("Incident:")
    assert english_first.index("Incident:") < english_first.index("インシデント")


def test_ack_page_escapes_what_it_shows() -> None:
    html = ack_page_html("acknowledged", page_id=3, incident_id="<script>x</script>")
    assert "<script>x" not in html and "&lt;script&gt;" in html
    assert 'lang="ja"' in html and 'lang="en"' in html
    refused = ack_page_html("refused", page_id=3, reason="the link has expired; acknowledge "
                            "with the CLI or the API")
    assert "リンクの有効期限が切れています" in refused and "expired" in refused


def test_every_incident_category_pages_with_the_incident_rules_own_label() -> None:
    """One source for categories: the incident rules; the contact tree and pages follow it."""
    assert tuple(category.value for category in Category) == INCIDENT_CATEGORIES
    assert tuple(severity.value for severity in Severity) == SEVERITIES
    for category, info in CATEGORIES.items():
        built = page_message(
            page_id=1, incident_id="INC-1", summary="s", category=category.value,
            severity="SEV2", level_number=1, ack_timeout_s=300, ack_url="https://h.example/a",
        )
        assert f"分類: {info.label_ja}" in built.body
        assert f"Category: {info.label_en}" in built.body
    assert "Category: tea_shortage" in page_message(
        page_id=1, incident_id="INC-1", summary="s", category="tea_shortage", severity="SEV2",
        level_number=1, ack_timeout_s=300, ack_url="https://h.example/a").body
