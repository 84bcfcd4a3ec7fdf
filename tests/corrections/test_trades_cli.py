"""``haltguard trades ...`` against a running operations service over a real venue: the
walk-through of docs/corrections.md, command by command."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from corrections_support import TEST_POLICY, Story, flash_crash
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from haltguard.app.operations import create_app
from haltguard.cli.main import app
from haltguard.corrections.settings import CorrectionsSettings
from haltguard.db.session import session_scope
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.incidents import flows as incident_flows
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.responders.service import ManualClock
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.settings import Settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
runner = CliRunner()
SERVER_START_S_MAX = 10.0


@pytest.fixture
def served(engine: Engine, session_factory: sessionmaker[Session], tmp_path: Path
           ) -> Iterator[tuple[str, dict[str, str], Story, int]]:
    runtime = VenueRuntime(tmp_path / "venue").start()
    story = flash_crash(runtime)
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY, encoding="utf-8")
    clock = ManualClock(datetime.now(UTC))
    with session_scope(session_factory) as session:
        incident_id = incident_flows.open_incident(
            session, IncidentCreate(title="Flash crash", category=Category.SOFTWARE_BUG,
                                    severity=Severity.SEV1, affected_markets=["BTC-JPY"]),
            actor="carol", clock=clock).id
    operations = create_app(
        Settings(database_url=str(engine.url), data_dir=tmp_path / "venue",
                 migrate_on_start=False),
        venue_control=InProcessVenueControl(runtime), clock=clock, engine=engine,
        security_settings=fast_test_settings(), escalation_interval_s=None,
        corrections_settings=CorrectionsSettings(journal_dir=tmp_path / "venue",
                                                 policy_file=policy),
    )
    tokens = {name: provision_operator(session_factory, Role.INCIDENT_COMMANDER,
                                       username=name, now=clock.now()).api_token
              for name in ("carol", "dave")}
    server = uvicorn.Server(uvicorn.Config(operations, host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S_MAX
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", tokens, story, incident_id
    finally:
        server.should_exit = True
        thread.join(SERVER_START_S_MAX)
        runtime.stop()


def _run(url: str, token: str, *args: str) -> Result:
    result = runner.invoke(app, ["trades", "--url", url, "--token", token, *args])
    assert result.exit_code == 0, result.output
    return result


def test_the_walk_through_reviews_busts_with_four_eyes_and_shows_the_notices(
    served: tuple[str, dict[str, str], Story, int],
) -> None:
    url, tokens, story, incident = served
    window = ["--from", story.crash_from.isoformat(), "--to", story.crash_to.isoformat()]
    first, second = story.crash_trade_ids

    review = _run(url, tokens["carol"], "review", *window)
    dry = _run(url, tokens["carol"], "bust", "--incident", str(incident), "--reason",
               "flash crash", *window, "--dry-run")
    proposed = _run(url, tokens["carol"], "bust", "--incident", str(incident), "--reason",
                    "flash crash", *window)
    digest = next(line.split()[-1] for line in proposed.output.splitlines()
                  if "digest:" in line)
    refused = runner.invoke(app, ["trades", "--url", url, "--token", tokens["carol"],
                                  "approve", "1", "--digest", digest])
    approved = _run(url, tokens["dave"], "approve", "1", "--digest", digest)
    notices = _run(url, tokens["dave"], "notices", "1", "--account", "4")
    plan = _run(url, tokens["carol"], "rollback-plan", "--incident", str(incident),
                "--reason", "undo the crash", "--seq", str(story.before_crash_seq))

    assert "erroneous / 異常約定: 2" in review.output
    assert f"trade {first} BTC-JPY" in review.output and "9000 bps off" in review.output
    assert "DRY RUN" in dry.output and "correction 1: proposed" in proposed.output
    assert refused.exit_code != 0 and "four_eyes_required" in refused.output
    assert "correction 1: applied" in approved.output
    assert "お取引の訂正のお知らせ" in notices.output and f"trade {second}" in notices.output
    # the two crash trades are busted already: only the steady one after them is left
    assert "1 resting orders cancelled, 1 trades busted" in plan.output
    assert "DRY RUN" in plan.output
