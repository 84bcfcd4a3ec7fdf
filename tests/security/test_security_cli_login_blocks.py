"""``haltguard operator login-blocks list|add|lift`` against the operations API served by
uvicorn on a real port: the blocks live in the running service, so the CLI must reach it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from security_helpers import SQLITE_ONLY, ManualNow, build_app
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from haltguard.cli.main import app as cli
from haltguard.db.session import session_scope
from haltguard.security import audit
from haltguard.security.config import SecuritySettings
from haltguard.security.events import SecurityEvent
from haltguard.security.permissions import Role
from haltguard.security.testing import ProvisionedOperator, provision_operator

pytestmark = SQLITE_ONLY

SERVER_START_S_MAX = 10.0
LOCAL_ADDRESS = "127.0.0.1"
OTHER_ADDRESS = "203.0.113.9"


@pytest.fixture
def live_url(session_factory: sessionmaker[Session], settings: SecuritySettings,
             now: ManualNow) -> Iterator[str]:
    app = build_app(session_factory, settings, now)
    server = uvicorn.Server(uvicorn.Config(app, host=LOCAL_ADDRESS, port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S_MAX
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://{LOCAL_ADDRESS}:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(SERVER_START_S_MAX)


@pytest.fixture
def admin(session_factory: sessionmaker[Session], settings: SecuritySettings,
          now: ManualNow) -> ProvisionedOperator:
    return provision_operator(session_factory, Role.ADMIN, username="root.admin",
                              settings=settings, now=now())


def blocks(live_url: str, who: ProvisionedOperator, tmp_path: Path,
           *args: str) -> tuple[int, str]:
    """``haltguard operator login-blocks ARGS`` as ``who``, the token read from a file."""
    token_file = tmp_path / f"{who.username}.token"
    token_file.write_text(who.api_token + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["operator", "login-blocks", "--url", live_url, "--token-file", str(token_file),
              *args],
        env={"COLUMNS": "250", "HALTGUARD_CONFIG_DIR": str(tmp_path / "config"),
             "HALTGUARD_TOKEN": None},
    )
    return result.exit_code, " ".join(result.output.split())


def login_status(live_url: str) -> int:
    """What the login route answers this machine's address for a wrong guess."""
    return httpx.post(f"{live_url}/api/auth/login", json={
        "username": "guess", "password": "Winter2026!", "totp_code": "000000"}).status_code


def test_an_admin_blocks_lists_and_lifts_an_address_from_the_terminal(
    *, live_url: str, admin: ProvisionedOperator, tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    code, output = blocks(live_url, admin, tmp_path, "list")
    assert code == 0 and "0 in force" in output, output
    assert login_status(live_url) == 401

    code, output = blocks(live_url, admin, tmp_path, "add", LOCAL_ADDRESS, "--duration-s",
                          "3600", "--reason", "guessing all night")
    assert code == 0, output
    assert f"address:{LOCAL_ADDRESS} blocked from logging in until" in output
    assert login_status(live_url) == 429

    code, output = blocks(live_url, admin, tmp_path, "list")
    assert code == 0 and "1 in force" in output, output
    assert f"address:{LOCAL_ADDRESS}" in output and "guessing all night" in output
    code, output = blocks(live_url, admin, tmp_path, "--json", "list")
    [hold] = json.loads(output)["items"]
    assert (hold["key"], hold["kind"]) == (f"address:{LOCAL_ADDRESS}", "block")
    assert hold["reason"] == "guessing all night (by operator:root.admin)"

    code, output = blocks(live_url, admin, tmp_path, "lift", f"address:{LOCAL_ADDRESS}",
                          "--reason", "it was our own monitoring")
    assert code == 0 and f"lifted: address:{LOCAL_ADDRESS} (block)" in output, output
    assert login_status(live_url) == 401
    assert "0 in force" in blocks(live_url, admin, tmp_path, "list")[1]
    with session_scope(session_factory) as session:
        [entry], _ = audit.list_entries(session, action=SecurityEvent.LOGIN_HOLD_LIFTED)
        assert entry.actor == "operator:root.admin"
        assert entry.target == f"address:{LOCAL_ADDRESS}"
        assert audit.entry_details(entry)["reason"] == "it was our own monitoring"


def test_login_blocks_commands_say_what_was_wrong_and_change_nothing(
    *, live_url: str, admin: ProvisionedOperator, tmp_path: Path,
    session_factory: sessionmaker[Session], settings: SecuritySettings, now: ManualNow,
) -> None:
    code, output = blocks(live_url, admin, tmp_path, "add", "not-an-address", "--duration-s",
                          "60", "--reason", "x")
    assert code == 1 and "not an IP address" in output, output
    code, output = blocks(live_url, admin, tmp_path, "lift", f"address:{OTHER_ADDRESS}",
                          "--reason", "x")
    assert code == 1 and "HTTP 404" in output, output
    commander = provision_operator(session_factory, Role.INCIDENT_COMMANDER,
                                   username="kenji.ic", settings=settings, now=now())
    blocks(live_url, admin, tmp_path, "add", OTHER_ADDRESS, "--duration-s", "60",
           "--reason", "guessing")
    code, output = blocks(live_url, commander, tmp_path, "lift", f"address:{OTHER_ADDRESS}",
                          "--reason", "x")
    assert code == 1 and "HTTP 403" in output, output
    code, output = blocks(live_url, commander, tmp_path, "list")
    assert code == 0 and f"address:{OTHER_ADDRESS}" in output and "1 in force" in output


def test_login_blocks_without_a_running_service_says_how_to_reach_it(
    admin: ProvisionedOperator, tmp_path: Path,
) -> None:
    code, output = blocks("http://127.0.0.1:9", admin, tmp_path, "list")
    assert code == 1
    assert "cannot reach the operations service at http://127.0.0.1:9" in output
    assert "HALTGUARD_URL" in output
