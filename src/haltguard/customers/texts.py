"""The words customers read: notices (ja/en), each opening with the customer's own
anti-phishing phrase, so a message without it is not from the exchange."""

from __future__ import annotations

from dataclasses import dataclass

from haltguard.customers.models import NoticeKind


@dataclass(frozen=True)
class NoticeText:
    subject_ja: str
    subject_en: str
    body_ja: str
    body_en: str


_SUBJECTS: dict[NoticeKind, tuple[str, str]] = {
    NoticeKind.NEW_DEVICE: ("新しい端末・場所からの利用",
                            "Your account was used from a new device"),
    NoticeKind.NEW_KEY: ("APIキーが作成されました", "A new API key was created"),
    NoticeKind.NEW_ADDRESS: ("出金先アドレスが追加されました", "A withdrawal address was added"),
    NoticeKind.WITHDRAWAL_REQUESTED: ("出金を受け付けました", "Withdrawal requested"),
    NoticeKind.WITHDRAWAL_SENT: ("出金を実行しました", "Withdrawal sent"),
    NoticeKind.SECURITY_CHANGED: ("セキュリティ設定が変更されました",
                                  "A security setting was changed"),
}

_NOT_YOU = (
    "お心当たりがない場合は、ただちに「口座をロック」してサポートへご連絡ください。",
    "If this was not you, lock your account now (\"freeze my account\") and contact support.",
)


def _phrase_lines(phrase: str) -> tuple[str, str]:
    if phrase:
        return (f"フィッシング対策フレーズ: 「{phrase}」",
                f"Your anti-phishing phrase: \"{phrase}\"")
    return ("フィッシング対策フレーズが未設定です。セキュリティセンターで設定してください。",
            "You have not set an anti-phishing phrase; set one in the security centre.")


def notice_text(kind: NoticeKind, phrase: str, detail_ja: str, detail_en: str) -> NoticeText:
    """A notice of ``kind`` for the customer whose phrase is ``phrase``."""
    subject_ja, subject_en = _SUBJECTS[kind]
    phrase_ja, phrase_en = _phrase_lines(phrase)
    return NoticeText(
        subject_ja=f"[haltguard] {subject_ja}",
        subject_en=f"[haltguard] {subject_en}",
        body_ja=f"{phrase_ja}\n\n{detail_ja}\n\n{_NOT_YOU[0]}\n",
        body_en=f"{phrase_en}\n\n{detail_en}\n\n{_NOT_YOU[1]}\n",
    )
