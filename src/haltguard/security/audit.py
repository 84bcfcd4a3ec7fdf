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

A hash chain alone does not stop whoever can write the database: they can edit an entry and
recompute every later hash, or cut entries from the end and rewrite the head. So each entry
is also sealed with the audit key, which the database does not hold (``keys.py``)::

    entry_mac = HMAC-SHA256(audit key, "haltguard-audit-v1|<chain_id>|<index>|<entry_hash>")

and every commit that appended entries writes one line to the **anchor**, an append-only
file outside the database (``<data_dir>/audit-anchor.log``, 0600)::

    <chain_id> <index> <entry_mac> <signature>
    signature = HMAC-SHA256(audit key,
                            "haltguard-audit-anchor-v1|<chain_id>|<index>|<entry_mac>")

``verify`` then fails on an edited entry even with every hash recomputed (its MAC no longer
matches), on entries cut from the end (the anchor names a later entry than the chain has),
and on a replaced entry (its MAC differs from the anchored one). ``haltguard audit
checkpoint`` prints the current anchor line for an operator to keep elsewhere; ``verify``
checks such lines too. Entries written before the chain was keyed (``keyed_from``) stay
checked by their hashes. What this does not protect against is in docs/threat-model.md,
"Audit chain".
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from haltguard.common.clock import utc_now
from haltguard.db import keys
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
    "checkpoint",
    "compute_entry_hash",
    "compute_entry_mac",
    "list_entries",
    "record",
    "verify",
]

GENESIS_HASH = "0" * 64
CHAIN_HEAD_ID = 1
CHAIN_ID_BYTES = 16
AUDIT_DETAILS_BYTES_MAX = 65_536
VERIFY_BATCH_SIZE = 1_000
ANCHOR_LINE_LENGTH_MAX = 256
ANCHOR_LINES_MAX = 50_000_000
_ENTRY_MAC_LABEL = "haltguard-audit-v1"
_ANCHOR_LABEL = "haltguard-audit-anchor-v1"
_ANCHOR_PENDING = "haltguard.audit.anchor_pending"
_ANCHOR_LINE = "haltguard.audit.anchor_line"
_ANCHOR_HOOKED = "haltguard.audit.anchor_hooked"

log = logging.getLogger(__name__)


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


def _mac(key: bytes, *fields: object) -> str:
    message = "|".join(str(field) for field in fields).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def compute_entry_mac(key: bytes, *, chain_id: str, index: int, entry_hash: str) -> str:
    """The seal of one entry: only a holder of the audit key can make it."""
    return _mac(key, _ENTRY_MAC_LABEL, chain_id, index, entry_hash)


def anchor_line(key: bytes, *, chain_id: str, index: int, entry_mac: str) -> str:
    """One signed line of the anchor (with its newline)."""
    signature = _mac(key, _ANCHOR_LABEL, chain_id, index, entry_mac)
    return f"{chain_id} {index} {entry_mac} {signature}\n"


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
    row = {"id": CHAIN_HEAD_ID, "entry_count": 0, "last_hash": GENESIS_HASH,
           "chain_id": secrets.token_hex(CHAIN_ID_BYTES), "key_id": "", "keyed_from": 1}
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
    keyring = keys.keyring_for(session)
    audit_key = keyring.audit_key()
    head = _lock_head(session)
    _take_key(head, keys.key_id(audit_key), keyring)
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
        entry_mac=compute_entry_mac(audit_key, chain_id=head.chain_id, index=index,
                                    entry_hash=entry_hash),
    )
    session.add(entry)
    head.entry_count = index
    head.last_hash = entry_hash
    session.flush()
    _anchor_on_commit(session)
    return entry


def _take_key(head: AuditChainHead, audit_key_id: str, keyring: keys.Keyring) -> None:
    """Bind the chain to this audit key on its first keyed append; refuse another key, whose
    entries no later ``verify`` could tell from forged ones."""
    if not head.chain_id:
        head.chain_id = secrets.token_hex(CHAIN_ID_BYTES)
    if not head.key_id:
        head.key_id = audit_key_id
        return
    if head.key_id != audit_key_id:
        raise AuditRecordError(
            f"this process's audit key ({audit_key_id}) is not the one the audit chain is "
            f"sealed with ({head.key_id}); restore {keyring.keys_dir / keys.AUDIT_KEY_FILE_NAME} "
            f"or set {keys.AUDIT_KEY_ENV} to that key. Nothing was recorded."
        )


# --- the anchor ---------------------------------------------------------------------------


def _anchor_on_commit(session: Session) -> None:
    """Write the anchor line once this transaction commits: a line for an entry that was
    rolled back would later read as entries cut from the chain."""
    session.info[_ANCHOR_PENDING] = True
    if session.info.get(_ANCHOR_HOOKED):
        return
    session.info[_ANCHOR_HOOKED] = True
    event.listen(session, "before_commit", _prepare_anchor_line)
    event.listen(session, "after_commit", _write_anchor_line)
    event.listen(session, "after_rollback", _forget_anchor_line)


