"""Every text a person reads from this domain, in Japanese and English, kept in one place.

Pages carry both languages (the recipient's preferred one first) because a page forwarded
to a colleague must still be readable by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Literal

from haltguard.common.taxonomy import CATEGORIES, Category

Language = Literal["ja", "en"]
LANGUAGES: tuple[Language, ...] = ("ja", "en")

_PAGE_BODY: dict[Language, str] = {
    "ja": (
        "【障害対応の呼出】\n"
        "インシデント: {incident_id}\n"
        "重大度: {severity}\n"
        "分類: {category_label}\n"
        "概要: {summary}\n"
        "呼出: {page_id}（エスカレーション レベル{level}）\n"
        "\n"
        "対応できる場合は、次のリンクを開いて確認（ACK）してください。"
        "確認がない場合は {timeout_min} 分後に次の担当者へエスカレーションします。\n"
        "{ack_url}\n"
        "CLI: haltguard oncall ack {page_id}\n"
    ),
    "en": (
        "[Incident page]\n"
        "Incident: {incident_id}\n"
        "Severity: {severity}\n"
        "Category: {category_label}\n"
        "Summary: {summary}\n"
        "Page: {page_id} (escalation level {level})\n"
        "\n"
        "If you can respond, open this link to acknowledge. Without an acknowledgement the "
        "page escalates to the next responder in {timeout_min} min.\n"
        "{ack_url}\n"
        "CLI: haltguard oncall ack {page_id}\n"
    ),
}


_SECTION_RULE = "\n" + "-" * 40 + "\n\n"


@dataclass(frozen=True)
class PageMessage:
    subject: str
    body: str


def category_label(category: str, language: Language) -> str:
    """The incident rules' label for ``category``; an unknown value is shown as written."""
    try:
        info = CATEGORIES[Category(category)]
    except ValueError:
        return category
    return info.label_ja if language == "ja" else info.label_en


