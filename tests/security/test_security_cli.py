"""``haltguard operator ...`` and ``haltguard audit ...`` on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from security_helpers import SQLITE_ONLY, lift_audit_protection
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from haltguard.app.config import cli_keyring
from haltguard.cli.main import app
from haltguard.db import keys
from haltguard.db.session import make_engine, make_session_factory, session_scope
from haltguard.security import audit, service

PASSWORD = "a long enough passphrase\n"


@pytest.fixture
def runner(database_url: str, tmp_path: Path) -> CliRunner:
    return CliRunner(env={"HALTGUARD_DATABASE_URL": database_url, "COLUMNS": "200",
                          "HALTGUARD_DATA_DIR": str(tmp_path)})


def engine_of(runner: CliRunner) -> Engine:
    """The CLI's database, with the keys the suite gives the CLI through the environment."""
    url = database(runner)
    return make_engine(url, keyring=cli_keyring(url))


def run(runner: CliRunner, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


def create(runner: CliRunner, username: str, role: str = "responder") -> tuple[int, str]:
    return run(
        runner, "operator", "create", username, "--display-name", "Akiko Sato",
        "--email", f"{username}@example.com", "--role", role, "--password-stdin",
        stdin=PASSWORD,
    )


def database(runner: CliRunner) -> str:
    url = runner.env["HALTGUARD_DATABASE_URL"]
    assert url is not None
    return url


@SQLITE_ONLY
def test_create_prints_the_totp_secret_uri_and_a_qr_code_once(runner: CliRunner) -> None:
    code, output = create(runner, "akiko")
    assert code == 0, output
    assert "created operator akiko (responder)" in output
    assert "otpauth://totp/haltguard:akiko?secret=" in output
    assert "█" in output or "▀" in output, "a terminal QR code is drawn"
    factory = make_session_factory(engine_of(runner))
    with session_scope(factory) as session:
        stored = service.get_operator(session, "akiko").totp_secret
        secret = keys.open_totp_secret(session, "akiko", stored)
    assert stored not in output, "the database holds the seed encrypted, not as shown"
    assert secret in output
    code, listed = run(runner, "operator", "list")
    assert code == 0 and "akiko" in listed and secret not in listed


@SQLITE_ONLY
def test_short_password_exits_1_with_the_policy_and_creates_nothing(runner: CliRunner) -> None:
    code, output = run(
        runner, "operator", "create", "akiko", "--display-name", "A", "--email",
        "a@example.com", "--role", "viewer", "--password-stdin", stdin="short\n",
    )
    assert code == 1
    assert "password too short: 5 characters, at least 12" in output
    assert "akiko" not in run(runner, "operator", "list")[1]


@SQLITE_ONLY
def test_role_disable_and_tokens_round_trip(runner: CliRunner) -> None:
    assert create(runner, "admin-one", "admin")[0] == 0
    assert create(runner, "kenji")[0] == 0
    code, output = run(runner, "operator", "set-role", "kenji", "incident_commander")
    assert code == 0 and "kenji is now incident_commander" in output
    code, output = run(runner, "operator", "token", "create", "kenji", "--name", "exporter",
                       "--expires-days", "30")
    assert code == 0, output
    token = output.strip().splitlines()[-1]
    assert token.startswith("hgt_")
    code, listed = run(runner, "operator", "token", "list", "kenji")
    assert code == 0 and token[:12] in listed and token not in listed and "active" in listed
    code, output = run(runner, "operator", "token", "revoke", "kenji", "1")
    assert code == 0 and "revoked" in output
    assert "revoked" in run(runner, "operator", "token", "list", "kenji")[1]
    code, output = run(runner, "operator", "disable", "kenji")
    assert code == 0 and "disabled" in output
    code, output = run(runner, "operator", "reset-totp", "kenji")
    assert code == 0 and "otpauth://totp/haltguard:kenji" in output


@SQLITE_ONLY
def test_unknown_operator_exits_1_saying_how_to_find_them(runner: CliRunner) -> None:
    code, output = run(runner, "operator", "set-role", "ghost", "viewer")
    assert code == 1 and "no operator named 'ghost'" in output


@SQLITE_ONLY
def test_audit_verify_prints_ok_with_the_count(runner: CliRunner) -> None:
    create(runner, "akiko")
    run(runner, "operator", "set-role", "akiko", "support")
    code, output = run(runner, "audit", "verify")
    assert code == 0, output
    assert "OK: 2 audit entries, chain intact" in output


def test_audit_verify_exits_1_naming_the_first_bad_entry(runner: CliRunner) -> None:
    create(runner, "akiko")
    run(runner, "operator", "set-role", "akiko", "support")
    run(runner, "operator", "set-role", "akiko", "viewer")
    engine = engine_of(runner)
    with engine.begin() as connection:
        lift_audit_protection(Session(bind=connection))
        connection.execute(
            text("UPDATE audit_entries SET details_json = '{}' WHERE entry_index = 2")
        )
    code, output = run(runner, "audit", "verify")
    assert code == 1
    assert "BROKEN at entry 2" in output and "edited" in output


@SQLITE_ONLY
def test_audit_list_json_lines_carry_hashes_anyone_can_recompute(runner: CliRunner) -> None:
    create(runner, "akiko")
    run(runner, "operator", "disable", "akiko")
    code, output = run(runner, "audit", "list", "--json", "--oldest-first")
    assert code == 0
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [line["action"] for line in lines] == ["operator.created", "operator.disabled"]
    for line in lines:
        from datetime import datetime

        recomputed = audit.compute_entry_hash(
            index=line["index"], created_at=datetime.fromisoformat(line["created_at"]),
            actor=line["actor"], action=line["action"], target=line["target"],
            details=line["details"], prev_hash=line["prev_hash"],
        )
        assert recomputed == line["entry_hash"]
    code, table = run(runner, "audit", "list")
    assert code == 0 and "operator.disabled" in table and "2 of 2 entries" in table


@SQLITE_ONLY
def test_a_checkpoint_kept_from_the_cli_catches_entries_cut_later(
    runner: CliRunner, tmp_path: Path,
) -> None:
    create(runner, "akiko")
    run(runner, "operator", "set-role", "akiko", "support")
    code, line = run(runner, "audit", "checkpoint")
    assert code == 0 and line.split(" ")[1] == "2"
    kept = tmp_path / "kept-checkpoint.txt"
    kept.write_text(line)
    engine = engine_of(runner)
    with engine.begin() as connection:
        lift_audit_protection(Session(bind=connection))
        first = connection.execute(
            text("SELECT entry_hash FROM audit_entries WHERE entry_index = 1")
        ).scalar_one()
        connection.execute(text("DELETE FROM audit_entries WHERE entry_index = 2"))
        connection.execute(text("UPDATE audit_chain_head SET entry_count = 1, last_hash = :h"),
                           {"h": first})
    engine.dispose()
    (tmp_path / "audit-anchor.log").unlink()
    assert run(runner, "audit", "verify")[0] == 0, "without the anchor nothing shows the cut"
    code, output = run(runner, "audit", "verify", "--checkpoint", str(kept))
    assert code == 1
    assert "BROKEN at entry 2" in output and "the anchor records entry 2" in output
