"""Every text of support a customer reads, in Japanese and English: the built-in reply
templates (macros), the incident FAQ drafted from an incident's facts, and the answers of the
public form, mail intake and chat.

A template's variables are written ``{name}``; only the names in :data:`VARIABLES` exist, and
a template naming another is refused when it is saved, so a reply never goes out with a hole
in it. Values are substituted as plain text (no format mini-language, no attribute access).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

VARIABLES: dict[str, tuple[str, str]] = {
    "customer_name": ("お客様のお名前", "the customer's name"),
    "ticket_ref": ("問い合わせ番号", "the ticket's reference (SUP-123)"),
    "incident_ref": ("障害番号", "the incident's reference (INC-7)"),
    "incident_title": ("障害の件名", "the incident's title"),
    "incident_markets": ("対象の市場", "the affected markets"),
    "incident_started_at": ("発生時刻 (JST)", "when the incident started (JST)"),
    "next_update_at": ("次回のお知らせ予定 (JST)", "when the next public update is due (JST)"),
    "update_text": ("公開したお知らせの本文", "the text of the public update"),
    "help_url": ("ヘルプセンターのURL", "the help centre's address"),
}
_VARIABLE = re.compile(r"\{([^{}]*)\}")


def unknown_variables(template: str) -> list[str]:
    """The ``{names}`` in ``template`` that are not variables (empty: it may be saved)."""
    return [name for name in _VARIABLE.findall(template) if name not in VARIABLES]


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{variable}`` replaced by its value ("" when not known)."""
    return _VARIABLE.sub(lambda match: values.get(match.group(1), match.group(0))
                         if match.group(1) in VARIABLES else match.group(0), template)


@dataclass(frozen=True)
class Template:
    name: str
    subject_ja: str
    subject_en: str
    body_ja: str
    body_en: str


BUILT_IN_MACROS: dict[str, Template] = {
    "incident_update": Template(
        "incident_update",
        "【{incident_ref}】障害に関するお知らせ（{ticket_ref}）",
        "[{incident_ref}] An update on the interruption ({ticket_ref})",
        "{customer_name} 様\n\nお問い合わせいただきありがとうございます。現在発生している障害"
        "（{incident_title}、対象: {incident_markets}）について、最新のお知らせをお送りします。\n\n"
        "{update_text}\n\n次回のお知らせは {next_update_at} ごろを予定しています。最新の状況は"
        "ステータスページでもご確認いただけます。\n\nよくあるご質問: {help_url}\n",
        "Dear {customer_name},\n\nThank you for contacting us. Here is the latest update on "
        "the interruption ({incident_title}, affecting {incident_markets}).\n\n{update_text}"
        "\n\nOur next update is due around {next_update_at}. The status page always shows "
        "the current state.\n\nFrequently asked questions: {help_url}\n",
    ),
    "received": Template(
        "received",
        "お問い合わせを受け付けました（{ticket_ref}）",
        "We have received your question ({ticket_ref})",
        "{customer_name} 様\n\nお問い合わせを受け付けました。担当者より順にご回答いたします。\n",
        "Dear {customer_name},\n\nWe have received your question and will answer in turn.\n",
    ),
    "resolved": Template(
        "resolved",
        "お問い合わせへの回答（{ticket_ref}）",
        "The answer to your question ({ticket_ref})",
        "{customer_name} 様\n\nお問い合わせの件は解決済みとさせていただきました。"
        "ご不明な点があればこのメールにご返信ください。\n",
        "Dear {customer_name},\n\nWe consider your question answered. If anything is still "
        "unclear, reply to this email.\n",
    ),
}

CUSTOMER_NAME_FALLBACK = {"ja": "お客", "en": "customer"}
PHRASE_LABEL = {"ja": "あなたのフィッシング対策フレーズ", "en": "Your anti-phishing phrase"}
NO_PHRASE_NOTE = {
    "ja": "当社からのメールであることは、ステータスページのお知らせと照らし合わせてご確認ください。"
          "当社がパスワードや秘密鍵をお尋ねすることはありません。",
    "en": "Check this email against the notices on our status page. We never ask for your "
          "password or private keys.",
}


