"""Real servers for the notify tests: an SMTP server (aiosmtpd) that can refuse, defer or
stall a message on request, and an HTTP receiver for webhooks and apprise ``json://`` URLs.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session

from haltguard.db import keys
from haltguard.notify.channels import stored_address
from haltguard.notify.models import Subscriber, SubscriberComponent
from haltguard.notify.settings import NotifySettings
from haltguard.responders.settings import SmtpSettings

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""For tests about HTTP and policy rather than storage; storage-critical tests (fan-out,
claims, leases, the crash) run on SQLite and PostgreSQL."""

PUBLIC_URL = "https://status.example.test"
LINK_SECRET = b"notify-test-secret-0123456789abcdefghij"
START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@dataclass
class Received:
    recipients: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class MailHandler:
    """Keeps every message; ``refuse`` maps an address to an SMTP reply such as
    ``"550 no such user"``; ``defer_first`` answers 451 to that many messages; ``stall_at``
    holds the n-th message (1-based) after receiving it until ``release`` is set;
    ``pipelining`` offers RFC 2920 pipelining in the EHLO answer."""

    refuse: dict[str, str] = field(default_factory=dict)
    pipelining: bool = False
    defer_first: int = 0
    stall_at: int | None = None
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    data_calls: int = 0

    async def handle_EHLO(  # noqa: N802
        self, _server: Any, session: Any, _envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(  # noqa: N802
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.data_calls += 1
            call = self.data_calls
            if call <= self.defer_first:
                return "451 try again later"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append(Received(list(envelope.rcpt_tos), envelope.content, message))
        if self.stall_at == call:
            self.stalled.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return "250 accepted"

    def messages_to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.received if address in r.recipients]

    def message_id_counts(self) -> Counter[str]:
        with self.lock:
            return Counter(str(r.message["Message-ID"]) for r in self.received)

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: MailHandler

    @property
    def settings(self) -> SmtpSettings:
        return SmtpSettings(host=self.host, port=self.port, sender="status@example.test",
                            timeout_s=5.0)


@contextmanager
def smtp_server(handler: MailHandler | None = None) -> Iterator[SmtpServer]:
    chosen = handler or MailHandler()
    controller = Controller(chosen, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, chosen)
    finally:
        chosen.release.set()
        controller.stop()


@dataclass
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Answers each POST with the next status from ``statuses`` (then 200)."""

    port: int = 0
    statuses: list[int] = field(default_factory=list)
    posts: list[Posted] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.posts.append(Posted(self.path, dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def notify_settings(smtp: SmtpServer, **changes: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "smtp": smtp.settings,
        "public_url": PUBLIC_URL,
        "service_name": "Example Exchange status",
        "secret": LINK_SECRET,
        "allow_private_webhook_hosts": True,
        "backoff_base_s": 0,
        "backoff_max_s": 0,
        "senders": 2,
        "batch_max": 50,
        "lease_s": 30,
        "channel_timeout_s": 5.0,
        "poll_interval_s": 0.02,
    }
    values.update(changes)
    return NotifySettings(**values)


def add_confirmed(
    session: Session,
    count: int,
    *,
    kind: str = "email",
    language: str = "ja",
    component_ids: list[str] | None = None,
    address_format: str = "user{index}@example.test",
    phrase_format: str = "phrase {index}",
    start: int = 0,
) -> list[int]:
    """Confirmed subscribers written straight to the table (the public flow has its own
    tests); answers their ids."""
    ids = []
    keyring = keys.keyring_for(session)
    for index in range(start, start + count):
        digest = f"{kind}-{address_format}-{index}"
        subscriber = Subscriber(
            kind=kind,
            address=stored_address(keyring, kind, digest, address_format.format(index=index)),
            address_digest=digest, contact_email=None, label="",
            language=language, status="confirmed", all_components=not component_ids,
            anti_phishing_phrase=phrase_format.format(index=index),
            signing_secret=keys.seal_signing_secret(keyring, digest, "webhook-secret")
            if kind == "webhook" else "",
            token_generation=0, created_by="test", created_at=START, confirmed_at=START,
        )
        session.add(subscriber)
        session.flush()
        for component_id in component_ids or []:
            session.add(SubscriberComponent(subscriber_id=subscriber.id,
                                            component_id=component_id))
        ids.append(subscriber.id)
    session.flush()
    return ids