def page_message(
    *,
    page_id: int,
    incident_id: str,
    summary: str,
    category: str,
    severity: str,
    level_number: int,
    ack_timeout_s: int,
    ack_url: str,
    language: Language = "ja",
) -> PageMessage:
    """The subject and body one responder receives; ``language`` comes first."""
    order: tuple[Language, ...] = (language, *(lang for lang in LANGUAGES if lang != language))
    one_line_summary = " ".join(summary.split())
    subject = (
        f"[haltguard] {severity} 障害呼出 / Page: {incident_id} {one_line_summary}"
    )[:200]
    sections = [
        _PAGE_BODY[lang].format(
            incident_id=incident_id,
            severity=severity,
            category_label=category_label(category, lang),
            summary=summary,
            page_id=page_id,
            level=level_number,
            timeout_min=max(1, ack_timeout_s // 60),
            ack_url=ack_url,
        )
        for lang in order
    ]
    return PageMessage(subject=subject, body=_SECTION_RULE.join(sections))


# Timeline and audit texts, one template per event kind and language.
EVENT_TEXTS: dict[str, dict[Language, str]] = {
    "paged": {
        "ja": "ポリシー「{policy}」のレベル{level}として {people} を呼び出しました",
        "en": "Paged {people} as level {level} of policy '{policy}'",
    },
    "paged_directly": {
        "ja": "{people} を直接呼び出しました（{reason}）。{timeout_min} 分以内に確認がなければ"
        "ポリシー「{then_policy}」でエスカレーションします",
        "en": "Paged {people} directly ({reason}); without an acknowledgement within "
        "{timeout_min} min it escalates by policy '{then_policy}'",
    },
    "escalated": {
        "ja": "{timeout_min} 分以内に確認がなかったため、レベル{level}（{people}）へ"
        "エスカレーションしました",
        "en": "No acknowledgement within {timeout_min} min; escalated to level {level} ({people})",
    },
    "level_empty": {
        "ja": "レベル{level}には呼び出せる人がいませんでした（{reason}）。次のレベルへ進みます",
        "en": "Level {level} had nobody to page ({reason}); moving on",
    },
    "acknowledged": {
        "ja": "{actor} が呼出 {page_id} を確認しました（{via}）。エスカレーションを停止しました",
        "en": "{actor} acknowledged page {page_id} via {via}; escalation stopped",
    },
    "exhausted": {
        "ja": "すべてのレベル（計{steps}回）を呼び出しましたが確認がありません。"
        "エスカレーションを終了しました。直接連絡してください",
        "en": "Nobody acknowledged after {steps} level pages; escalation ended. "
        "Reach responders directly",
    },
    "cancelled": {
        "ja": "{actor} が呼出 {page_id} を取り消しました（{reason}）",
        "en": "{actor} cancelled page {page_id} ({reason})",
    },
    "delivery_failed": {
        "ja": "{person} への {channel} 送信が {attempts} 回失敗しました: {error}",
        "en": "Delivery to {person} by {channel} failed after {attempts} attempts: {error}",
    },
}


def event_text(kind: str, language: Language, **values: object) -> str:
    return EVENT_TEXTS[kind][language].format(**values)


AckOutcome = Literal["confirm", "acknowledged", "already", "refused"]

_ACK_PAGE: dict[AckOutcome, dict[Language, str]] = {
    "confirm": {
        "ja": "呼出 {page_id}（インシデント {incident_id}）を確認しますか。"
        "下のボタンで確認すると、エスカレーションが停止します。",
        "en": "Acknowledge page {page_id} (incident {incident_id})? Escalation stops when you "
        "press the button below.",
    },
    "acknowledged": {
        "ja": "呼出 {page_id}（インシデント {incident_id}）を確認しました。"
        "エスカレーションは停止しました。",
        "en": "Page {page_id} (incident {incident_id}) is acknowledged. Escalation has stopped.",
    },
    "already": {
        "ja": "呼出 {page_id} はすでに {actor} が確認済みです（状態: {status}）。",
        "en": "Page {page_id} was already handled by {actor} (status: {status}).",
    },
    "refused": {
        "ja": "このリンクでは確認できません: {reason}。CLI（haltguard oncall ack {page_id}）"
        "か API で確認してください。",
        "en": "This link cannot acknowledge the page: {reason}. Use the CLI "
        "(haltguard oncall ack {page_id}) or the API.",
    },
}

ACK_BUTTON = "確認する / Acknowledge"

_REFUSAL_REASONS_JA = {
    "the link is malformed": "リンクの形式が正しくありません",
    "the link's signature is not valid": "リンクの署名が正しくありません",
    "the link belongs to another page": "このリンクは別の呼出のものです",
    "the link has expired; acknowledge with the CLI or the API": "リンクの有効期限が切れています",
    "no such page": "該当する呼出がありません",
}


def ack_page_html(
    outcome: AckOutcome,
    *,
    page_id: int,
    incident_id: str = "",
    actor: str = "",
    status: str = "",
    reason: str = "",
    form_action: str = "",
    token: str = "",
) -> str:
    """The small bilingual page a responder sees after opening an ack link. ``confirm``
    carries a form that posts ``token`` to ``form_action`` (plain HTML, no script): opening
    the link only asks, since mail scanners open links nobody read."""
    paragraphs = []
    for lang in LANGUAGES:
        shown_reason = _REFUSAL_REASONS_JA.get(reason, reason) if lang == "ja" else reason
        text = _ACK_PAGE[outcome][lang].format(
            page_id=page_id,
            incident_id=incident_id,
            actor=actor,
            status=status,
            reason=shown_reason,
        )
        paragraphs.append(f'<p lang="{lang}">{escape(text)}</p>')
    if outcome == "confirm":
        assert form_action and token, "a confirmation page needs its form"
        paragraphs.append(
            f'<form method="post" action="{escape(form_action)}">'
            f'<input type="hidden" name="token" value="{escape(token)}">'
            f'<button type="submit">{escape(ACK_BUTTON)}</button></form>'
        )
    title = {"confirm": "呼出の確認 / Acknowledge page",
             "acknowledged": "確認済み / Acknowledged", "already": "確認済み / Already handled",
             "refused": "確認できません / Cannot acknowledge"}[outcome]
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title></head>\n<body><h1>{escape(title)}</h1>\n"
        + "\n".join(paragraphs)
        + "\n</body></html>\n"
    )
