"""The append-only audit chain: every operator and automatic action, each entry sealed with
the hash of the one before it.

``record`` appends inside the caller's transaction, so an action and its audit entry commit
or roll back together. Appends are serialised through the single ``audit_chain_head`` row:
PostgreSQL locks it with ``SELECT ... FOR UPDATE``; SQLite takes its database write lock with
the ``INSERT ... ON CONFLICT DO NOTHING`` that also creates the row on first use. The lock is
held until the caller commits, so keep those transactions short.

An entry's hash is SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8) of
``{"actor", "action", "created_at", "details", "index", "prev_hash", "target"}`` where
``created_at`` is UTC ISO 8601 with microseconds and a ``Z``, and the first entry's
``prev_hash`` is 64 zeros. Anyone can recompute it from ``haltguard audit list`` output.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from haltguard.security.config import utc_now
from haltguard.security.models import (
    AUDIT_ACTION_LENGTH_MAX,
    AUDIT_ACTOR_LENGTH_MAX,
    AUDIT_TARGET_LENGTH_MAX,
    PAGE_LIMIT_MAX,
    AuditChainHead,
    AuditEntry,
)

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditRecordError",
    "AuditVerification",
    "canonical_json",
    "compute_entry_hash",
    "list_entries",
    "record",
    "verify",
]

GENESIS_HASH = "0" * 64
CHAIN_HEAD_ID = 1
AUDIT_DETAILS_BYTES_MAX = 65_536
VERIFY_BATCH_SIZE = 1_000


class AuditRecordError(ValueError):
    """The caller passed something the chain cannot hold; nothing was written."""


def canonical_json(value: object) -> str:
    """The one serialisation hashed and stored: sorted keys, no spaces, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _time_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise AuditRecordError(f"audit time {moment.isoformat()} has no time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compute_entry_hash(
    *,
    index: int,
    created_at: datetime,
    actor: str,
    action: str,
    target: str,
    details: object,
    prev_hash: str,
) -> str:
    payload = {
        "actor": actor,
        "action": action,
        "created_at": _time_text(created_at),
        "details": details,
        "index": index,
        "prev_hash": prev_hash,
        "target": target,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _check_text(name: str, value: str, length_max: int) -> None:
    if not value.strip():
        raise AuditRecordError(f"audit {name} is empty; say who or what it is")
    if len(value) > length_max:
        raise AuditRecordError(f"audit {name} is {len(value)} characters, at most {length_max}")


def _details_text(details: dict[str, object]) -> str:
    try:
        text = canonical_json(details)
    except (TypeError, ValueError) as exc:
        raise AuditRecordError(
            f"audit details must be JSON (str, int, bool, None, lists, dicts): {exc}"
        ) from exc
    if len(text.encode("utf-8")) > AUDIT_DETAILS_BYTES_MAX:
        raise AuditRecordError(
            f"audit details are {len(text.encode('utf-8'))} bytes as JSON, at most "
            f"{AUDIT_DETAILS_BYTES_MAX}; record a reference instead of the whole payload"
        )
    return text


def _lock_head(session: Session) -> AuditChainHead:
    """The chain head row, created on first use and locked until the transaction ends."""
    dialect = session.get_bind().dialect.name
    row = {"id": CHAIN_HEAD_ID, "entry_count": 0, "last_hash": GENESIS_HASH}
    if dialect == "sqlite":
        session.execute(sqlite_insert(AuditChainHead).values(row).on_conflict_do_nothing())
    elif dialect == "postgresql":
        session.execute(postgresql_insert(AuditChainHead).values(row).on_conflict_do_nothing())
    else:
        raise AuditRecordError(f"the audit chain supports SQLite and PostgreSQL, not {dialect}")
    locked = (
        select(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.execute(locked).scalar_one()


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    details: dict[str, object],
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction and return it (flushed, not committed).

    ``actor`` is ``operator:<username>``, ``cli:<os user>`` or ``system:<component>``;
    ``action`` a dotted name such as ``market.halt``; ``target`` what it acted on; ``details``
    the values that explain it (rule, thresholds, reason). ``at`` defaults to now (UTC).
    """
    _check_text("actor", actor, AUDIT_ACTOR_LENGTH_MAX)
    _check_text("action", action, AUDIT_ACTION_LENGTH_MAX)
    if len(target) > AUDIT_TARGET_LENGTH_MAX:
        raise AuditRecordError(
            f"audit target is {len(target)} characters, at most {AUDIT_TARGET_LENGTH_MAX}"
        )
    details_text = _details_text(details)
    created_at = (at or utc_now()).astimezone(UTC)
    _time_text(created_at)
    head = _lock_head(session)
    index = head.entry_count + 1
    entry_hash = compute_entry_hash(
        index=index,
        created_at=created_at,
        actor=actor,
        action=action,
        target=target,
        details=json.loads(details_text),
        prev_hash=head.last_hash,
    )
    entry = AuditEntry(
        index=index,
        created_at=created_at,
        actor=actor,
        action=action,
        target=target,
        details_json=details_text,
        prev_hash=head.last_hash,
        entry_hash=entry_hash,
    )
    session.add(entry)
    head.entry_count = index
    head.last_hash = entry_hash
    session.flush()
    return entry


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of walking the chain; when not ``ok``, the first entry that is wrong."""

    ok: bool
    entries_checked: int
    first_bad_index: int | None = None
    problem: str = ""

    def summary(self) -> str:
        if self.ok:
            noun = "entry" if self.entries_checked == 1 else "entries"
            return f"OK: {self.entries_checked} audit {noun}, chain intact"
        return (
            f"BROKEN at entry {self.first_bad_index}: {self.problem} "
            f"({self.entries_checked} entries before it are intact)"
        )


def _entries_after(session: Session, index: int) -> list[tuple[Any, ...]]:
    query = (
        select(
            AuditEntry.index,
            AuditEntry.created_at,
            AuditEntry.actor,
            AuditEntry.action,
            AuditEntry.target,
            AuditEntry.details_json,
            AuditEntry.prev_hash,
            AuditEntry.entry_hash,
        )
        .where(AuditEntry.index > index)
        .order_by(AuditEntry.index)
        .limit(VERIFY_BATCH_SIZE)
    )
    return [tuple(row) for row in session.execute(query).all()]


def _check_row(row: Sequence[Any], expected_index: int, prev_hash: str) -> str:
    """What is wrong with one entry given the one before it, or ``""``."""
    index, created_at, actor, action, target, details_json, stored_prev, stored_hash = row
    if index != expected_index:
        return f"missing: the entry after {expected_index - 1} is {index}; entries were removed"
    if stored_prev != prev_hash:
        previous = f"entry {index - 1}" if index > 1 else "the start of the chain"
        return (
            f"does not follow {previous}: its prev_hash {stored_prev[:12]}... is not "
            f"{prev_hash[:12]}...; entries were reordered, inserted or replaced"
        )
    try:
        details = json.loads(details_json)
    except ValueError:
        return "details are not valid JSON: the entry was edited"
    computed = compute_entry_hash(
        index=index,
        created_at=created_at,
        actor=actor,
        action=action,
        target=target,
        details=details,
        prev_hash=stored_prev,
    )
    if computed != stored_hash:
        return (
            f"content does not match its hash (stored {stored_hash[:12]}..., computed "
            f"{computed[:12]}...): the entry was edited"
        )
    return ""


def _head(session: Session) -> AuditChainHead | None:
    query = (
        select(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .execution_options(populate_existing=True)
    )
    return session.execute(query).scalar_one_or_none()


def verify(session: Session) -> AuditVerification:
    """Walk the whole chain in index order and name the first entry that is wrong.

    Detects edited fields (hash mismatch), removed entries (index gap or a chain shorter
    than its head records), reordered or inserted entries (broken prev_hash link) and
    entries written around ``record`` (beyond the head). Appends made while it runs are
    checked too; it reads in batches of ``VERIFY_BATCH_SIZE``.
    """
    last_index = 0
    last_hash = GENESIS_HASH
    head_count_seen = 0
    while True:
        rows = _entries_after(session, last_index)
        for row in rows:
            problem = _check_row(row, last_index + 1, last_hash)
            if problem:
                return AuditVerification(False, last_index, last_index + 1, problem)
            last_index = int(row[0])
            last_hash = str(row[7])
        if rows:
            continue
        if head_count_seen > last_index:
            # The head and its entries commit together, so entries the head counted
            # before this read began must be visible now.
            return AuditVerification(
                False,
                last_index,
                last_index + 1,
                f"missing: the chain head records {head_count_seen} entries but the chain "
                f"ends at {last_index}; entries were removed from the end",
            )
        head = _head(session)
        head_count = 0 if head is None else head.entry_count
        head_hash = GENESIS_HASH if head is None else head.last_hash
        if head_count == last_index:
            if head_hash != last_hash:
                return AuditVerification(
                    False,
                    last_index - 1,
                    last_index,
                    "the last entry's hash differs from the chain head's: it was replaced",
                )
            return AuditVerification(True, last_index)
        if head_count < last_index:
            return AuditVerification(
                False,
                head_count,
                head_count + 1,
                f"beyond the chain head, which records {head_count} entries: written "
                f"around the audit log",
            )
        head_count_seen = head_count


def list_entries(
    session: Session,
    *,
    offset: int = 0,
    limit: int = 50,
    actor: str | None = None,
    action: str | None = None,
    newest_first: bool = True,
) -> tuple[list[AuditEntry], int]:
    """One page of entries (newest first unless told) and how many match in total."""
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise AuditRecordError(f"limit must be 1..{PAGE_LIMIT_MAX}, got {limit}")
    if offset < 0:
        raise AuditRecordError(f"offset must be 0 or more, got {offset}")
    query = select(AuditEntry)
    count = select(func.count()).select_from(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
        count = count.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
        count = count.where(AuditEntry.action == action)
    order = AuditEntry.index.desc() if newest_first else AuditEntry.index.asc()
    entries = session.execute(query.order_by(order).offset(offset).limit(limit)).scalars()
    total = session.execute(count).scalar_one()
    return list(entries), int(total)


def entry_details(entry: AuditEntry) -> dict[str, object]:
    details = json.loads(entry.details_json)
    assert isinstance(details, dict), "record only stores JSON objects as details"
    return details
