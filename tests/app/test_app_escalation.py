"""The operations app runs the escalation loop for as long as it runs: an unacknowledged page
reaches the next level with no one calling a tick, and the loop stops with the app."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.config import load_config
from haltguard.app.operations import create_app
from haltguard.db.session import session_scope
from haltguard.responders import service as responders
from haltguard.responders.service import ManualClock, ResponderSettings, SmtpSettings
from haltguard.security.testing import fast_test_settings
from haltguard.web.settings import Settings

START = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
LOOP_INTERVAL_S = 0.05
MAIL_WAIT_S_MAX = 10.0
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


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted"

    def count_to(self, address: str) -> int:
        return sum(address in str(message["To"]) for message in self.messages)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    inbox = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_app_escalates_an_unacknowledged_page_on_its_own(
    engine: Engine, session_factory: sessionmaker[Session], smtp: tuple[Mailbox, int]
) -> None:
    inbox, port = smtp
    clock = ManualClock(START)
    paging = ResponderSettings(smtp=SmtpSettings(host="127.0.0.1", port=port),
                               public_url="https://ops.example.test")
    with session_scope(session_factory) as session:
        responders.apply_config(session, responders.parse_config_yaml(ONCALL_YAML),
                                actor="system:test-setup", clock=clock)
        responders.page(session, incident_id="INC-7", summary="order entry down",
                        category="server_down", severity="SEV1", clock=clock, settings=paging)
    assert inbox.count_to("tanaka@example.test") == 1
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     clock=clock, security_settings=fast_test_settings(),
                     responder_settings=paging, escalation_interval_s=LOOP_INTERVAL_S)
    with TestClient(app):
        time.sleep(LOOP_INTERVAL_S * 6)  # several ticks, all before the timeout
        assert inbox.count_to("suzuki@example.test") == 0
        clock.advance(timedelta(minutes=5, seconds=1))
        deadline = time.monotonic() + MAIL_WAIT_S_MAX
        while inbox.count_to("suzuki@example.test") == 0:
            assert time.monotonic() < deadline, "the loop did not escalate"
            time.sleep(LOOP_INTERVAL_S)
    assert "haltguard-escalation" not in {thread.name for thread in threading.enumerate()}


def test_a_bad_security_setting_fails_before_the_app_is_created() -> None:
    with pytest.raises(ValueError, match=r"HALTGUARD_OPERATOR_NETWORKS.*'office' is not a network"):
        load_config(None, environ={"HALTGUARD_OPERATOR_NETWORKS": "10.0.0.0/8,office"})
