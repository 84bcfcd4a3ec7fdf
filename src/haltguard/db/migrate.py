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

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")

# Every module that defines tables on ``Base``. A domain not written yet is skipped.
MODEL_MODULES = (
    "haltguard.incidents.models",
    "haltguard.security.models",
    "haltguard.responders.models",
)


def import_all_models() -> list[str]:
    """Import every model module so ``Base.metadata`` holds all tables; return those found."""
    found = []
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.append(name)
    return found


def alembic_config() -> Config:
    return Config(str(ALEMBIC_INI))


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (the newest by default) in one transaction."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def schema_differences(engine: Engine) -> list[Any]:
    """What differs between the migrated database and the models: empty when they agree."""
    import_all_models()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))
