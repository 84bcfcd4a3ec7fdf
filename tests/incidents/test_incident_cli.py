"""``haltguard incident`` against a real local server: API tokens, readable errors."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from haltguard.cli.main import app as haltguard_cli
from haltguard.responders.service import ManualClock
from haltguard.security.permissions import Role
from haltguard.security.testing import provision_operator


def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(haltguard_cli, ["incident", *args],
                                env={"COLUMNS": "250", **env})
    return result.exit_code, " ".join(result.output.split())  # wrapping depends on the tty


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_api_token_in_the_environment_is_enough(
    server_url: str, session_factory: sessionmaker[Session], clock: ManualClock
) -> None:
    viewer = provision_operator(session_factory, Role.VIEWER, now=clock.now())
    responder = provision_operator(session_factory, Role.RESPONDER, now=clock.now())
    env = {"HALTGUARD_URL": server_url, "HALTGUARD_TOKEN": responder.api_token}
    code, output = _run(env, "open", "DNS failing", "--category", "network", "--severity",
                        "SEV3")
    assert code == 0, output
    assert "INC-1 DNS failing" in output
    code, output = _run({**env, "HALTGUARD_TOKEN": viewer.api_token}, "list")
    assert code == 0 and "DNS failing" in output
    code, output = _run({**env, "HALTGUARD_TOKEN": viewer.api_token}, "comment", "1", "hi")
    assert code == 1
    assert "your role viewer does not allow incident.comment" in output
    assert "permission_denied, HTTP 403" in output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_api_errors_are_shown_with_their_code_and_message(
    server_url: str, session_factory: sessionmaker[Session], clock: ManualClock
) -> None:
    operator = provision_operator(session_factory, Role.INCIDENT_COMMANDER, now=clock.now())
    env = {"HALTGUARD_URL": server_url, "HALTGUARD_TOKEN": operator.api_token}
    code, output = _run(env, "show", "42")
    assert code == 1
    assert "no incident 42 [incident_not_found, HTTP 404]" in output


def test_an_unreachable_service_is_explained(tmp_path: object) -> None:
    env = {"HALTGUARD_URL": "http://127.0.0.1:9", "HALTGUARD_TOKEN": "x",
           "HALTGUARD_CONFIG_DIR": str(tmp_path)}
    code, output = _run(env, "list")
    assert code == 1
    assert "cannot reach the operations service at http://127.0.0.1:9" in output
    assert "HALTGUARD_URL" in output


def test_an_update_with_nothing_to_change_is_refused_before_calling(tmp_path: object) -> None:
    env = {"HALTGUARD_URL": "http://127.0.0.1:9", "HALTGUARD_CONFIG_DIR": str(tmp_path)}
    code, output = _run(env, "update", "1")
    assert code == 1 and "nothing to change" in output
