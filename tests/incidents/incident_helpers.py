"""Helpers shared by the incident tests (imported by name; pytest puts this folder on the path)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from haltguard.incidents import flows
from haltguard.incidents.models import Incident, IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.responders.service import ManualClock, ResponderSettings
from haltguard.security.permissions import Role
from haltguard.security.testing import ProvisionedOperator

START = datetime(2025, 1, 6, 0, 30, tzinfo=UTC)  # 09:30 JST


def open_incident(
    session: Session,
    clock: ManualClock,
    *,
    severity: Severity = Severity.SEV3,
    category: Category = Category.DATABASE,
    actor: str = "alice",
    responder_settings: ResponderSettings | None = None,
    **fields: object,
) -> Incident:
    data = IncidentCreate.model_validate(
        {"title": "Order database unreachable", "category": category, "severity": severity,
         **fields}
    )
    incident = flows.open_incident(session, data, actor=actor, clock=clock,
                                   responder_settings=responder_settings)
    session.commit()
    return incident


class Mailbox:
    """An SMTP server's inbox: every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.settings = ResponderSettings()  # where pages go: set to this server when started

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if address in str(message["To"])]


ONCALL_YAML = """\
people:
  - handle: tanaka
    display_name: 田中 一郎
    contacts: [{kind: email, address: tanaka@example.test}]
  - handle: suzuki
    display_name: 鈴木 花子
    contacts: [{kind: email, address: suzuki@example.test}]
policies:
  - name: exchange
    levels:
      - {ack_timeout_s: 300, targets: ["person:tanaka"]}
      - {ack_timeout_s: 600, targets: ["person:suzuki"]}
routes:
  - {category: "*", severity: "*", policy: exchange}
"""


@dataclass
class Api:
    """The operations app over a real venue, with one operator per name below."""

    client: TestClient
    app: FastAPI
    operators: dict[str, ProvisionedOperator]

    def as_(self, username: str) -> dict[str, str]:
        return self.operators[username].headers


# The two commanders of the end-to-end story: one acts, the other approves.
OPERATORS_E2E = {"alice": Role.INCIDENT_COMMANDER, "dave": Role.INCIDENT_COMMANDER}
