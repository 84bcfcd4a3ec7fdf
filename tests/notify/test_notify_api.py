"""The HTTP API: public double opt-in, one-click unsubscribe, rate limits; operator routes
against the permission table."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from notify_support import (
    LINK_SECRET,
    SQLITE_ONLY,
    START,
    MailHandler,
    SmtpServer,
    add_confirmed,
    free_port,
    http_receiver,
    notify_settings,
    smtp_server,
)
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.db import keys
from haltguard.notify.models import Notice, NoticeKind, NoticeText, Subscriber
from haltguard.notify.outbox import OutboxWorker
from haltguard.notify.service import enqueue_notice
from haltguard.notify.settings import NotifySettings
from haltguard.notify.views import router
from haltguard.responders.settings import SmtpSettings
from haltguard.security.audit import list_entries
from haltguard.security.permissions import Role
from haltguard.security.testing import (
    fast_test_settings,
    provision_operator,
    public_routes,
    walk_permissions,
)
from haltguard.web.context import attach, context_of
from haltguard.web.settings import Settings

SUBSCRIBE = "/api/notify/subscriptions/email"


class SteppingClock:
    def __init__(self, start: datetime) -> None:
        self.moment = start
        self.lock = threading.Lock()

    def now(self) -> datetime:
        with self.lock:
            return self.moment

    def advance(self, delta: timedelta) -> None:
        with self.lock:
            self.moment += delta


@dataclass
class Api:
    client: TestClient
    app: FastAPI
    smtp: SmtpServer
    clock: SteppingClock

    @property
    def settings(self) -> NotifySettings:
        return context_of(self.app).part(NotifySettings)

    def use(self, settings: NotifySettings) -> None:
        attach(self.app, context_of(self.app).with_parts([settings]))


def notify_routes() -> FastAPI:
    """The notify router alone, to enumerate its routes (requests go to the service app)."""
    routes = FastAPI()
    routes.include_router(router)
    return routes


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    with smtp_server() as smtp:
        clock = SteppingClock(START)
        app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                         clock=clock, security_settings=fast_test_settings(),
                         notify_settings=notify_settings(smtp), escalation_interval_s=None)
        with TestClient(app, base_url="https://testserver") as client:
            yield Api(client, app, smtp, clock)


def subscribe(api: Api, address: str = "kenji@example.test", **extra: Any) -> Any:
    body = {"email": address, "language": "ja", "anti_phishing_phrase": "青い象", **extra}
    return api.client.post(SUBSCRIBE, json=body)


def link_in(text: str, path: str) -> str:
    found = re.search(rf"https://status\.example\.test{path}\?token=[A-Za-z0-9._-]+", text)
    assert found, text
    split = urlsplit(found.group(0))
    return f"{split.path}?{split.query}"


def confirmation_link(api: Api, address: str) -> str:
    messages = api.smtp.handler.messages_to(address)
    assert len(messages) == 1
    plain = messages[-1].get_body(("plain",))
    assert plain is not None
    return link_in(str(plain.get_content()), "/api/notify/confirm")


def a_notice(key: str) -> Notice:
    return Notice(
        key=key, kind=NoticeKind.INCIDENT_UPDATE,
        ja=NoticeText(subject="障害のお知らせ", body="調査中です。"),
        en=NoticeText(subject="Incident", body="Investigating."),
        link="https://status.example.test/incidents/1",
    )


def queued_for(factory: sessionmaker[Session], key: str) -> int:
    with factory() as session:
        record = enqueue_notice(session, a_notice(key), now=START)
        session.commit()
        return record.deliveries_queued


def test_email_subscriber_gets_only_the_confirmation_until_the_link_is_followed(
    api: Api, session_factory: sessionmaker[Session]
) -> None:
    answer = subscribe(api, component_ids=["market.btc-jpy"])
    assert answer.status_code == 202
    confirmation = api.smtp.handler.messages_to("kenji@example.test")[0]
    plain = confirmation.get_body(("plain",))
    assert plain is not None and "青い象" in str(plain.get_content())
    assert queued_for(session_factory, "before-confirming") == 0

    link = confirmation_link(api, "kenji@example.test")
    page = api.client.get(link)
    assert page.status_code == 200 and "<form method=\"post\"" in page.text
    assert queued_for(session_factory, "after-only-opening-the-page") == 0

    token = link.split("token=")[1]
    done = api.client.post("/api/notify/confirm", data={"token": token})
    assert done.status_code == 200 and "購読を確定しました" in done.text
    assert queued_for(session_factory, "after-confirming") == 1


@SQLITE_ONLY
def test_known_address_gets_the_same_answer_and_no_second_email_within_the_pause(
    api: Api,
) -> None:
    first = subscribe(api)
    again = subscribe(api, anti_phishing_phrase="attacker's phrase")
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert len(api.smtp.handler.messages_to("kenji@example.test")) == 1
    api.clock.advance(timedelta(minutes=11))
    subscribe(api, anti_phishing_phrase="赤い傘")
    newest = api.smtp.handler.messages_to("kenji@example.test")[-1].get_body(("plain",))
    assert newest is not None and "赤い傘" in str(newest.get_content())


@SQLITE_ONLY
def test_older_confirmation_link_stops_working_after_a_new_one_is_sent(api: Api) -> None:
    subscribe(api)
    old_link = confirmation_link(api, "kenji@example.test")
    api.clock.advance(timedelta(minutes=11))
    subscribe(api)
    refused = api.client.post(old_link)
    assert refused.status_code == 400 and "newer confirmation" in refused.text


def test_one_click_unsubscribe_from_the_message_header_stops_further_notices(
    api: Api, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        add_confirmed(session, 1)
        session.commit()
    queued_for(session_factory, "first")
    OutboxWorker(engine, api.settings, LINK_SECRET).run(until_idle=True)
    message = api.smtp.handler.messages_to("user0@example.test")[0]
    header_url = str(message["List-Unsubscribe"]).strip("<>")
    split = urlsplit(header_url)
    answer = api.client.post(
        f"{split.path}?{split.query}", content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200 and "配信を停止しました" in answer.text
    assert queued_for(session_factory, "second") == 0


@SQLITE_ONLY
def test_unsubscribe_link_opened_in_a_browser_asks_before_it_acts(
    api: Api, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        add_confirmed(session, 1, language="en")
        session.commit()
    queued_for(session_factory, "first")
    OutboxWorker(engine, api.settings, LINK_SECRET).run(until_idle=True)
    plain = api.smtp.handler.messages_to("user0@example.test")[0].get_body(("plain",))
    assert plain is not None
    link = link_in(str(plain.get_content()), "/api/notify/unsubscribe")
    page = api.client.get(link)
    assert page.status_code == 200 and "Stop Example Exchange status notices" in page.text
    assert queued_for(session_factory, "still-subscribed") == 1


@SQLITE_ONLY
def test_forged_link_gets_a_page_saying_what_to_do(api: Api) -> None:
    answer = api.client.get("/api/notify/unsubscribe?token=u.1.0.0.AAAAAAAAAAAAAAAAAAAAAA")
    assert answer.status_code == 400
    assert "open the link from the email again" in answer.text


@SQLITE_ONLY
def test_subscribe_is_limited_per_client_and_says_when_to_retry(api: Api) -> None:
    api.use(replace(api.settings, subscribe_requests_per_minute=2))
    assert subscribe(api, "a@example.test").status_code == 202
    assert subscribe(api, "b@example.test").status_code == 202
    refused = subscribe(api, "c@example.test")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert api.smtp.handler.messages_to("c@example.test") == []


@SQLITE_ONLY
def test_mail_server_down_answers_503_and_the_person_may_retry_at_once(
    api: Api, session_factory: sessionmaker[Session]
) -> None:
    down = replace(api.settings,
                   smtp=SmtpSettings(host="127.0.0.1", port=free_port(), timeout_s=2.0))
    api.use(down)
    refused = subscribe(api)
    assert refused.status_code == 503
    assert "try again" in refused.json()["error"]["message"]
    api.use(notify_settings(api.smtp))
    assert subscribe(api).status_code == 202
    assert len(api.smtp.handler.messages_to("kenji@example.test")) == 1


@SQLITE_ONLY
def test_invalid_subscription_says_what_was_wrong(api: Api) -> None:
    answer = subscribe(api, "not-an-address")
    assert answer.status_code == 422
    assert "not an email address" in answer.json()["error"]["message"]
    missing_phrase = api.client.post(SUBSCRIBE, json={"email": "x@example.test"})
    assert missing_phrase.status_code == 422
    assert "anti_phishing_phrase" in missing_phrase.json()["error"]["message"]


def test_webhook_subscription_shows_its_secret_once_and_is_confirmed_by_its_owner(
    api: Api, session_factory: sessionmaker[Session]
) -> None:
    with http_receiver() as receiver:
        body = {"url": receiver.url("/status"), "contact_email": "ops@partner.test",
                "anti_phishing_phrase": "green kite", "language": "en"}
        first = api.client.post("/api/notify/subscriptions/webhook", json=body)
        again = api.client.post("/api/notify/subscriptions/webhook", json=body)
    assert first.status_code == 202 and len(first.json()["signing_secret"]) >= 40
    assert again.json()["signing_secret"] is None
    assert queued_for(session_factory, "before") == 0
    link = confirmation_link(api, "ops@partner.test")
    api.client.post(link)
    with session_factory() as session:
        hook = session.scalars(select(Subscriber)).one()
        assert (hook.kind, hook.status) == ("webhook", "confirmed")
        assert hook.signing_secret.startswith("hgs1.")
        assert keys.open_signing_secret(keys.keyring_for(session), hook.address_digest,
                                        hook.signing_secret) == first.json()["signing_secret"]


def test_operators_list_and_remove_subscribers_and_the_removal_is_audited(
    api: Api, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        ids = add_confirmed(session, 3)
        session.commit()
    commander = provision_operator(session_factory, Role.INCIDENT_COMMANDER, now=START)
    listed = api.client.get("/api/notify/subscribers?limit=2", headers=commander.headers)
    assert listed.status_code == 200
    assert listed.json()["total"] == 3 and listed.json()["next_offset"] == 2
    removed = api.client.delete(f"/api/notify/subscribers/{ids[0]}?reason=bounces",
                                headers=commander.headers)
    assert removed.status_code == 200 and removed.json()["status"] == "unsubscribed"
    assert queued_for(session_factory, "after-removal") == 2
    with session_factory() as session:
        entries, _ = list_entries(session, action="notify.subscriber_removed")
        assert json.loads(entries[0].details_json)["reason"] == "bounces"
        assert entries[0].actor == f"operator:{commander.username}"


@SQLITE_ONLY
def test_only_subscribe_confirm_and_unsubscribe_are_public(api: Api) -> None:
    assert public_routes(notify_routes()) == {
        ("POST", "/api/notify/subscriptions/email"),
        ("POST", "/api/notify/subscriptions/webhook"),
        ("GET", "/api/notify/confirm"),
        ("POST", "/api/notify/confirm"),
        ("GET", "/api/notify/unsubscribe"),
        ("POST", "/api/notify/unsubscribe"),
    }


@SQLITE_ONLY
def test_each_role_is_allowed_or_refused_exactly_as_the_permission_table_says(
    api: Api, session_factory: sessionmaker[Session]
) -> None:
    operators = {role: provision_operator(session_factory, role, now=START) for role in Role}
    calls, mismatches = walk_permissions(
        api.client, notify_routes(), lambda role: operators[role].headers,
        path_values={"subscriber_id": "999", "notice_id": "999"},
    )
    assert [str(m) for m in mismatches] == []
    assert calls == 7 * len(Role)


@SQLITE_ONLY
def test_a_refused_address_in_the_smtp_server_keeps_the_subscriber_pending(
    engine: Engine, session_factory: sessionmaker[Session],
) -> None:
    handler = MailHandler(refuse={"gone@example.test": "550 no such user"})
    with smtp_server(handler) as smtp:
        app = create_app(Settings(database_url="unused", migrate_on_start=False),
                         engine=engine, clock=SteppingClock(START),
                         notify_settings=notify_settings(smtp), escalation_interval_s=None)
        with TestClient(app) as client:
            answer = client.post(SUBSCRIBE, json={"email": "gone@example.test",
                                                  "anti_phishing_phrase": "x"})
    assert answer.status_code == 503
    with session_factory() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        assert subscriber.status == "pending" and subscriber.confirmation_sent_at is None
