"""Helpers shared by the status page tests (imported by name; pytest puts this folder on the
path)."""

from __future__ import annotations

import email
import email.policy
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from haltguard.responders.service import ManualClock, ResponderSettings
from haltguard.security.testing import ProvisionedOperator
from haltguard.status.flows import TickReport, status_tick
from haltguard.status.publisher import StatusPublisher
from haltguard.status.views import publisher_of

START = datetime(2025, 1, 6, 0, 30, tzinfo=UTC)  # 09:30 JST
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
GOLDEN_DIR = Path(__file__).with_name("golden")
ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "status"
UPDATE_GOLDEN_ENV = "HALTGUARD_UPDATE_GOLDEN"


@dataclass
class StatusApi:
    """The operations app over a real venue, with operators by name."""

    client: TestClient
    app: FastAPI
    operators: dict[str, ProvisionedOperator]
    clock: ManualClock
    paging: ResponderSettings = field(default_factory=ResponderSettings)
    """The app's paging settings (the test's mailbox when it has one)."""

    def as_(self, username: str) -> dict[str, str]:
        return self.operators[username].headers

    @property
    def publisher(self) -> StatusPublisher:
        return publisher_of(self.app)

    def tick(self) -> TickReport:
        """One tick of the status loop, paging with the app's paging settings."""
        return status_tick(self.publisher, responder_settings=self.paging)

    def call(self, method: str, path: str, *, user: str = "carol", body: Any = None,
             expect: int = 200) -> Any:
        response = self.client.request(method, path, json=body, headers=self.as_(user))
        assert response.status_code == expect, response.text
        return response.json()

    def open_incident(self, **fields: Any) -> dict[str, Any]:
        body = {"title": "Order database unreachable", "category": "database",
                "severity": "SEV2", **fields}
        result: dict[str, Any] = self.call("POST", "/api/incidents", body=body, expect=201)
        return result

    def halt(self, incident_id: int, *markets: str) -> None:
        self.call("POST", f"/api/incidents/{incident_id}/actions/halt",
                  body={"markets": list(markets), "reason": "protect customers"})

    def publish(self, incident_id: int, status: str, **fields: Any) -> dict[str, Any]:
        """Draft from the template, then publish, as an operator would."""
        draft = self.call("POST", f"/api/status/incidents/{incident_id}/drafts",
                          body={"status": status, **fields}, expect=201)
        result: dict[str, Any] = self.call("POST", f"/api/status/updates/{draft['id']}/publish")
        return result

    def page(self, path: str) -> Any:
        """A public file, refreshed from the database first (no credentials sent)."""
        self.publisher.refresh()
        response = self.client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response


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


def check_golden(name: str, actual: bytes) -> None:
    """Compare with ``golden/<name>``; ``HALTGUARD_UPDATE_GOLDEN=1`` rewrites it instead."""
    path = GOLDEN_DIR / name
    if os.environ.get(UPDATE_GOLDEN_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
    expected = path.read_bytes()
    assert actual.decode() == expected.decode(), f"{name} differs from its golden file"


ONCALL_YAML = """\
people:
  - handle: tanaka
    display_name: 田中 一郎
    contacts: [{kind: email, address: tanaka@example.test}]
policies:
  - name: exchange
    levels:
      - {ack_timeout_s: 300, targets: ["person:tanaka"]}
routes:
  - {category: "*", severity: "*", policy: exchange}
"""
