"""A real worker process killed (SIGKILL) mid-send, then restarted: every subscriber gets the
notice, exactly once, except the message in flight at the kill, which may arrive twice —
with the same Message-ID, so it is recognisable."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from notify_support import (
    LINK_SECRET,
    PUBLIC_URL,
    START,
    MailHandler,
    SmtpServer,
    add_confirmed,
    smtp_server,
    wait_for,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.session import make_engine, make_session_factory
from haltguard.notify.messages import delivery_message_id
from haltguard.notify.models import Delivery, Notice, NoticeKind, NoticeText
from haltguard.notify.service import enqueue_notice

SUBSCRIBERS = 40
LINK_DOMAIN = "status.example.test"


def start_worker(database_url: str, smtp: SmtpServer, senders: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HALTGUARD_DATABASE_URL": database_url,
        "HALTGUARD_SMTP_HOST": smtp.host,
        "HALTGUARD_SMTP_PORT": str(smtp.port),
        "HALTGUARD_SMTP_FROM": "status@example.test",
        "HALTGUARD_PUBLIC_URL": PUBLIC_URL,
        "HALTGUARD_NOTIFY_SECRET": LINK_SECRET.decode(),
        "HALTGUARD_NOTIFY_LEASE_S": "1",
        "HALTGUARD_NOTIFY_BATCH_MAX": "20",
        "HALTGUARD_NOTIFY_BACKOFF_BASE_S": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-c", "from haltguard.cli.notify import app; app()", "worker",
         "--until-idle", "--senders", str(senders)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def queue_notice(factory: sessionmaker[Session]) -> dict[int, str]:
    """Subscribers and a notice to them; answers each delivery's expected Message-ID."""
    notice = Notice(
        key="incident-9/update-2", kind=NoticeKind.INCIDENT_UPDATE,
        ja=NoticeText(subject="復旧作業中", body="復旧作業を続けています。"),
        en=NoticeText(subject="Recovery in progress", body="Recovery continues."),
        link=f"{PUBLIC_URL}/incidents/9",
    )
    with factory() as session:
        ids = add_confirmed(session, SUBSCRIBERS)
        record = enqueue_notice(session, notice, now=START)
        session.commit()
    return {
        subscriber_id: delivery_message_id(notice.key, record.id, subscriber_id, LINK_DOMAIN)
        for subscriber_id in ids
    }


def finish_with_a_new_worker(database_url: str, smtp: SmtpServer) -> None:
    restarted = start_worker(database_url, smtp, senders=2)
    _, errors = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, errors.decode()


def assert_all_sent(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        statuses = Counter(session.scalars(select(Delivery.status)))
    assert statuses == Counter({"sent": SUBSCRIBERS})


@pytest.mark.slow
def test_worker_killed_while_a_message_is_in_flight_loses_nothing_and_repeats_only_that_one(
    database_url: str, session_factory: sessionmaker[Session]
) -> None:
    expected = queue_notice(session_factory)
    handler = MailHandler(stall_at=15)
    with smtp_server(handler) as smtp:
        worker = start_worker(database_url, smtp, senders=1)
        try:
            wait_for(handler.stalled.is_set, timeout_s=30)
            in_flight = str(handler.received[-1].message["Message-ID"])
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        handler.release.set()
        finish_with_a_new_worker(database_url, smtp)
        counts = handler.message_id_counts()
    assert set(counts) == set(expected.values())
    assert {message_id: n for message_id, n in counts.items() if n != 1} == {in_flight: 2}
    assert_all_sent(session_factory)


@pytest.mark.slow
def test_worker_killed_at_an_arbitrary_moment_repeats_at_most_one_message_per_sender(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "notify.sqlite3"
    shutil.copyfile(sqlite_template, path)
    database_url = f"sqlite:///{path}"
    engine = make_engine(database_url)
    session_factory = make_session_factory(engine)
    expected = queue_notice(session_factory)
    handler = MailHandler()
    with smtp_server(handler) as smtp:
        worker = start_worker(database_url, smtp, senders=2)
        try:
            wait_for(lambda: handler.count() >= 17, timeout_s=30)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        finish_with_a_new_worker(database_url, smtp)
        counts = handler.message_id_counts()
    assert set(counts) == set(expected.values())
    assert set(counts.values()) <= {1, 2}
    assert sum(1 for n in counts.values() if n == 2) <= 2
    assert_all_sent(session_factory)
    engine.dispose()
