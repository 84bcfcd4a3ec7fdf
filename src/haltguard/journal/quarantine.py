"""Quarantined commands: journaled commands the engine raised on, skipped by every replay.

A command that makes :meth:`Venue.apply` raise is a software bug, not bad input (bad input is
a rejection event). The runtime keeps going without it: the command stays in the journal (its
seq was acknowledged as durable to nobody, but later records follow it), and its seq is
written to ``data_dir/quarantine.json`` before anything after it is acknowledged. Recovery and
readers replay a quarantined seq as a :class:`Heartbeat` at the same ts, which is exactly
what the live venue did after rebuilding itself, so every replay reaches the live state.

The file is small and rewritten whole: a temporary file, fsync, rename, fsync of the
directory, so a crash leaves either the old list or the new one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import msgspec

from haltguard.journal.errors import JournalError
from haltguard.journal.segments import fsync_directory

QUARANTINE_FILE: Final = "quarantine.json"
ERROR_TEXT_MAX: Final = 500


class QuarantinedCommand(msgspec.Struct, frozen=True):
    """One quarantined command: where it is in the journal and why it was set aside."""

    seq: int
    ts: int
    command: str  # the command's type name
    market: str  # "" when the command names no market
    error: str  # what the engine raised, as text
    client_order_id: str = ""


class QuarantineFile(msgspec.Struct, frozen=True):
    version: int
    commands: list[QuarantinedCommand]


_VERSION: Final = 1
_decoder = msgspec.json.Decoder(QuarantineFile)


def quarantine_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / QUARANTINE_FILE


def load_quarantine(data_dir: Path | str) -> list[QuarantinedCommand]:
    """The quarantined commands of ``data_dir``, oldest first; none when the file is absent.

    Raises :class:`JournalError` when the file exists but cannot be read: replaying without
    it could run a command that is known to break the engine.
    """
    path = quarantine_path(data_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        return list(_decoder.decode(data).commands)
    except msgspec.DecodeError as exc:
        raise JournalError(
            f"{path} cannot be read ({exc}); it lists the journal's quarantined commands, so "
            "recovery will not run without it. Restore it from a backup, or fix the JSON by "
            "hand (each entry needs seq, ts, command, market and error)"
        ) from None


def quarantined_seqs(data_dir: Path | str) -> frozenset[int]:
    return frozenset(entry.seq for entry in load_quarantine(data_dir))


def add_to_quarantine(
    data_dir: Path | str, entry: QuarantinedCommand, *, unsafe_skip_fsync: bool = False
) -> list[QuarantinedCommand]:
    """Append ``entry`` to the quarantine list durably; returns the whole list."""
    entries = [e for e in load_quarantine(data_dir) if e.seq != entry.seq]
    entries.append(entry)
    entries.sort(key=lambda e: e.seq)
    path = quarantine_path(data_dir)
    temporary = path.with_suffix(".json.tmp")
    blob = msgspec.json.format(msgspec.json.encode(QuarantineFile(_VERSION, entries)))
    with temporary.open("wb") as file:
        file.write(blob)
        file.flush()
        if not unsafe_skip_fsync:
            os.fsync(file.fileno())
    os.replace(temporary, path)
    if not unsafe_skip_fsync:
        fsync_directory(path.parent)
    return entries
