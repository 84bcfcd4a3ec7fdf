"""Which open incident a customer's question is about, and what it is about: pure rules.

A ticket is linked to an incident when it arrived inside the incident's window (from an hour
before it started until ``grace_s`` after it was resolved) and its text points at it: the
incident's market named (3 points), words of the incident's category (2), words anyone uses
of an outage (1). The best score wins; on a tie, the newest incident. The reason is kept on
the ticket so an agent sees why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from haltguard.common.taxonomy import Category
from haltguard.support.models import TicketCategory
from haltguard.support.search import normalize

BEFORE_START = timedelta(hours=1)
"""Customers notice before we do: a question up to this long before an incident's start
is still about it."""
MARKET_SCORE = 3
CATEGORY_SCORE = 2
OUTAGE_SCORE = 1

OUTAGE_WORDS = (
    "停止", "止ま", "障害", "不具合", "エラー", "できない", "できません", "出来ない", "つながら",
    "繋がら", "メンテ", "halt", "outage", "down", "cannot", "can't", "unable", "error",
    "not working", "stopped", "maintenance",
)
CATEGORY_WORDS: dict[Category, tuple[str, ...]] = {
    Category.SERVER_DOWN: ("つながら", "繋がら", "接続", "表示されない", "connect", "loading"),
    Category.NETWORK: ("つながら", "繋がら", "接続", "タイムアウト", "connect", "timeout"),
    Category.DATABASE: ("残高", "反映", "履歴", "balance", "history", "missing"),
    Category.SOFTWARE_BUG: ("約定", "おかしい", "表示", "注文", "キャンセル", "取消", "wrong",
                            "order", "cancel", "fill"),
    Category.UNAUTHORIZED_ACCESS: ("不正", "ハッキング", "流出", "資産", "安全", "パスワード",
                                   "hack", "stolen", "safe", "password", "assets"),
    Category.DDOS: ("重い", "遅い", "つながら", "slow", "timeout", "connect"),
    Category.MALWARE: ("不正", "ウイルス", "資産", "安全", "virus", "safe", "assets"),
    Category.REGULATION_CHANGE: ("規制", "法律", "金融庁", "regulation", "law"),
    Category.MARKET_VOLATILITY: ("急落", "急騰", "暴落", "価格", "サーキットブレーカー",
                                 "キャンセル", "price", "crash", "volatil", "cancel"),
    Category.NATURAL_DISASTER: ("地震", "災害", "停電", "earthquake", "disaster"),
}
TOPIC_WORDS: tuple[tuple[TicketCategory, tuple[str, ...]], ...] = (
    (TicketCategory.COMPENSATION, ("補償", "補填", "返金", "compensat", "refund")),
    (TicketCategory.DEPOSIT_WITHDRAWAL, ("出金", "入金", "送金", "withdraw", "deposit")),
    (TicketCategory.ACCOUNT, ("ログイン", "パスワード", "口座", "本人確認", "login", "password",
                              "account", "2fa")),
    (TicketCategory.TRADING, ("注文", "取引", "約定", "キャンセル", "order", "trade", "cancel")),
)


@dataclass(frozen=True)
class OpenIncident:
    """What linking needs of an incident (read through the incidents service)."""

    id: int
    category: Category
    markets: tuple[str, ...]
    started_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class Link:
    incident_id: int
    score: int
    reason: str


def _market_forms(market: str) -> tuple[str, ...]:
    base, _, quote = market.lower().partition("-")
    return (f"{base}-{quote}", f"{base}/{quote}", f"{base}{quote}", f"{base}_{quote}")


def _found(text: str, words: Sequence[str]) -> list[str]:
    return [word for word in words if word in text]


def _mentions_market(text: str, market: str) -> bool:
    if any(form in text for form in _market_forms(market)):
        return True
    base = market.lower().partition("-")[0]
    return re.search(rf"(?<![a-z0-9]){re.escape(base)}(?![a-z0-9])", text) is not None


def link(text: str, market: str, created_at: datetime, incidents: Sequence[OpenIncident],
         *, grace_s: int) -> Link | None:
    """The incident ``text`` (with an optional ``market`` the customer picked) is about."""
    lowered = normalize(f"{text} {market}")
    best: Link | None = None
    for incident in sorted(incidents, key=lambda item: item.id, reverse=True):
        if created_at < incident.started_at - BEFORE_START:
            continue
        if incident.resolved_at is not None and \
                created_at > incident.resolved_at + timedelta(seconds=grace_s):
            continue
        markets = [name for name in incident.markets if _mentions_market(lowered, name)]
        category = _found(lowered, CATEGORY_WORDS.get(incident.category, ()))
        outage = _found(lowered, OUTAGE_WORDS)
        score = (MARKET_SCORE * bool(markets) + CATEGORY_SCORE * bool(category)
                 + OUTAGE_SCORE * bool(outage))
        if score == 0 or (best is not None and score <= best.score):
            continue
        parts = []
        if markets:
            parts.append("market " + ", ".join(markets))
        if category or outage:
            parts.append("words " + ", ".join(dict.fromkeys(category + outage)))
        best = Link(incident.id, score, "; ".join(parts))
    return best


def topic(text: str) -> TicketCategory:
    """What a question unrelated to an incident is about, from its words."""
    lowered = normalize(text)
    for category, words in TOPIC_WORDS:
        if _found(lowered, words):
            return category
    return TicketCategory.OTHER
