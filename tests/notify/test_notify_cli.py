"""``haltguard notify ...`` on a real database file."""

from __future__ import annotations

import getpass
import json
import shutil
from pathlib import Path

import pytest
from notify_support import LINK_SECRET, START, add_confirmed, smtp_server
from sqlalchemy import select
from typer.testing import CliRunner

from haltguard.cli.main import app
from haltguard.db.session import make_engine, make_session_factory
from haltguard.notify.models import Notice, NoticeKind, NoticeText, Subscriber
from haltguard.notify.service import enqueue_notice
from haltguard.security.audit import list_entries


@pytest.fixture
def database(sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "haltguard.sqlite3"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("HALTGUARD_DATABASE_URL", url)
    return url


def test_operator_adds_lists_and_removes_a_social_channel_and_each_change_is_audited(
    database: str,
) -> None:
    runner = CliRunner()
    added = runner.invoke(app, ["notify", "channel-add", "json://127.0.0.1:9/social",
                                "--label", "Discord #status", "--language", "en",
                                "--component", "market:BTC/JPY"])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["notify", "subscribers", "--kind", "apprise"])
    assert "Discord #status" in listed.output and "market:BTC/JPY" in listed.output
    removed = runner.invoke(app, ["notify", "remove", "1", "--reason", "account closed"])
    assert removed.exit_code == 0, removed.output
    engine = make_engine(database)
    with make_session_factory(engine)() as session:
        assert session.scalars(select(Subscriber.status)).one() == "unsubscribed"
        entries, _ = list_entries(session, newest_first=False)
        actions = [(e.action, e.actor) for e in entries]
        assert json.loads(entries[-1].details_json)["reason"] == "account closed"
    engine.dispose()
    actor = f"cli:{getpass.getuser()}"
    assert actions == [("notify.channel_added", actor), ("notify.subscriber_removed", actor)]
    again = runner.invoke(app, ["notify", "channel-add", "json://127.0.0.1:9/social",
                                "--label", "Discord #status"])
    assert "added channel 1 " in again.output


def test_cli_refuses_a_channel_apprise_does_not_understand(database: str) -> None:
    result = CliRunner().invoke(app, ["notify", "channel-add", "nosuch://x", "--label", "x"])
    assert result.exit_code == 1
    assert "apprise does not understand" in result.output


def test_worker_delivers_until_idle_and_notices_shows_the_counts(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database)
    with make_session_factory(engine)() as session:
        add_confirmed(session, 3)
        enqueue_notice(session, Notice(
            key="incident-1/update-1", kind=NoticeKind.INCIDENT_UPDATE,
            ja=NoticeText(subject="障害", body="調査中"),
            en=NoticeText(subject="Incident", body="Investigating"),
            link="https://status.example.test/incidents/1",
        ), now=START)
        session.commit()
    engine.dispose()
    with smtp_server() as smtp:
        monkeypatch.setenv("HALTGUARD_SMTP_HOST", smtp.host)
        monkeypatch.setenv("HALTGUARD_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("HALTGUARD_NOTIFY_SECRET", LINK_SECRET.decode())
        result = CliRunner().invoke(app, ["notify", "worker", "--until-idle", "--senders", "1"])
        assert result.exit_code == 0, result.output
        assert smtp.handler.count() == 3
    assert "sent 3" in result.output
    table = CliRunner().invoke(app, ["notify", "notices"])
    assert "incident-1/update-1" in table.output and "0/0/3/0/0" in table.output


def test_worker_with_an_unusable_setting_says_which_and_how_to_fix_it(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HALTGUARD_NOTIFY_LEASE_S", "0")
    result = CliRunner().invoke(app, ["notify", "worker", "--until-idle"])
    assert result.exit_code == 1
    assert "HALTGUARD_NOTIFY_LEASE_S must be 1..3600, got 0" in result.output
