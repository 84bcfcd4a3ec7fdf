"""Alembic's entry point: every domain's tables are imported so autogenerate sees them all."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlalchemy.types import TypeDecorator

from haltguard.app.config import cli_database_url, cli_keyring
from haltguard.db.base import Base
from haltguard.db.migrate import import_all_models
from haltguard.db.session import make_engine

import_all_models()
config = context.config
target_metadata = Base.metadata


def _render_item(kind: str, value: Any, _context: AutogenContext) -> str | Literal[False]:
    """Write our column types as the plain SQLAlchemy type they store, so a migration never
    imports application code that may change after it was written."""
    if kind == "type" and isinstance(value, TypeDecorator):
        return f"sa.{value.impl!r}"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or cli_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or cli_database_url()
    engine = make_engine(url, keyring=cli_keyring(url))
    try:
        with engine.connect() as new_connection:
            _configure(new_connection)
            new_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
