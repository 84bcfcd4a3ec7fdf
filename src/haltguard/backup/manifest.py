"""The manifest: what a backup holds, written last, so its presence means "complete".

It records every file's size and SHA-256 (as taken and as stored), the venue's seq and time
the backup reaches, the database's migration revisions and row counts, and how files are
compressed and encrypted (with a key check, so a wrong key is told before anything is read).
"""

from __future__ import annotations

from typing import Final

import msgspec

MANIFEST_FORMAT: Final = 1


class FileEntry(msgspec.Struct, frozen=True):
    path: str
    """Where it goes in a restored data directory (``segments/...``, ``haltguard.sqlite3``)."""
    role: str  # venue | database | keys | anchor | config
    size_bytes: int
    sha256: str
    stored_bytes: int
    stored_sha256: str


class VenuePart(msgspec.Struct, frozen=True):
    snapshot_seq: int  # 0: no snapshot, replay from the first segment
    last_seq: int
    last_ts: int
    segments: int


class DatabasePart(msgspec.Struct, frozen=True):
    kind: str  # sqlite | postgresql
    file: str
    revisions: list[str]
    row_counts: dict[str, int]


class Manifest(msgspec.Struct, frozen=True):
    format: int
    backup_id: str
    created_at: str  # ISO 8601 UTC
    haltguard_version: str
    compression: str
    encrypted: bool
    key_check: str  # "" when not encrypted
    files: list[FileEntry]
    venue: VenuePart | None = None
    database: DatabasePart | None = None
    notes: list[str] = []

    def encode(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2)

    @property
    def source_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self.files)

    @property
    def stored_bytes(self) -> int:
        return sum(entry.stored_bytes for entry in self.files)


def decode_manifest(data: bytes) -> Manifest:
    """Raises ``msgspec.ValidationError``/``DecodeError`` for anything but a manifest."""
    return msgspec.json.decode(data, type=Manifest)
