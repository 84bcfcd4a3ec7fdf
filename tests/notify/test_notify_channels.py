"""Webhooks and social channels through the outbox, against a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from notify_support import (
    LINK_SECRET,
    SQLITE_ONLY,
    START,
    add_confirmed,
    http_receiver,
    notify_settings,
    smtp_server,
)
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.notify.models import (
    ChannelCreate,
    Delivery,
    Language,
    Notice,
    NoticeKind,
    NoticeText,
)
from haltguard.notify.outbox import OutboxWorker
from haltguard.notify.service import add_channel, enqueue_notice
from haltguard.security.audit import list_entries


def maintenance_notice() -> Notice:
    return Notice(
        key="maintenance-4/announce", kind=NoticeKind.MAINTENANCE,
        affected_component_ids=["api.orders"],
        ja=NoticeText(subject="定期メンテナンスのお知らせ", body="3月5日 2:00〜4:00 JST"),
        en=NoticeText(subject="Scheduled maintenance", body="5 March 02:00-04:00 JST"),
        link="https://status.example.test/#maintenance-4",
    )


def test_webhook_receives_signed_json_with_a_delivery_id_stable_across_retries(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with http_receiver() as receiver, smtp_server() as smtp:
        receiver.statuses = [503]
        with session_factory() as session:
            add_confirmed(session, 1, kind="webhook", language="en",
                          address_format=receiver.url("/hook{index}"))
            enqueue_notice(session, maintenance_notice(), now=START)
            session.commit()
        stats = OutboxWorker(engine, notify_settings(smtp), LINK_SECRET).run(until_idle=True)
        posts = list(receiver.posts)
    assert (stats.retried, stats.sent) == (1, 1)
    assert len(posts) == 2 and posts[0].body == posts[1].body
    first, second = posts
    assert first.headers["X-Haltguard-Delivery"] == second.headers["X-Haltguard-Delivery"]
    document = second.json()
    assert document["delivery"] == second.headers["X-Haltguard-Delivery"]
    assert document["notice"]["subject"] == "Scheduled maintenance"
    assert document["notice"]["kind"] == "maintenance"
    assert document["notice"]["affected_component_ids"] == ["api.orders"]
    assert "/api/notify/unsubscribe?token=" in document["unsubscribe_url"]
    timestamp, signature = (
        part.split("=", 1)[1] for part in second.headers["X-Haltguard-Signature"].split(",")
    )
    expected = hmac.new(b"webhook-secret", f"{timestamp}.".encode() + second.body,
                        hashlib.sha256).hexdigest()
    assert signature == expected


@SQLITE_ONLY
def test_webhook_answering_a_client_error_fails_at_once_without_retries(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with http_receiver() as receiver, smtp_server() as smtp:
        receiver.statuses = [404]
        with session_factory() as session:
            add_confirmed(session, 1, kind="webhook", address_format=receiver.url("/gone"))
            enqueue_notice(session, maintenance_notice(), now=START)
            session.commit()
        stats = OutboxWorker(engine, notify_settings(smtp), LINK_SECRET).run(until_idle=True)
        assert len(receiver.posts) == 1
    assert (stats.failed, stats.retried) == (1, 0)
    with session_factory() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert delivery.status == "failed" and "404" in delivery.last_error


@SQLITE_ONLY
def test_operator_channel_posts_the_notice_through_apprise_in_its_language(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with http_receiver() as receiver, smtp_server() as smtp:
        url = f"json://127.0.0.1:{receiver.port}/social"
        with session_factory() as session:
            channel = add_channel(
                session,
                ChannelCreate(url=url, label="Mastodon @exchange", language=Language.JA,
                              component_ids=["api.orders"]),
                actor="operator:alice", now=START,
            )
            enqueue_notice(session, maintenance_notice(), now=START + timedelta(minutes=1))
            session.commit()
            entries, _ = list_entries(session, action="notify.channel_added")
            assert entries[0].target == f"subscriber:{channel.id}"
        stats = OutboxWorker(engine, notify_settings(smtp), LINK_SECRET).run(until_idle=True)
        posts = list(receiver.posts)
    assert stats.sent == 1 and len(posts) == 1
    document = posts[0].json()
    assert document["title"] == "定期メンテナンスのお知らせ"
    assert "3月5日 2:00〜4:00 JST" in document["message"]
    assert "https://status.example.test/#maintenance-4" in document["message"]
