"""What the operations service needs to start: where its database is, how large and how slow
a request body may be, and nothing secret. ``app/config.py`` builds it from the configuration
file and the environment (``HALTGUARD_DATA_DIR``, ``HALTGUARD_DATABASE_URL``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from haltguard.db.session import DEFAULT_DATA_DIR
from haltguard.web.asgi import BODY_RECEIVE_S_MAX_DEFAULT

BODY_BYTES_MAX_DEFAULT = 262_144
"""An operator's JSON request: room for the longest texts (20,000 characters, in Japanese
escaped as ``\\uXXXX``) in both languages."""
PUBLIC_BODY_BYTES_MAX_DEFAULT = 8_192
"""A request anyone may send without logging in: login, subscriptions, confirm, unsubscribe."""
DOCUMENT_BODY_BYTES_MAX_DEFAULT = 4_194_304
"""A whole document: alert intake batches, detection rules, the on-call set-up, a postmortem."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path = DEFAULT_DATA_DIR
    migrate_on_start: bool = True  # bring the schema to the newest migration at start
    body_bytes_max: int = BODY_BYTES_MAX_DEFAULT
    public_body_bytes_max: int = PUBLIC_BODY_BYTES_MAX_DEFAULT
    document_body_bytes_max: int = DOCUMENT_BODY_BYTES_MAX_DEFAULT
    body_receive_s_max: float = BODY_RECEIVE_S_MAX_DEFAULT
