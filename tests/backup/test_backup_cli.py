"""The ``haltguard backup`` commands end to end on a directory target, as an operator runs
them: keygen, create, list, verify (recorded), restore (refusing a live directory)."""

from __future__ import annotations

from pathlib import Path

import pytest
from backup_support import workload, write_journal
from typer.testing import CliRunner

from haltguard.backup.models import BackupRecord, BackupVerification
from haltguard.cli.main import app
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory
from haltguard.journal import recover

runner = CliRunner()


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory with a journal and a migrated SQLite database, configured through
    the environment as serve would be."""
    data_dir = tmp_path / "data"
    write_journal(data_dir, workload(1_000), checkpoint_every=500)
    engine = make_engine(f"sqlite:///{data_dir / 'haltguard.sqlite3'}")
    upgrade(engine)
    engine.dispose()
    monkeypatch.setenv("HALTGUARD_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HALTGUARD_BACKUP_TARGET_URL", (tmp_path / "backups").as_uri())
    monkeypatch.setenv("HALTGUARD_BACKUP_KEY_FILE", str(tmp_path / "backup.key"))
    return data_dir


def test_create_verify_and_restore_from_the_command_line(tmp_path: Path, system: Path) -> None:
    assert runner.invoke(app, ["backup", "keygen", str(tmp_path / "backup.key")]).exit_code == 0
    created = runner.invoke(app, ["backup", "create"])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(app, ["backup", "list"])
    assert "complete" in listed.output
    verified = runner.invoke(app, ["backup", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "OK" in verified.output

    refused = runner.invoke(app, ["backup", "restore", str(system)])
    assert refused.exit_code == 1
    assert "not empty" in refused.output

    restored = runner.invoke(app, ["backup", "restore", str(tmp_path / "restored")])
    assert restored.exit_code == 0, restored.output
    live, _ = recover(system, repair=False)
    again, _ = recover(tmp_path / "restored", repair=False)
    assert again.state_hash() == live.state_hash()

    engine = make_engine(f"sqlite:///{system / 'haltguard.sqlite3'}")
    with make_session_factory(engine)() as session:
        assert session.query(BackupRecord).filter_by(status="ok").count() == 1
        assert session.query(BackupVerification).filter_by(ok=True).count() == 1
    engine.dispose()


def test_a_wrong_key_from_the_command_line_says_what_to_do(
    tmp_path: Path, system: Path
) -> None:
    runner.invoke(app, ["backup", "keygen", str(tmp_path / "backup.key")])
    assert runner.invoke(app, ["backup", "create"]).exit_code == 0
    runner.invoke(app, ["backup", "keygen", str(tmp_path / "other.key")])

    result = runner.invoke(app, ["backup", "restore", str(tmp_path / "restored"),
                                 "--key-file", str(tmp_path / "other.key")])

    assert result.exit_code == 1
    assert "not the key" in result.output and "next:" in result.output
    assert not (tmp_path / "restored").exists()