def _prepare_anchor_line(session: Session) -> None:
    """The head as this transaction will commit it (a rolled-back savepoint's appends are
    already undone), read while its lock is still held."""
    if not session.info.pop(_ANCHOR_PENDING, False):
        return
    head = _head(session)
    if head is None or head.entry_count < head.keyed_from or not head.chain_id:
        return
    keyring = keys.keyring_for(session)
    audit_key = keyring.audit_key()
    entry_mac = compute_entry_mac(audit_key, chain_id=head.chain_id, index=head.entry_count,
                                  entry_hash=head.last_hash)
    line = anchor_line(audit_key, chain_id=head.chain_id, index=head.entry_count,
                       entry_mac=entry_mac)
    session.info[_ANCHOR_LINE] = (keyring.anchor_file, line)


def _write_anchor_line(session: Session) -> None:
    pending = session.info.pop(_ANCHOR_LINE, None)
    if pending is None:
        return
    path, line = pending
    try:
        keys.append_private_line(path, line)
    except OSError as exc:
        # The entries are committed and sealed; only the anchor lags, which verify reports.
        log.error("could not append to the audit anchor %s: %s; the entries are committed "
                  "and sealed, but the anchor is behind until the next append", path, exc)


def _forget_anchor_line(session: Session) -> None:
    session.info.pop(_ANCHOR_PENDING, None)
    session.info.pop(_ANCHOR_LINE, None)


def checkpoint(session: Session) -> str:
    """The signed anchor line of the chain's current last entry, for an operator to keep
    outside this machine (``verify`` checks it again later); raises when there is none."""
    head = _head(session)
    if head is None or head.entry_count < head.keyed_from or not head.chain_id:
        raise AuditRecordError(
            "the audit chain has no entry sealed with the audit key yet; record an action "
            "first (any operator change will do)"
        )
    audit_key = keys.keyring_for(session).audit_key()
    entry_mac = compute_entry_mac(audit_key, chain_id=head.chain_id, index=head.entry_count,
                                  entry_hash=head.last_hash)
    return anchor_line(audit_key, chain_id=head.chain_id, index=head.entry_count,
                       entry_mac=entry_mac)


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of walking the chain; when not ``ok``, the first entry that is wrong.

    ``anchored_index`` is the newest entry the anchor (and any checkpoints given) vouch for;
    entries after it are protected by their MACs but not yet against being cut off.
    """

    ok: bool
    entries_checked: int
    first_bad_index: int | None = None
    problem: str = ""
    anchored_index: int = 0
    anchor_file: str = ""

    def summary(self) -> str:
        if self.ok:
            noun = "entry" if self.entries_checked == 1 else "entries"
            anchored = (
                f"; anchored up to entry {self.anchored_index} in {self.anchor_file}"
                if self.anchored_index else ""
            )
            return f"OK: {self.entries_checked} audit {noun}, chain intact{anchored}"
        return (
            f"BROKEN at entry {self.first_bad_index}: {self.problem} "
            f"({self.entries_checked} entries before it are intact)"
        )


class AnchorError(ValueError):
    """An anchor line that is not genuine; the message names the file and line."""


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
            AuditEntry.entry_mac,
        )
        .where(AuditEntry.index > index)
        .order_by(AuditEntry.index)
        .limit(VERIFY_BATCH_SIZE)
    )
    return [tuple(row) for row in session.execute(query).all()]


@dataclass(frozen=True)
class _Seal:
    """What ``verify`` checks MACs with: the key, the chain's id and where MACs begin."""

    key: bytes
    chain_id: str
    keyed_from: int
    anchored: dict[int, str]  # entry index -> its anchored MAC


def _check_row(row: Sequence[Any], expected_index: int, prev_hash: str, seal: _Seal) -> str:
    """What is wrong with one entry given the one before it, or ``""``."""
    index, created_at, actor, action, target, details_json, stored_prev, stored_hash, mac = row
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
    return _check_mac(index, stored_hash, mac, seal)


def _check_mac(index: int, entry_hash: str, mac: str, seal: _Seal) -> str:
    if index < seal.keyed_from:
        if mac:
            return (f"carries a MAC although the chain head says entries are sealed only "
                    f"from {seal.keyed_from}: the head was edited")
        return ""
    expected = compute_entry_mac(seal.key, chain_id=seal.chain_id, index=index,
                                 entry_hash=entry_hash)
    if not hmac.compare_digest(expected, mac):
        return ("its MAC does not match the audit key: the entry was edited and its hashes "
                "recomputed, or written around the audit log")
    anchored = seal.anchored.get(index)
    if anchored is not None and not hmac.compare_digest(anchored, mac):
        return "it differs from the entry the anchor recorded: it was replaced"
    return ""


