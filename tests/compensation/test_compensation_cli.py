"""``haltguard compensation ...`` against a running operations service over a real venue: the
documented walk-through, command by command (docs/compensation.md)."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from comp_service_support import ACCOUNTS, REFERENCE, REFUSED_ACCOUNT, Setup
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from haltguard.app.operations import create_app
from haltguard.cli.main import app
from haltguard.notify.settings import NotifySettings
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.settings import Settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
runner = CliRunner()
SERVER_START_S_MAX = 10.0


@pytest.fixture
def served(
    engine: Engine, session_factory: sessionmaker[Session], setup: Setup
) -> Iterator[tuple[str, dict[str, str]]]:
    """The operations service on a free port; tokens of a proposer and an approver."""
    operations = create_app(
        Settings(database_url=str(engine.url), data_dir=setup.settings.journal_dir,
                 migrate_on_start=False),
        venue_control=setup.venue, clock=setup.clock, engine=engine,
        security_settings=fast_test_settings(), escalation_interval_s=None,
        notify_settings=NotifySettings(smtp=setup.mailbox.smtp),
        compensation_settings=setup.settings,
    )
    tokens = {name: provision_operator(session_factory, role, username=name,
                                       now=setup.clock.now()).api_token
              for name, role in (("alice", Role.RESPONDER), ("carol", Role.INCIDENT_COMMANDER))}
    server = uvicorn.Server(uvicorn.Config(operations, host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S_MAX
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", tokens
    server.should_exit = True
    thread.join(SERVER_START_S_MAX)


def _cli(served: tuple[str, dict[str, str]], who: str, *args: str) -> Result:
    url, tokens = served
    result = runner.invoke(app, ["compensation", *args],
                           env={"HALTGUARD_URL": url, "HALTGUARD_TOKEN": tokens[who],
                                "COLUMNS": "200"})
    return result


def test_the_walk_through_from_policies_to_statements(
    served: tuple[str, dict[str, str]], setup: Setup, tmp_path: Path
) -> None:
    listed = _cli(served, "alice", "policies")
    assert listed.exit_code == 0, listed.output
    assert "btc-asset-loss" in listed.output and "保有数量" in listed.output

    reference = f"{REFERENCE['name']}={REFERENCE['csv']},{REFERENCE['from_time']}," \
                f"{REFERENCE['to_time']}"
    proposed = _cli(served, "alice", "run", "--incident", str(setup.incident_id),
                    "--policy", "btc-loss.yaml", "--policy", "goodwill.yaml",
                    "--cutoff-seq", str(setup.cutoff_seq), "--reference", reference,
                    "--from", setup.now.isoformat(),
                    "--to", (setup.now + timedelta(hours=1)).isoformat())
    assert proposed.exit_code == 0, proposed.output
    assert "run 1 " in proposed.output and "15000001.250" in proposed.output
    digest = proposed.output.split("--digest ")[1].split("`")[0].strip()

    refused = _cli(served, "alice", "approve", "1", "--digest", digest)
    assert refused.exit_code == 1 and "permission_denied" in refused.output
    approved = _cli(served, "carol", "approve", "1", "--digest", digest)
    assert approved.exit_code == 0, approved.output
    assert "approved / 承認しました" in approved.output

    explained = _cli(served, "alice", "explain", str(REFUSED_ACCOUNT), "--run", "1")
    assert explained.exit_code == 0, explained.output
    assert "goodwill-jpy" in explained.output and "qty_minor=10000000000" in explained.output

    paid = _cli(served, "carol", "pay", "1")
    assert paid.exit_code == 0, paid.output
    assert f"run 1 paid / 支払い完了: {ACCOUNTS} lines" in paid.output
    again = _cli(served, "carol", "pay", "1")
    assert again.exit_code == 1 and "paid in full" in again.output

    contacts = tmp_path / "contacts.csv"
    contacts.write_text(f"account,email,language\n{REFUSED_ACCOUNT},three@example.test,ja\n",
                        encoding="utf-8")
    told = _cli(served, "carol", "statements", "1", "--contacts", str(contacts))
    assert told.exit_code == 0, told.output
    assert "1 sent" in told.output
    assert setup.mailbox.to("three@example.test")
    shown = _cli(served, "alice", "statements", "1", "--account", "7")
    assert shown.exit_code == 0 and "口座番号 7" in shown.output and "account 7" in shown.output

    out = tmp_path / "run-1.csv"
    exported = _cli(served, "alice", "export", "1", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    with out.open(encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == ACCOUNTS

    shown_run = _cli(served, "alice", "show", "1")
    assert shown_run.exit_code == 0 and "paid" in shown_run.output
