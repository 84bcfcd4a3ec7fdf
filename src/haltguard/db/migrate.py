"""Schema migrations: Alembic, run from code so the app, the CLI and the tests share one path.

Tables are always created by migrations, never by ``create_all``, so what the tests exercise
is what an operator's database gets.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from haltguard.db.base import Base
from haltguard.db.keys import keyring_for_engine, seal_stored_secrets

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
SECRETS_SEALABLE_FROM = "0006_audit_protection"
"""The revision that makes room for sealed secrets; from it on ``upgrade`` seals them."""

# Every module that defines tables on ``Base``. A domain not written yet is skipped.
MODEL_MODULES = (
    "haltguard.incidents.models",
    "haltguard.security.models",
    "haltguard.responders.models",
    "haltguard.detection.models",
    "haltguard.status.models",
    "haltguard.notify.models",
    "haltguard.compensation.models",
    "haltguard.corrections.models",
    "haltguard.backup.models",
    "haltguard.support.models",
    "haltguard.customers.models",
    "haltguard.continuity.models",
)
UNMODELLED_PREFIXES = ("support_articles_fts", "ix_support_articles_trgm")
"""Objects migrations make that no model describes: full-text indexes (an FTS5 virtual table
and its shadow tables, a pg_trgm index). Schema comparisons leave them out."""


def _modelled(name: str | None, _type: str, _parents: object) -> bool:
    return not (name or "").startswith(UNMODELLED_PREFIXES)


def import_all_models() -> list[str]:
    """Import every model module so ``Base.metadata`` holds all tables; return those found."""
    found = []
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
            continue
        found.append(name)
    return found


def alembic_config() -> Config:
    return Config(str(ALEMBIC_INI))


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the database to ``revision`` (every branch's newest by default) in one transaction.

    Each domain adds its tables on its own branch off the shared base revision, so domains
    written side by side never fight over one chain; ``heads`` applies them all.
    Secrets stored in clear by an older haltguard are then encrypted in the same transaction
    (``keys.seal_stored_secrets``), with the keys attached to ``engine``: a migration holds
    no key, so this cannot live in one.
    """
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        heads = MigrationContext.configure(connection).get_current_heads()
        applied = ScriptDirectory.from_config(config).iterate_revisions(heads, "base")
        if any(script.revision == SECRETS_SEALABLE_FROM for script in applied):
            seal_stored_secrets(connection, keyring_for_engine(engine))


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database is at: one per migration branch."""
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def head_revisions() -> set[str]:
    """The newest revision of every branch the code ships."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def schema_differences(engine: Engine) -> list[Any]:
    """What differs between the migrated database and the models: empty when they agree."""
    import_all_models()
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": _modelled})
        return list(compare_metadata(context, Base.metadata))