def _read_anchor(
    key: bytes, chain_id: str, path: Path, checkpoints: Iterable[str]
) -> dict[int, str]:
    """Anchored entry MACs of chain ``chain_id`` from the anchor file (if any) and the
    checkpoint lines given; a line whose signature fails is an :class:`AnchorError`."""
    anchored: dict[int, str] = {}
    sources: list[tuple[str, Iterable[str]]] = [("checkpoint", checkpoints)]
    handle = None
    with contextlib.suppress(FileNotFoundError):
        handle = path.open(encoding="ascii", errors="replace")
    if handle is not None:
        sources.insert(0, (str(path), handle))
    try:
        for origin, lines in sources:
            for number, line in enumerate(lines, start=1):
                if number > ANCHOR_LINES_MAX:
                    raise AnchorError(f"{origin} has more than {ANCHOR_LINES_MAX} lines")
                _anchor_entry(key, chain_id, line, f"{origin} line {number}", anchored)
    finally:
        if handle is not None:
            handle.close()
    return anchored


def _anchor_entry(
    key: bytes, chain_id: str, line: str, where: str, anchored: dict[int, str]
) -> None:
    text = line.strip()
    if not text:
        return
    parts = text.split(" ")
    if len(text) > ANCHOR_LINE_LENGTH_MAX or len(parts) != 4 or not parts[1].isdigit():
        raise AnchorError(f"{where} is not an anchor line (chain index mac signature)")
    line_chain, index_text, entry_mac, _signature = parts
    if line_chain != chain_id:
        return  # another database's chain, e.g. a data directory reused for a new database
    index = int(index_text)
    if anchor_line(key, chain_id=line_chain, index=index, entry_mac=entry_mac) != text + "\n":
        raise AnchorError(f"{where} is not signed with the audit key: it was forged or "
                            "damaged")
    known = anchored.setdefault(index, entry_mac)
    if known != entry_mac:
        raise AnchorError(f"{where} records another MAC for entry {index} than an earlier "
                            "line: one of them was forged")


def _head(session: Session) -> AuditChainHead | None:
    query = (
        select(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .execution_options(populate_existing=True)
    )
    return session.execute(query).scalar_one_or_none()


def _seal_for(session: Session, checkpoints: Iterable[str]) -> tuple[_Seal, str]:
    """How to check MACs, or a problem that stops ``verify`` before the walk."""
    keyring = keys.keyring_for(session)
    head = _head(session)
    if head is None or not head.key_id:
        keyed_from = 1 if head is None else head.keyed_from
        return _Seal(b"", "" if head is None else head.chain_id, keyed_from, {}), ""
    audit_key = keyring.audit_key()
    if head.key_id != keys.key_id(audit_key):
        return _Seal(b"", head.chain_id, head.keyed_from, {}), (
            f"the audit chain is sealed with audit key {head.key_id}, but this process has "
            f"key {keys.key_id(audit_key)}: restore "
            f"{keyring.keys_dir / keys.AUDIT_KEY_FILE_NAME} or set {keys.AUDIT_KEY_ENV} (or the "
            "head's key id was edited)"
        )
    try:
        anchored = _read_anchor(audit_key, head.chain_id, keyring.anchor_file, checkpoints)
    except (AnchorError, OSError) as exc:
        return _Seal(audit_key, head.chain_id, head.keyed_from, {}), f"the anchor: {exc}"
    return _Seal(audit_key, head.chain_id, head.keyed_from, anchored), ""


def verify(session: Session, *, checkpoints: Iterable[str] = ()) -> AuditVerification:
    """Walk the whole chain in index order and name the first entry that is wrong.

    Detects edited fields (hash or MAC mismatch, even with every hash recomputed), removed
    entries (index gap, a chain shorter than its head records, or than the anchor file and
    the ``checkpoints`` given record), reordered or inserted entries (broken prev_hash link),
    replaced entries (MAC differs from the anchored one) and entries written around
    ``record`` (beyond the head, or without a valid MAC). Appends made while it runs are
    checked too; it reads in batches of ``VERIFY_BATCH_SIZE``.
    """
    seal, problem = _seal_for(session, checkpoints)
    anchor_file = str(keys.keyring_for(session).anchor_file)
    if problem:
        return AuditVerification(False, 0, 1, problem, anchor_file=anchor_file)
    outcome = _walk(session, seal)
    if not outcome.ok:
        return outcome
    anchored_index = max(seal.anchored, default=0)
    if anchored_index > outcome.entries_checked:
        return AuditVerification(
            False, outcome.entries_checked, outcome.entries_checked + 1,
            f"missing: the anchor records entry {anchored_index} but the chain ends at "
            f"{outcome.entries_checked}; entries were removed from the end",
            anchor_file=anchor_file,
        )
    return AuditVerification(True, outcome.entries_checked, anchored_index=anchored_index,
                             anchor_file=anchor_file)


def _walk(session: Session, seal: _Seal) -> AuditVerification:
    last_index = 0
    last_hash = GENESIS_HASH
    head_count_seen = 0
    while True:
        rows = _entries_after(session, last_index)
        for row in rows:
            problem = _check_row(row, last_index + 1, last_hash, seal)
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
