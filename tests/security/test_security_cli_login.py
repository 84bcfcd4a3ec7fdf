"""``haltguard operator enable/unlock`` end a failed-login wait on a real SQLite file, and
``haltguard incident login`` takes its password from a prompt, a file or the environment,
never needing it on the command line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from security_helpers import SQLITE_ONLY
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from haltguard.cli.main import app

PASSWORD = "a long enough passphrase\n"
LOCKED_UNTIL = datetime(2999, 1, 1, tzinfo=UTC)

pytestmark = SQLITE_ONLY


@pytest.fixture
def runner(database_url: str, tmp_path: Path) -> CliRunner:
    return CliRunner(env={"HALTGUARD_DATABASE_URL": database_url, "COLUMNS": "200",
                          "HALTGUARD_DATA_DIR": str(tmp_path),
                          "HALTGUARD_CONFIG_DIR": str(tmp_path / "config")})


def run(runner: CliRunner, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


def locked_operator(runner: CliRunner, database_url: str) -> None:
    code, output = run(runner, "operator", "create", "akiko", "--display-name", "Akiko Sato",
                       "--email", "akiko@example.com", "--role", "responder",
                       "--password-stdin", stdin=PASSWORD)
    assert code == 0, output
    with create_engine(database_url).begin() as connection:
        connection.execute(text("UPDATE operators SET failed_logins = 9, locked_until = :until "
                                "WHERE username = 'akiko'"), {"until": LOCKED_UNTIL})


def lock_columns(database_url: str) -> tuple[int, object]:
    with create_engine(database_url).connect() as connection:
        row = connection.execute(text(
            "SELECT failed_logins, locked_until FROM operators WHERE username = 'akiko'")).one()
    return int(row[0]), row[1]


def test_enable_clears_the_lockout_of_an_operator_who_was_not_disabled(
    runner: CliRunner, database_url: str,
) -> None:
    locked_operator(runner, database_url)
    code, output = run(runner, "operator", "enable", "akiko")
    assert code == 0, output
    assert lock_columns(database_url) == (0, None)
    code, output = run(runner, "audit", "list", "--action", "operator.unlocked")
    assert code == 0 and "cli:" in output, output


def test_unlock_ends_the_failed_login_wait(runner: CliRunner, database_url: str) -> None:
    locked_operator(runner, database_url)
    code, output = run(runner, "operator", "unlock", "akiko")
    assert code == 0 and "may log in again" in output, output
    assert lock_columns(database_url) == (0, None)


def test_incident_login_without_a_terminal_asks_for_a_file_or_the_environment(
    runner: CliRunner,
) -> None:
    code, output = run(runner, "incident", "--url", "http://127.0.0.1:9", "login",
                       "-u", "akiko", "--totp", "123456")
    assert code == 1
    assert "--password-file" in output and "HALTGUARD_PASSWORD" in output


def test_incident_login_reads_the_password_from_a_file(
    runner: CliRunner, tmp_path: Path,
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD, encoding="utf-8")
    code, output = run(runner, "incident", "--url", "http://127.0.0.1:9", "login",
                       "-u", "akiko", "--totp", "123456", "--password-file", str(secret))
    assert code == 1 and "cannot reach the operations service" in output, output


def test_secret_flags_say_they_are_unsafe_in_their_help(runner: CliRunner) -> None:
    for args in (("incident", "--help"), ("incident", "login", "--help"),
                 ("detect", "--help"), ("operator", "login-blocks", "--help")):
        code, output = run(runner, *args)
        assert code == 0 and "Unsafe as a flag" in " ".join(output.split()), args
