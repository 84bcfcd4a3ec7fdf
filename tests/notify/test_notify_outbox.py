"""The outbox end to end against a real SMTP server: fan-out, exactly one message per
subscriber, retries with backoff, bounded attempts, claims that never overlap."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from notify_support import (
    LINK_SECRET,
    SQLITE_ONLY,
    START,
    MailHandler,
    add_confirmed,
    notify_settings,
    smtp_server,
    wait_for,
)
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from haltguard.notify.models import (
    Delivery,
    Notice,
    NoticeKind,
    NoticeText,
    Subscriber,
)
from haltguard.notify.outbox import OutboxStore, OutboxWorker, backoff_s
from haltguard.notify.service import enqueue_notice, outbox_counts
from haltguard.security.audit import list_entries


def a_notice(key: str = "incident-7/update-1", components: list[str] | None = None) -> Notice:
    return Notice(
        key=key,
        kind=NoticeKind.INCIDENT_UPDATE,
        affected_component_ids=components or [],
        ja=NoticeText(subject="【障害】BTC/JPY の取引を停止しました",
                      body="BTC/JPY の取引を一時停止しました。\n原因を調査しています。"),
        en=NoticeText(subject="[Incident] BTC/JPY trading halted",
                      body="We halted BTC/JPY trading.\nWe are investigating the cause."),
        link="https://status.example.test/incidents/7",
    )


def queue(factory: sessionmaker[Session], notice: Notice) -> int:
    with factory() as session:
        record = enqueue_notice(session, notice, now=START)
        session.commit()
    return record.deliveries_queued


def test_notice_reaches_every_confirmed_subscriber_exactly_once(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        add_confirmed(session, 30, language="ja")
        add_confirmed(session, 30, language="en", start=30)
        session.commit()
    assert queue(session_factory, a_notice()) == 60
    with smtp_server(MailHandler(pipelining=True)) as smtp:
        stats = OutboxWorker(engine, notify_settings(smtp), LINK_SECRET).run(until_idle=True)
        counts = smtp.handler.message_id_counts()
        assert stats.sent == 60
        assert len(counts) == 60 and set(counts.values()) == {1}
        japanese = smtp.handler.messages_to("user3@example.test")[0]
        english = smtp.handler.messages_to("user33@example.test")[0]
    assert japanese["Subject"] == "【障害】BTC/JPY の取引を停止しました"
    assert english["Subject"] == "[Incident] BTC/JPY trading halted"
    with session_factory() as session:
        assert outbox_counts(session).sent == 60


def test_enqueueing_the_same_notice_twice_queues_nothing_more(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        add_confirmed(session, 5)
        first = enqueue_notice(session, a_notice(), now=START)
        again = enqueue_notice(session, a_notice(), now=START + timedelta(minutes=1))
        session.commit()
        assert (first.created, again.created) == (True, False)
        assert first.id == again.id and again.deliveries_queued == 5
        assert len(session.scalars(select(Delivery)).all()) == 5
        entries, total = list_entries(session, action="notify.notice_queued")
        assert total == 1 and entries[0].target == "notice:incident-7/update-1"


def test_notice_goes_to_subscribers_of_an_affected_component_or_of_everything(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        everything = add_confirmed(session, 2)
        btc = add_confirmed(session, 2, component_ids=["market.btc-jpy"], start=10)
        eth = add_confirmed(session, 2, component_ids=["market.eth-jpy"], start=20)
        session.commit()
        enqueue_notice(session, a_notice("n-btc", ["market.btc-jpy", "api.orders"]), now=START)
        enqueue_notice(session, a_notice("n-all"), now=START)
        session.commit()
        by_notice: dict[str, set[int]] = {}
        for key, subscriber_id in session.execute(
            select(Delivery.notice_id, Delivery.subscriber_id)
        ):
            by_notice.setdefault(str(key), set()).add(subscriber_id)
    notice_ids = sorted(by_notice)
    assert by_notice[notice_ids[0]] == set(everything) | set(btc)
    assert by_notice[notice_ids[1]] == set(everything) | set(btc) | set(eth)


def test_unconfirmed_and_unsubscribed_subscribers_are_not_queued(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        ids = add_confirmed(session, 3)
        session.execute(update(Subscriber).where(Subscriber.id == ids[0]).values(status="pending"))
        session.execute(
            update(Subscriber).where(Subscriber.id == ids[1]).values(status="unsubscribed")
        )
        record = enqueue_notice(session, a_notice(), now=START)
        session.commit()
        assert record.deliveries_queued == 1
        assert session.scalars(select(Delivery.subscriber_id)).all() == [ids[2]]


def test_subscriber_who_leaves_after_fan_out_is_skipped(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        ids = add_confirmed(session, 3)
        enqueue_notice(session, a_notice(), now=START)
        session.execute(
            update(Subscriber).where(Subscriber.id == ids[0]).values(status="unsubscribed")
        )
        session.commit()
    with smtp_server() as smtp:
        stats = OutboxWorker(engine, notify_settings(smtp), LINK_SECRET).run(until_idle=True)
        assert smtp.handler.messages_to("user0@example.test") == []
        assert smtp.handler.count() == 2
    assert (stats.sent, stats.skipped) == (2, 1)


@pytest.mark.parametrize("pipelining", [False, True], ids=["step-by-step", "pipelined"])
def test_deferred_email_is_retried_and_refused_address_fails_without_retry(
    engine: Engine, session_factory: sessionmaker[Session], pipelining: bool
) -> None:
    with session_factory() as session:
        add_confirmed(session, 4)
        enqueue_notice(session, a_notice(), now=START)
        session.commit()
    handler = MailHandler(refuse={"user1@example.test": "550 no such user"}, defer_first=2,
                          pipelining=pipelining)
    with smtp_server(handler) as smtp:
        stats = OutboxWorker(engine, notify_settings(smtp, senders=1), LINK_SECRET).run(
            until_idle=True
        )
        assert sorted(r.recipients[0] for r in handler.received) == [
            "user0@example.test", "user2@example.test", "user3@example.test"
        ]
    assert (stats.sent, stats.failed, stats.retried) == (3, 1, 2)
    with session_factory() as session:
        refused = session.scalars(
            select(Delivery).join(Subscriber).where(Subscriber.address == "user1@example.test")
        ).one()
        assert refused.status == "failed" and refused.attempts == 1
        assert "550" in refused.last_error


def test_attempts_are_bounded_then_the_delivery_fails_with_its_last_error(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        add_confirmed(session, 1)
        enqueue_notice(session, a_notice(), now=START)
        session.commit()
    handler = MailHandler(defer_first=100)
    with smtp_server(handler) as smtp:
        settings = notify_settings(smtp, senders=1, attempts_max=3)
        stats = OutboxWorker(engine, settings, LINK_SECRET).run(until_idle=True)
    assert handler.data_calls == 3
    assert (stats.retried, stats.failed) == (2, 1)
    with session_factory() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.attempts) == ("failed", 3)
        assert "451" in delivery.last_error


def test_backoff_doubles_from_the_base_and_stops_at_the_maximum() -> None:
    assert [backoff_s(n, 30, 600) for n in range(1, 7)] == [30, 60, 120, 240, 480, 600]
    assert backoff_s(200, 30, 3600) == 3600


def test_failed_attempt_waits_for_its_backoff_before_the_next_claim(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        add_confirmed(session, 1)
        enqueue_notice(session, a_notice(), now=START)
        session.commit()
    handler = MailHandler(defer_first=1)
    with smtp_server(handler) as smtp:
        settings = notify_settings(smtp, senders=1, backoff_base_s=60, backoff_max_s=600)
        clock = [START]
        worker = OutboxWorker(engine, settings, LINK_SECRET, now=lambda: clock[0])
        store = worker.store
        token, rows = store.claim(START, 10)
        assert len(rows) == 1
        from haltguard.notify.channels import TransientError

        worker._settle(rows[0], token, TransientError("451 try again later"))
        assert store.claim(START + timedelta(seconds=59), 10)[1] == []
        assert len(store.claim(START + timedelta(seconds=60), 10)[1]) == 1


def test_concurrent_claims_never_hand_one_row_to_two_workers(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        add_confirmed(session, 300)
        enqueue_notice(session, a_notice(), now=START)
        session.commit()
    with smtp_server() as smtp:
        store = OutboxStore(engine, notify_settings(smtp))
    claimed: list[list[int]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def claim_all(slot: int) -> None:
        barrier.wait()
        while True:
            _, rows = store.claim(START, 7)
            if not rows:
                return
            claimed[slot].extend(row.id for row in rows)

    threads = [threading.Thread(target=claim_all, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [row for rows in claimed for row in rows]
    assert len(every) == 300 and len(set(every)) == 300


def test_row_of_a_dead_worker_returns_after_its_lease_and_the_old_claim_cannot_finish_it(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        add_confirmed(session, 1)
        enqueue_notice(session, a_notice(), now=START)
        session.commit()
    with smtp_server() as smtp:
        store = OutboxStore(engine, notify_settings(smtp, lease_s=30))
    dead_token, rows = store.claim(START, 10)
    assert len(rows) == 1
    assert store.release_expired(START + timedelta(seconds=29)) == 0
    assert store.claim(START + timedelta(seconds=29), 10)[1] == []
    assert store.release_expired(START + timedelta(seconds=30)) == 1
    new_token, again = store.claim(START + timedelta(seconds=30), 10)
    assert [row.id for row in again] == [rows[0].id] and again[0].attempts == 2
    from haltguard.notify.models import DeliveryStatus

    assert not store.finish(rows[0].id, dead_token, DeliveryStatus.SENT, START)
    assert store.finish(rows[0].id, new_token, DeliveryStatus.SENT, START)


@pytest.mark.parametrize("language", ["ja", "en"])
def test_row_claimed_the_last_allowed_time_by_a_dead_worker_fails(
    engine: Engine, session_factory: sessionmaker[Session], language: str
) -> None:
    with session_factory() as session:
        add_confirmed(session, 1, language=language)
        enqueue_notice(session, a_notice(), now=START)
        session.commit()
    with smtp_server() as smtp:
        store = OutboxStore(engine, notify_settings(smtp, lease_s=10, attempts_max=2))
    moment = START
    for _ in range(2):
        assert len(store.claim(moment, 10)[1]) == 1
        moment += timedelta(seconds=10)
        store.release_expired(moment)
    with session_factory() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.attempts) == ("failed", 2)


def test_notice_is_not_queued_when_the_callers_transaction_rolls_back(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        add_confirmed(session, 3)
        session.commit()
        enqueue_notice(session, a_notice(), now=START)
        session.rollback()
        assert session.scalars(select(Delivery)).all() == []
        assert enqueue_notice(session, a_notice(), now=START).created


def test_two_publishers_racing_with_one_key_queue_the_notice_once(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        add_confirmed(session, 20)
        session.commit()
    barrier = threading.Barrier(2)
    created: list[bool] = []

    def publish() -> None:
        with session_factory() as session:
            barrier.wait()
            record = enqueue_notice(session, a_notice(), now=START)
            session.commit()
            created.append(record.created)

    threads = [threading.Thread(target=publish) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(created) == [False, True]
    with session_factory() as session:
        assert len(session.scalars(select(Delivery)).all()) == 20


@SQLITE_ONLY
def test_a_started_worker_delivers_in_the_background_until_stopped(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with smtp_server() as smtp:
        worker = OutboxWorker(engine, notify_settings(smtp), LINK_SECRET)
        assert not worker.running
        worker.start()
        try:
            assert worker.running
            with pytest.raises(RuntimeError, match="already started"):
                worker.start()
            with session_factory() as session:
                add_confirmed(session, 3)
                enqueue_notice(session, a_notice(), now=START)
                session.commit()
            wait_for(lambda: smtp.handler.count() == 3)
        finally:
            assert worker.stop(timeout_s=5.0)
        assert not worker.running and worker.stats.sent == 3
        assert worker.stop()  # twice is fine
        with pytest.raises(RuntimeError, match="or stopped; make a new one"):
            worker.start()