@dataclass(frozen=True)
class FaqTemplate:
    slug: str
    title_ja: str
    title_en: str
    body_ja: str
    body_en: str
    keywords: str


INCIDENT_FAQ: tuple[FaqTemplate, ...] = (
    FaqTemplate(
        "assets-safe",
        "お客様の資産は安全ですか？（{incident_ref}）",
        "Are my assets safe? ({incident_ref})",
        "{incident_started_at} から発生している障害（{incident_title}）の間も、お客様の資産"
        "（残高・預かり資産）は当社の台帳で保全されています。障害によって残高が失われることは"
        "ありません。対象: {incident_markets}。",
        "Throughout the interruption that began at {incident_started_at} ({incident_title}), "
        "your assets (balances and holdings) are kept safe in our ledger. The interruption "
        "does not lose any balance. Affected: {incident_markets}.",
        "資産 安全 残高 assets safe balance",
    ),
    FaqTemplate(
        "cannot-cancel",
        "なぜ注文をキャンセルできないのですか？（{incident_ref}）",
        "Why can't I cancel my order? ({incident_ref})",
        "{incident_markets} の取引は現在停止しています。停止中は市場を保護するため、新規注文と"
        "キャンセルを受け付けない場合があります。板に残っている注文はそのまま保持され、再開の"
        "手順はステータスページでお知らせします。次回のお知らせ: {next_update_at}。",
        "Trading in {incident_markets} is halted. While a market is halted, new orders and "
        "cancels may be refused to protect it. Resting orders stay on the book as they were; "
        "the status page says how trading resumes. Next update: {next_update_at}.",
        "キャンセル 取消 注文 停止 cancel order halt",
    ),
    FaqTemplate(
        "compensation",
        "補償はありますか？（{incident_ref}）",
        "Will I be compensated? ({incident_ref})",
        "障害の影響を受けたお客様への対応は、原因と影響の調査が終わり次第、補償の方針として"
        "お知らせします。お問い合わせいただいた方には個別にご連絡します。",
        "Once the cause and the impact have been investigated, we will announce how affected "
        "customers are compensated. Everyone who contacted us will hear from us directly.",
        "補償 補填 返金 compensation refund",
    ),
)

ACCEPTED = {
    "ja": "お問い合わせを受け付けました（{ticket_ref}）。順にご回答いたします。",
    "en": "We have received your question ({ticket_ref}) and will answer in turn.",
}
ACCEPTED_INCIDENT = {
    "ja": "現在発生中の障害（{incident_ref}）に関するお問い合わせとして受け付けました"
          "（{ticket_ref}）。最新の状況はステータスページとよくあるご質問をご覧ください。",
    "en": "We have received your question ({ticket_ref}) about the current interruption "
          "({incident_ref}). The status page and the FAQ have the latest.",
}
CHAT_SUGGESTIONS = {
    "ja": "こちらの記事がお役に立つかもしれません。解決しない場合は担当者におつなぎします。",
    "en": "These articles may answer your question. If not, we will connect you to an agent.",
}
CHAT_QUEUED = {
    "ja": "担当者におつなぎします。現在 {position} 番目です。",
    "en": "Connecting you to an agent. You are number {position} in the queue.",
}
CHAT_FULL = {
    "ja": "ただいまチャットが大変混み合っています。お問い合わせフォームをご利用ください。",
    "en": "Chat is very busy right now. Please use the contact form instead.",
}
CHAT_CLOSED = {
    "ja": "チャットを終了しました。会話の記録はお問い合わせ {ticket_ref} として保存しました。",
    "en": "The chat has ended. Its transcript is kept as ticket {ticket_ref}.",
}
