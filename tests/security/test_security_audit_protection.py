"""The audit history cannot be rewritten by whoever can write the database: the database
refuses UPDATE and DELETE, every entry is sealed with a key the database does not hold, and
an anchor outside the database catches entries cut from the end."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from security_helpers import SQLITE_ONLY, START, lift_audit_protection, use_key_files
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory, session_scope
from haltguard.security import audit
from haltguard.security.models import AuditChainHead, AuditEntry


def append_entries(factory: sessionmaker[Session], count: int, first: int = 1) -> None:
    with session_scope(factory) as session:
        for number in range(first, first + count):
            audit.record(
                session, actor="operator:akiko", action="market.halt",
                target=f"market:BTC-JPY-{number}", details={"gap_bp": 150 + number},
                at=START + timedelta(seconds=number),
            )


def verify(factory: sessionmaker[Session], *checkpoints: str) -> audit.AuditVerification:
    with session_scope(factory) as session:
        if checkpoints:
            return audit.verify(session, checkpoints=checkpoints)
        return audit.verify(session)


def anchor_path(tmp_path: Path) -> Path:
    return tmp_path / "audit-anchor.log"


def recompute_chain_from(session: Session, first_index: int) -> None:
    """Rewrite every hash from ``first_index`` on, and the head, as the old unkeyed chain
    let anyone do: the content-hash chain is intact again afterwards."""
    rows = session.query(AuditEntry).order_by(AuditEntry.index).all()
    previous = audit.GENESIS_HASH
    for entry in rows:
        if entry.index >= first_index:
            entry.prev_hash = previous
            entry.entry_hash = audit.compute_entry_hash(
                index=entry.index, created_at=entry.created_at, actor=entry.actor,
                action=entry.action, target=entry.target,
                details=audit.entry_details(entry), prev_hash=previous,
            )
        previous = entry.entry_hash
    head = session.get(AuditChainHead, 1)
    assert head is not None
    head.last_hash = previous
    head.entry_count = len(rows)
    session.flush()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_entries SET target = 'market:ETH-JPY' WHERE entry_index = 2",
     "DELETE FROM audit_entries WHERE entry_index = 3"],
)
def test_the_database_refuses_to_change_or_delete_an_audit_entry(
    session_factory: sessionmaker[Session], engine: Engine, statement: str,
) -> None:
    append_entries(session_factory, 3)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    with engine.connect() as connection:
        targets = connection.execute(
            text("SELECT target FROM audit_entries ORDER BY entry_index")
        ).scalars().all()
    assert targets == ["market:BTC-JPY-1", "market:BTC-JPY-2", "market:BTC-JPY-3"]


def test_an_edit_with_every_later_hash_and_the_head_recomputed_fails_verify(
    session_factory: sessionmaker[Session],
) -> None:
    append_entries(session_factory, 6)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        session.execute(text(
            "UPDATE audit_entries SET actor = 'operator:mallory' WHERE entry_index = 3"
        ))
        session.expire_all()
        recompute_chain_from(session, 3)
    outcome = verify(session_factory)
    assert (outcome.ok, outcome.first_bad_index) == (False, 3)
    assert "MAC does not match the audit key" in outcome.problem


def test_entries_cut_from_the_end_with_the_head_rewritten_fail_verify(
    session_factory: sessionmaker[Session],
) -> None:
    append_entries(session_factory, 4)
    append_entries(session_factory, 4, first=5)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        kept = session.get(AuditEntry, 5)
        assert kept is not None
        session.execute(text("DELETE FROM audit_entries WHERE entry_index > 5"))
        session.execute(
            text("UPDATE audit_chain_head SET entry_count = 5, last_hash = :h"),
            {"h": kept.entry_hash},
        )
    outcome = verify(session_factory)
    assert (outcome.ok, outcome.first_bad_index) == (False, 6)
    assert "the anchor records entry 8 but the chain ends at 5" in outcome.problem


def test_a_replaced_last_entry_resealed_without_the_key_fails_verify(
    session_factory: sessionmaker[Session],
) -> None:
    append_entries(session_factory, 3)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        session.execute(text("UPDATE audit_entries SET target = 'market:x', entry_mac = :m "
                             "WHERE entry_index = 3"), {"m": "a" * 64})
        session.expire_all()
        recompute_chain_from(session, 3)
    outcome = verify(session_factory)
    assert (outcome.ok, outcome.first_bad_index) == (False, 3)


@SQLITE_ONLY
def test_every_commit_that_appends_writes_one_signed_anchor_line_to_an_owner_only_file(
    session_factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    append_entries(session_factory, 3)
    append_entries(session_factory, 2, first=4)
    lines = anchor_path(tmp_path).read_text().splitlines()
    assert [line.split(" ")[1] for line in lines] == ["3", "5"]
    assert stat.S_IMODE(anchor_path(tmp_path).stat().st_mode) == 0o600
    outcome = verify(session_factory)
    assert outcome.ok and outcome.anchored_index == 5


@SQLITE_ONLY
def test_a_rolled_back_append_writes_no_anchor_line(
    session_factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    append_entries(session_factory, 2)
    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        audit.record(session, actor="system:x", action="a.b", target="t", details={})
        raise RuntimeError("the action failed after auditing")
    assert [line.split(" ")[1] for line in anchor_path(tmp_path).read_text().splitlines()] \
        == ["2"]
    assert verify(session_factory).ok


@SQLITE_ONLY
def test_a_forged_anchor_line_fails_verify(
    session_factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    append_entries(session_factory, 2)
    chain_id, _index, entry_mac, signature = anchor_path(tmp_path).read_text().split()
    with anchor_path(tmp_path).open("a") as handle:
        handle.write(f"{chain_id} 1 {entry_mac} {signature}\n")
    outcome = verify(session_factory)
    assert not outcome.ok
    assert "line 2 is not signed with the audit key" in outcome.problem


@SQLITE_ONLY
def test_a_kept_checkpoint_catches_truncation_after_the_anchor_file_is_lost(
    session_factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    append_entries(session_factory, 5)
    with session_scope(session_factory) as session:
        kept_line = audit.checkpoint(session)
        kept = session.get(AuditEntry, 4)
        assert kept is not None
        lift_audit_protection(session)
        session.execute(text("DELETE FROM audit_entries WHERE entry_index = 5"))
        session.execute(text("UPDATE audit_chain_head SET entry_count = 4, last_hash = :h"),
                        {"h": kept.entry_hash})
    anchor_path(tmp_path).unlink()
    assert verify(session_factory).ok, "without the anchor nothing shows the cut"
    outcome = verify(session_factory, kept_line)
    assert (outcome.ok, outcome.first_bad_index) == (False, 5)


@SQLITE_ONLY
def test_appending_with_another_audit_key_is_refused_and_verify_names_the_keys(
    session_factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    append_entries(session_factory, 2)
    use_key_files(monkeypatch)
    key_file = tmp_path / "keys" / "audit.key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(os.urandom(32).hex() + "\n")
    key_file.chmod(0o600)
    factory = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'haltguard.sqlite3'}"))
    with pytest.raises(audit.AuditRecordError, match="not the one the audit chain is sealed"):
        append_entries(factory, 1, first=3)
    outcome = verify(factory)
    assert not outcome.ok and "restore" in outcome.problem and "audit.key" in outcome.problem


def test_the_audit_key_is_an_owner_only_file_in_an_owner_only_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_key_files(monkeypatch)
    engine = make_engine(f"sqlite:///{tmp_path / 'haltguard.sqlite3'}")
    upgrade(engine)
    append_entries(make_session_factory(engine), 1)
    engine.dispose()
    keys_dir = tmp_path / "keys"
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys_dir / "audit.key").stat().st_mode) == 0o600


def test_entries_from_before_the_upgrade_still_verify_and_later_ones_are_sealed(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'haltguard.sqlite3'}")
    upgrade(engine, "0002")
    with engine.begin() as connection:
        previous = audit.GENESIS_HASH
        for index in (1, 2):
            at = START + timedelta(seconds=index)
            entry_hash = audit.compute_entry_hash(
                index=index, created_at=at, actor="cli:root", action="operator.created",
                target=f"operator:o{index}", details={}, prev_hash=previous,
            )
            connection.execute(text(
                "INSERT INTO audit_entries (entry_index, created_at, actor, action, target, "
                "details_json, prev_hash, entry_hash) VALUES (:i, :at, 'cli:root', "
                "'operator.created', :t, '{}', :p, :h)"
            ), {"i": index, "at": at.replace(tzinfo=None), "t": f"operator:o{index}",
                "p": previous, "h": entry_hash})
            previous = entry_hash
        connection.execute(text("INSERT INTO audit_chain_head (id, entry_count, last_hash) "
                                "VALUES (1, 2, :h)"), {"h": previous})
    upgrade(engine)
    factory = make_session_factory(engine)
    append_entries(factory, 1, first=3)
    with session_scope(factory) as session:
        head = session.get(AuditChainHead, 1)
        third = session.get(AuditEntry, 3)
        assert head is not None and third is not None
        assert head.keyed_from == 3 and third.entry_mac != ""
    outcome = verify(factory)
    assert outcome.ok and outcome.entries_checked == 3 and outcome.anchored_index == 3
    engine.dispose()
