"""Fixtures for responders tests: real servers (SMTP by aiosmtpd, an HTTP receiver for apprise
webhooks), a manual clock, settings pointing at them, and an API app with operators.

The database comes from the shared ``session_factory`` fixture (migrated SQLite, and
PostgreSQL where the suite runs it).
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.common.clock import ManualClock
from haltguard.db.session import session_scope
from haltguard.responders import service
from haltguard.responders.models import ContactMethodIn, PersonIn
from haltguard.responders.settings import ResponderSettings, SmtpSettings
from haltguard.security.testing import fast_test_settings
from haltguard.web.settings import Settings

# Monday 2026-03-02 09:00 in Tokyo.
START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
ACK_SECRET = b"responders-test-secret-0123456789abcdef"
PUBLIC_URL = "https://haltguard.example.test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Mailbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.arrived:
            self.messages.append(message)
            self.recipients.append(list(envelope.rcpt_tos))
            self.arrived.notify_all()
        return "250 Message accepted"


@dataclass
class SmtpServer:
    host: str
    port: int
    mailbox: _Mailbox

    @property
    def messages(self) -> list[EmailMessage]:
        return self.mailbox.messages

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, mailbox)
    finally:
        controller.stop()


@dataclass
class HttpReceiver:
    """Records every POST; answers with the next queued status (200 when the queue is empty)."""

    port: int
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def bodies_to(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for got_path, body in self.posts if got_path == path]


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with receiver.lock:
                receiver.posts.append((self.path, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def settings(smtp_server: SmtpServer) -> ResponderSettings:
    return ResponderSettings(
        smtp=SmtpSettings(host=smtp_server.host, port=smtp_server.port,
                          sender="pager@haltguard.example.test", timeout_s=5.0),
        public_url=PUBLIC_URL,
        ack_secret=ACK_SECRET,
        channel_timeout_s=3.0,
    )


def add_person(
    session_factory: sessionmaker[Session], clock: ManualClock, handle: str, *,
    emails: tuple[str, ...] = (), webhooks: tuple[str, ...] = (), language: str = "ja",
) -> None:
    contacts = [ContactMethodIn(kind="email", address=a) for a in emails]
    contacts += [ContactMethodIn(kind="apprise", address=u) for u in webhooks]
    data = PersonIn(handle=handle, display_name=handle.title(),
                    language="en" if language == "en" else "ja", contacts=contacts)
    with session_scope(session_factory) as session:
        service.put_person(session, data, actor="system:test-setup", clock=clock)


@pytest.fixture
def api(engine: Engine, clock: ManualClock, settings: ResponderSettings) -> Iterator[TestClient]:
    """The operations app as the composition root builds it, with these paging settings;
    the escalation loop is left to the tests, which tick it themselves."""
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     clock=clock, responder_settings=settings,
                     security_settings=fast_test_settings(), escalation_interval_s=None)
    with TestClient(app, base_url="https://testserver") as client:
        yield client
