"""Under serve the status loop and the notice outbox run by themselves: a published public
update reaches the status page and a subscriber's webhook with nobody starting either."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from haltguard.app.config import load_config
from haltguard.app.system import System, start_system
from haltguard.db import keys
from haltguard.db.session import session_scope
from haltguard.incidents import flows as incident_flows
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.notify.channels import stored_address
from haltguard.notify.models import Subscriber
from haltguard.status import service as status
from haltguard.status.models import DraftEdit, IncidentDraftRequest
from haltguard.status.rules import UpdateStatus

WAIT_S_MAX = 15.0
UPDATE_TEXT = "Matching on BTC-JPY is halted while we check the engine."


class Receiver:
    """A local HTTP server keeping every POST body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    config = load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path / "data"), "venue.process": False,
        "status.loop_interval_s": 0.5, "notify.allow_private_webhooks": True,
    })
    started = start_system(config, demo=True)
    yield started
    started.stop()


def wait_for(what: str, condition: Any) -> None:
    deadline = time.monotonic() + WAIT_S_MAX
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def subscribe_webhook(system: System, url: str) -> None:
    with session_scope(system.session_factory) as session:
        now = system.clock.now()
        keyring, digest = keys.keyring_for(session), f"webhook-{url}"
        session.add(Subscriber(
            kind="webhook", address=stored_address(keyring, "webhook", digest, url),
            address_digest=digest, contact_email=None,
            label="", language="en", status="confirmed", all_components=True,
            anti_phishing_phrase="blue heron",
            signing_secret=keys.seal_signing_secret(keyring, digest, "webhook-secret"),
            token_generation=0, created_by="test", created_at=now, confirmed_at=now,
        ))


def publish_update(system: System) -> None:
    with session_scope(system.session_factory) as session:
        incident = incident_flows.open_incident(session, IncidentCreate.model_validate({
            "title": "BTC-JPY matching stalled", "category": Category.SOFTWARE_BUG,
            "severity": Severity.SEV2, "affected_markets": ["BTC-JPY"],
        }), actor="alice", clock=system.clock)
        draft = status.draft_incident_update(
            session, incident.id, IncidentDraftRequest(status=UpdateStatus.IDENTIFIED),
            actor="alice", now=system.clock.now(), settings=system.status_settings)
        status.edit_draft(session, draft.id, DraftEdit(body_en=UPDATE_TEXT), actor="alice",
                          now=system.clock.now())
        status.publish(session, draft.id, actor="alice", now=system.clock.now(),
                       settings=system.status_settings)


def test_a_published_update_reaches_the_status_page_and_a_webhook_subscriber_by_itself(
    system: System, receiver: Receiver
) -> None:
    assert system.status_loop is not None and system.status_loop.running
    assert system.outbox_worker is not None
    subscribe_webhook(system, receiver.url)

    publish_update(system)

    client = TestClient(system.asgi_app())
    wait_for("the update on the English status page",
             lambda: UPDATE_TEXT in client.get("/status/en/").text)
    wait_for("the webhook delivery", lambda: any(UPDATE_TEXT.encode() in body
                                                 for body in receiver.bodies))


def test_stopping_the_system_stops_the_status_loop_and_the_outbox(system: System) -> None:
    loop, outbox = system.status_loop, system.outbox_worker
    assert loop is not None and loop.running
    assert outbox is not None and outbox.running

    system.stop()

    assert not loop.running
    assert not outbox.running
