"""``haltguard backup ...``: take, list, verify and restore backups; make a key.

The commands read the same configuration as ``serve`` (``--config``, the environment and the
defaults: ``backup.*`` in docs/configuration.md) and act on the files and the operations
database directly, so they work while ``serve`` runs (``create``, ``verify``) and when it
cannot (``restore`` after a disk is lost). Each backup, verification and restore is recorded
in the operations database when it can be opened. A walk-through is in docs/backup.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from haltguard.app.config import CONFIG_FILE_ENV, ConfigError, ServeConfig, load_config
from haltguard.backup import archive, flows, service
from haltguard.backup.errors import BackupError, BackupSettingsError
from haltguard.backup.models import RestoreKind
from haltguard.backup.settings import BackupSettings
from haltguard.backup.targets import open_target
from haltguard.common.clock import utc_now
from haltguard.db.keys import Keyring
from haltguard.db.session import make_engine, make_session_factory, sqlite_file

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Backups that are proven to restore: create, list, verify, restore.")
console = Console(markup=False, highlight=False, soft_wrap=True)
errors = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", envvar=CONFIG_FILE_ENV, show_default=False,
    help="The TOML or YAML configuration file serve uses (docs/configuration.md).")]
TargetOption = Annotated[str | None, typer.Option(
    "--target", show_default=False,
    help="Backup target URL (file:///path or s3://bucket/prefix); default backup.target_url.")]
KeyOption = Annotated[Path | None, typer.Option(
    "--key-file", show_default=False, help="Encryption key file; default backup.key_file.")]
BackupIdArgument = Annotated[str | None, typer.Argument(
    show_default=False, help="The backup's id (`haltguard backup list`); default the newest.")]


def _fail(exc: Exception) -> typer.Exit:
    if isinstance(exc, BackupError):
        errors.print(f"error: {exc.describe()}")
        if exc.message_ja:
            errors.print(f"エラー: {exc.message_ja}")
    else:
        errors.print(f"error: {exc}")
    return typer.Exit(1)


def _configured(config_file: Path | None, target: str | None,
                key_file: Path | None) -> tuple[ServeConfig, BackupSettings]:
    try:
        config = load_config(config_file)
        settings = config.backup or BackupSettings()
        if target:
            settings = replace(settings, target_url=target)
        if key_file is not None:
            settings = replace(settings, key_file=key_file)
        open_target(settings.target_url, settings.s3)
    except (ConfigError, BackupSettingsError) as exc:
        raise _fail(exc) from exc
    return config, settings


def _record(config: ServeConfig, write: Callable[[Session], object]) -> None:
    """Run ``write(session)`` on the operations database; say so if it cannot be opened."""
    try:
        engine = make_engine(config.database_url, keyring=Keyring(config.keys))
        try:
            with make_session_factory(engine)() as session:
                write(session)
                session.commit()
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        errors.print(f"warning: not recorded in the operations database ({type(exc).__name__}); "
                     "start serve once to bring its schema up to date")


@app.command("keygen")
def keygen(path: Annotated[Path, typer.Argument(help="Where to write the new key file.")]) -> None:
    """Create a new random AES-256 key file (0600); refuses to overwrite one."""
    try:
        archive.generate_key_file(path)
    except FileExistsError as exc:
        errors.print(f"error: {path} exists; a key file is never overwritten")
        raise typer.Exit(1) from exc
    console.print(f"key written to {path}; keep a copy away from the backups "
                  "(without it no encrypted backup can be restored)")


@app.command("create")
def create(config_file: ConfigOption = None, target: TargetOption = None,
           key_file: KeyOption = None) -> None:
    """Take a consistent backup of the running system (venue, database, keys, config)."""
    config, settings = _configured(config_file, target, key_file)
    flows.run_in_background()
    started = utc_now()
    try:
        manifest = flows.create_backup(settings, config.backup_sources(), now=started,
                                       progress=console.print)
    except (BackupError, OSError) as exc:
        message = exc.describe() if isinstance(exc, BackupError) else str(exc)
        _record(config, lambda session: service.record_backup_failure(
            session, settings.target_url, message, started_at=started, finished_at=utc_now()))
        raise _fail(exc) from exc
    finished = utc_now()
    _record(config, lambda session: service.record_backup(
        session, manifest, open_target(settings.target_url, settings.s3).url,
        started_at=started, finished_at=finished))
    seq = manifest.venue.last_seq if manifest.venue else 0
    console.print(f"backup {manifest.backup_id}: venue seq {seq}, {len(manifest.files)} files, "
                  f"{manifest.source_bytes} bytes -> {manifest.stored_bytes} stored, "
                  f"{(finished - started).total_seconds():.1f} s")


@app.command("list")
def list_backups(config_file: ConfigOption = None, target: TargetOption = None) -> None:
    """The backups at the target, newest first (incomplete ones marked)."""
    _, settings = _configured(config_file, target, None)
    try:
        chosen = open_target(settings.target_url, settings.s3)
        complete = set(flows.complete_backups(chosen))
        found = chosen.backup_ids()
    except BackupError as exc:
        raise _fail(exc) from exc
    table = Table("backup", "state", title=f"backups at {chosen.url}")
    for backup_id in reversed(found):
        table.add_row(backup_id, "complete" if backup_id in complete else "INCOMPLETE")
    console.print(table)


@app.command("verify")
def verify(backup_id: BackupIdArgument = None, config_file: ConfigOption = None,
           target: TargetOption = None, key_file: KeyOption = None,
           pg_server_url: Annotated[str, typer.Option(
               "--pg-server-url", help="A PostgreSQL server to restore a dump into "
               "(a scratch database, dropped after).")] = "") -> None:
    """Restore a backup into scratch, replay it and check it; record the verdict."""
    config, settings = _configured(config_file, target, key_file)
    try:
        outcome = flows.verify_backup(settings, backup_id, pg_server_url=pg_server_url,
                                      progress=console.print)
    except BackupError as exc:
        raise _fail(exc) from exc
    finished = utc_now()
    _record(config, lambda session: service.record_verification(
        session, outcome, finished_at=finished))
    verdict = "OK" if outcome.ok else "PROBLEMS FOUND"
    console.print(f"{outcome.backup_id}: {verdict} / {'正常' if outcome.ok else '問題あり'} "
                  f"(venue seq {outcome.venue_seq}, state hash {outcome.state_hash[:16] or '-'},"
                  f" {outcome.duration_s:.1f} s)")
    for problem in outcome.problems:
        console.print(f"  problem: {problem}")
    if not outcome.ok:
        raise typer.Exit(1)


@app.command("restore")
def restore(destination: Annotated[Path, typer.Argument(
                help="The data directory to create (must not exist, or be empty).")],
            backup_id: BackupIdArgument = None, *, config_file: ConfigOption = None,
            target: TargetOption = None, key_file: KeyOption = None,
            database_url: Annotated[str, typer.Option(
                "--database-url", help="An empty PostgreSQL database to restore a dump into."
            )] = "") -> None:
    """Rebuild a data directory from a backup; never overwrites one in use."""
    config, settings = _configured(config_file, target, key_file)
    try:
        outcome = flows.restore_backup(settings, backup_id, destination,
                                       database_url=database_url, progress=console.print)
    except BackupError as exc:
        raise _fail(exc) from exc
    restored_db = destination / "haltguard.sqlite3"
    if sqlite_file(config.database_url) is not None and restored_db.is_file():
        config = replace(config, database_url=f"sqlite:///{restored_db.absolute()}")
    finished = utc_now()
    _record(config, lambda session: service.record_restore(
        session, outcome, kind=RestoreKind.RESTORE, finished_at=finished))
    console.print(f"restored {outcome.backup_id} into {outcome.destination} in "
                  f"{outcome.restore_s:.1f} s: venue at seq {outcome.venue_seq}, "
                  f"state hash {outcome.state_hash[:16] or '-'}")
    for note in outcome.notes:
        console.print(f"  note: {note}")
