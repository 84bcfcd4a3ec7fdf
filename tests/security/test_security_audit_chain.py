"""The audit chain: appends link by hash; verify names the first edited, removed, reordered
or inserted entry; concurrent writers keep one valid chain."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta

import pytest
from security_helpers import SQLITE_ONLY, START, lift_audit_protection
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.session import session_scope
from haltguard.security import audit
from haltguard.security.models import AuditChainHead, AuditEntry


def append_entries(factory: sessionmaker[Session], count: int) -> None:
    with session_scope(factory) as session:
        for number in range(1, count + 1):
            audit.record(
                session,
                actor="operator:akiko",
                action="market.halt",
                target=f"market:BTC-JPY-{number}",
                details={"reason": "price gap", "gap_bp": 150 + number, "markets": ["BTC-JPY"]},
                at=START + timedelta(seconds=number),
            )


def verify(factory: sessionmaker[Session]) -> audit.AuditVerification:
    with session_scope(factory) as session:
        return audit.verify(session)


@SQLITE_ONLY
def test_empty_chain_verifies(session_factory: sessionmaker[Session]) -> None:
    outcome = verify(session_factory)
    assert outcome.ok and outcome.entries_checked == 0


@SQLITE_ONLY
def test_appended_entries_link_each_to_the_previous_hash(
    session_factory: sessionmaker[Session],
) -> None:
    append_entries(session_factory, 3)
    with session_scope(session_factory) as session:
        entries = list(session.execute(select(AuditEntry).order_by(AuditEntry.index)).scalars())
    assert [entry.index for entry in entries] == [1, 2, 3]
    assert entries[0].prev_hash == audit.GENESIS_HASH
    assert entries[1].prev_hash == entries[0].entry_hash
    assert entries[2].prev_hash == entries[1].entry_hash


@SQLITE_ONLY
def test_entry_hash_is_sha256_of_the_documented_canonical_json(
    session_factory: sessionmaker[Session],
) -> None:
    append_entries(session_factory, 1)
    with session_scope(session_factory) as session:
        entry = session.execute(select(AuditEntry)).scalar_one()
        payload = {
            "actor": entry.actor,
            "action": entry.action,
            "created_at": "2026-03-02T09:00:01.000000Z",
            "details": json.loads(entry.details_json),
            "index": 1,
            "prev_hash": "0" * 64,
            "target": entry.target,
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert entry.entry_hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_intact_chain_verifies_with_its_count(session_factory: sessionmaker[Session]) -> None:
    append_entries(session_factory, 25)
    outcome = verify(session_factory)
    assert outcome.ok
    assert outcome.entries_checked == 25
    assert outcome.summary().startswith("OK: 25 audit entries, chain intact; anchored up to "
                                        "entry 25 in ")


def test_edited_details_are_named_by_index(session_factory: sessionmaker[Session]) -> None:
    append_entries(session_factory, 10)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        session.execute(
            text("UPDATE audit_entries SET details_json = :d WHERE entry_index = 7"),
            {"d": '{"gap_bp":1,"markets":["BTC-JPY"],"reason":"price gap"}'},
        )
    outcome = verify(session_factory)
    assert not outcome.ok
    assert outcome.first_bad_index == 7
    assert outcome.entries_checked == 6
    assert "edited" in outcome.problem


@SQLITE_ONLY
def test_edited_actor_is_named(session_factory: sessionmaker[Session]) -> None:
    append_entries(session_factory, 5)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        session.execute(
            update(AuditEntry).where(AuditEntry.index == 2).values(actor="operator:someone-else")
        )
    outcome = verify(session_factory)
    assert (outcome.ok, outcome.first_bad_index) == (False, 2)


@SQLITE_ONLY
def test_edit_with_recomputed_hash_is_caught_by_its_mac(
    session_factory: sessionmaker[Session],
) -> None:
    append_entries(session_factory, 6)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        entry = session.get(AuditEntry, 3)
        assert entry is not None
        entry.target = "market:ETH-JPY"
        entry.entry_hash = audit.compute_entry_hash(
            index=3, created_at=entry.created_at, actor=entry.actor, action=entry.action,
            target=entry.target, details=audit.entry_details(entry), prev_hash=entry.prev_hash,
        )
    outcome = verify(session_factory)
    assert (outcome.ok, outcome.first_bad_index) == (False, 3)
    assert "MAC does not match the audit key" in outcome.problem


def test_deleted_entry_is_named_as_missing(session_factory: sessionmaker[Session]) -> None:
    append_entries(session_factory, 10)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        session.execute(delete(AuditEntry).where(AuditEntry.index == 4))
    outcome = verify(session_factory)
    assert not outcome.ok
    assert outcome.first_bad_index == 4
    assert "missing" in outcome.problem and "removed" in outcome.problem


@SQLITE_ONLY
def test_entries_cut_from_the_end_are_named(session_factory: sessionmaker[Session]) -> None:
    append_entries(session_factory, 8)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        session.execute(delete(AuditEntry).where(AuditEntry.index >= 7))
    outcome = verify(session_factory)
    assert (outcome.ok, outcome.first_bad_index) == (False, 7)
    assert "removed from the end" in outcome.problem


def test_swapped_entries_are_named_as_reordered(session_factory: sessionmaker[Session]) -> None:
    append_entries(session_factory, 10)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        session.execute(text("UPDATE audit_entries SET entry_index = -5 WHERE entry_index = 5"))
        session.execute(text("UPDATE audit_entries SET entry_index = 5 WHERE entry_index = 6"))
        session.execute(text("UPDATE audit_entries SET entry_index = 6 WHERE entry_index = -5"))
    outcome = verify(session_factory)
    assert not outcome.ok
    assert outcome.first_bad_index == 5
    assert "reordered" in outcome.problem


@SQLITE_ONLY
def test_entry_inserted_in_the_middle_is_named(session_factory: sessionmaker[Session]) -> None:
    append_entries(session_factory, 5)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        for index in (5, 4):
            session.execute(
                update(AuditEntry).where(AuditEntry.index == index).values(index=index + 1)
            )
        forged = session.get(AuditEntry, 3)
        assert forged is not None
        session.add(
            AuditEntry(
                index=4, created_at=forged.created_at, actor="operator:mallory",
                action="market.resume", target="market:BTC-JPY", details_json="{}",
                prev_hash=forged.entry_hash, entry_hash="f" * 64,
            )
        )
        session.execute(update(AuditChainHead).values(entry_count=6))
    outcome = verify(session_factory)
    assert (outcome.ok, outcome.first_bad_index) == (False, 4)


@SQLITE_ONLY
def test_entry_written_around_record_is_named(session_factory: sessionmaker[Session]) -> None:
    append_entries(session_factory, 3)
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        last = session.get(AuditEntry, 3)
        assert last is not None
        details = {"note": "forged"}
        forged_hash = audit.compute_entry_hash(
            index=4, created_at=last.created_at, actor="operator:mallory", action="x.y",
            target="t", details=details, prev_hash=last.entry_hash,
        )
        session.add(
            AuditEntry(
                index=4, created_at=last.created_at, actor="operator:mallory", action="x.y",
                target="t", details_json=audit.canonical_json(details),
                prev_hash=last.entry_hash, entry_hash=forged_hash,
            )
        )
    outcome = verify(session_factory)
    assert (outcome.ok, outcome.first_bad_index) == (False, 4)
    assert "written around the audit log" in outcome.problem


@SQLITE_ONLY
def test_record_refuses_details_that_are_not_json(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session, pytest.raises(audit.AuditRecordError) as err:
        audit.record(session, actor="system:x", action="a.b", target="t", details={"x": {1, 2}})
    assert "must be JSON" in str(err.value)
    assert verify(session_factory).entries_checked == 0


@SQLITE_ONLY
def test_record_refuses_an_empty_actor(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session, pytest.raises(audit.AuditRecordError):
        audit.record(session, actor=" ", action="a.b", target="t", details={})


@SQLITE_ONLY
def test_rolled_back_action_leaves_no_audit_entry(session_factory: sessionmaker[Session]) -> None:
    append_entries(session_factory, 2)
    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        audit.record(session, actor="system:x", action="a.b", target="t", details={})
        raise RuntimeError("the action failed after auditing")
    append_entries(session_factory, 1)
    outcome = verify(session_factory)
    assert outcome.ok and outcome.entries_checked == 3


def test_concurrent_appends_from_threads_keep_one_valid_chain(
    session_factory: sessionmaker[Session],
) -> None:
    writers, appends_each = 8, 25
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            start.wait()
            for sequence in range(appends_each):
                with session_scope(session_factory) as session:
                    session.execute(select(AuditEntry.index).limit(1)).all()
                    audit.record(
                        session,
                        actor=f"system:writer-{number}",
                        action="test.append",
                        target=f"writer:{number}",
                        details={"sequence": sequence},
                    )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    outcome = verify(session_factory)
    assert outcome.ok, outcome.summary()
    assert outcome.entries_checked == writers * appends_each
    with session_scope(session_factory) as session:
        head = session.get(AuditChainHead, 1)
        assert head is not None and head.entry_count == writers * appends_each


@SQLITE_ONLY
def test_list_entries_pages_newest_first(session_factory: sessionmaker[Session]) -> None:
    append_entries(session_factory, 7)
    with session_scope(session_factory) as session:
        page, total = audit.list_entries(session, offset=2, limit=3)
        assert total == 7
        assert [entry.index for entry in page] == [5, 4, 3]
        oldest, _ = audit.list_entries(session, limit=2, newest_first=False)
        assert [entry.index for entry in oldest] == [1, 2]
