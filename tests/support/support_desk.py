"""The support desk as tests meet it: the operations app on a test database with a manual
clock, operators of each role, an open incident on BTC-JPY and a few help-centre articles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import ManualClock
from haltguard.common.taxonomy import Category
from haltguard.db.session import session_scope
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import IncidentCreate, PublicUpdateCreate, Severity
from haltguard.security.testing import ProvisionedOperator

START = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)

ARTICLES: list[dict[str, Any]] = [
    {"slug": "cancel-during-halt", "category": "trading",
     "title_ja": "取引停止中に注文をキャンセルできない理由",
     "title_en": "Why orders cannot be cancelled during a halt",
     "body_ja": "取引停止中は市場を保護するため、キャンセルを受け付けない場合があります。",
     "body_en": "While a market is halted, cancels may be refused to protect it.",
     "keywords": "キャンセル 取消 cancel"},
    {"slug": "assets-safe", "category": "security",
     "title_ja": "お客様の資産の保全について", "title_en": "How your assets are kept safe",
     "body_ja": "お客様の資産は分別管理され、コールドウォレットで保管しています。",
     "body_en": "Customer assets are segregated and kept in cold wallets.",
     "keywords": "資産 安全 assets safe"},
    {"slug": "withdrawal-time", "category": "deposit_withdrawal",
     "title_ja": "出金にかかる時間", "title_en": "How long a withdrawal takes",
     "body_ja": "出金は通常30分以内に処理されます。ビットコインの送金には承認が必要です。",
     "body_en": "Withdrawals are usually processed within 30 minutes.",
     "keywords": "出金 withdrawal"},
]


def open_incident(factory: sessionmaker[Session], clock: ManualClock, *,
                  markets: list[str] | None = None,
                  category: Category = Category.SOFTWARE_BUG) -> int:
    with session_scope(factory) as session:
        incident = incident_flows.open_incident(session, IncidentCreate(
            title="Matching engine stalled", category=category, severity=Severity.SEV2,
            affected_markets=markets if markets is not None else ["BTC-JPY"],
        ), actor="alice", clock=clock)
        return incident.id


def post_update(factory: sessionmaker[Session], clock: ManualClock, incident_id: int,
                text_ja: str, text_en: str) -> None:
    with session_scope(factory) as session:
        incident = incidents.get(session, incident_id)
        incidents.post_public_update(session, incident, PublicUpdateCreate(
            message_ja=text_ja, message_en=text_en), actor="operator:sam", now=clock.now())


@dataclass
class Desk:
    app: FastAPI
    client: TestClient
    factory: sessionmaker[Session]
    clock: ManualClock
    operators: dict[str, ProvisionedOperator]
    incident_id: int

    def as_(self, username: str) -> dict[str, str]:
        return self.operators[username].headers

    def add_articles(self, articles: list[dict[str, Any]] = ARTICLES) -> None:
        for article in articles:
            response = self.client.post("/api/support/articles", json=article,
                                        headers=self.as_("sam"))
            assert response.status_code == 201, response.text

    def form(self, **fields: Any) -> Any:
        body = {"subject": "取引できない", "body": "BTC-JPY の注文がキャンセルできません",
                "customer_email": "taro@example.com", "customer_name": "山田太郎", **fields}
        return self.client.post("/api/support/public/tickets", json=body)
