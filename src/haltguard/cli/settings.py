"""What the commands that run beside ``haltguard serve`` (``operator``, ``oncall``,
``notify``, ``status``) are configured with: the environment, read by ``app/config.py`` like
``serve`` reads it, so a variable means the same to every command."""

from __future__ import annotations

import typer
from rich.console import Console
from sqlalchemy import Engine

from haltguard.app.config import (
    ConfigError,
    ServeConfig,
    cli_database_url,
    cli_keyring,
    from_environment,
)
from haltguard.db.session import make_engine

CONFIG_ERROR_EXIT_CODE = 1

_errors = Console(stderr=True, soft_wrap=True)


def environment_config() -> ServeConfig:
    """The configuration from the environment and the defaults; a bad variable prints what
    was wrong and what to write, and exits 1."""
    try:
        return from_environment()
    except ConfigError as exc:
        _errors.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(CONFIG_ERROR_EXIT_CODE) from exc


def local_engine() -> Engine:
    """An engine on the database these commands open directly (``HALTGUARD_DATABASE_URL``,
    else SQLite in ``./data``), with the keys given in the environment or kept beside it."""
    url = cli_database_url()
    return make_engine(url, keyring=cli_keyring(url))
