"""The compensation service over a database (SQLite and PostgreSQL): a run stored whole and
frozen, four-eyes approval, payout bookkeeping, the accounting CSV, statements once paid."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from haltguard.compensation import flows, service
from haltguard.compensation.errors import (
    FourEyesError,
    RunNotFoundError,
    RunStateError,
    StaleDigestError,
)
from haltguard.compensation.models import RunState
from haltguard.incidents import flows as incident_flows
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.responders.service import ManualClock

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
DIGEST = "ab" * 32
POLICY = {"id": "goodwill-jpy", "version": 1, "kind": "fixed_amount", "currency": "JPY",
          "description": {"ja": "一律 1,000 円をお支払いします。", "en": "1,000 yen each."}}


def _run(session: Session, *, proposer: str = "alice", accounts: int = 3) -> int:
    incident = incident_flows.open_incident(
        session, IncidentCreate(title="Engine stalled", category=Category.SOFTWARE_BUG,
                                severity=Severity.SEV3), actor=proposer, clock=ManualClock(NOW))
    lines = [service.LineToStore(
        line_no=number, account=100 + number, currency="JPY", amount_minor=1_000 * number,
        parts=[{"policy": "goodwill-jpy", "amount_minor": 1_000 * number,
                "inputs": {"kind": "fixed_amount", "amount_minor": 1_000 * number}}])
        for number in range(1, accounts + 1)]
    data = service.RunToStore(
        incident_id=incident.id, proposed_by=proposer, note="", policies=[POLICY],
        cutoff={"seq": 10, "ts_ns": 1, "time": "2026-12-07T00:00:00+00:00"}, window={},
        references=[], digest=DIGEST, totals={"JPY": sum(line.amount_minor for line in lines)},
        currency_scales={"JPY": 1}, histogram=[], top_accounts=[], supersedes_run_id=None)
    run = service.store_run(session, data, lines, now=NOW)
    session.commit()
    return run.id


def test_a_stored_run_keeps_every_line_and_its_counts(session: Session) -> None:
    run_id = _run(session)
    read = service.run_read(session, service.get_run(session, run_id))
    assert (read.line_count, read.account_count, read.totals) == (3, 3, {"JPY": 6_000})
    assert read.state is RunState.COMPUTED
    lines, total = service.list_lines(session, run_id, offset=1, limit=1)
    assert total == 3 and [line.account for line in lines] == [102]


def test_the_database_refuses_to_change_a_computed_run(session: Session) -> None:
    run_id = _run(session)
    for statement in ("UPDATE compensation_lines SET amount_minor = 999999",
                      "UPDATE compensation_runs SET totals = '{}'",
                      "DELETE FROM compensation_runs"):
        with pytest.raises(DBAPIError, match="immutable"):
            session.execute(text(statement))
        session.rollback()
    assert service.get_run(session, run_id).totals == {"JPY": 6_000}


def test_the_proposer_cannot_approve_and_nobody_approves_twice(session: Session) -> None:
    run_id = _run(session, proposer="alice")
    with pytest.raises(FourEyesError):
        service.approve(session, run_id, approver="operator:alice", digest=DIGEST, note="",
                        now=NOW)
    with pytest.raises(StaleDigestError):
        service.approve(session, run_id, approver="carol", digest="cd" * 32, note="", now=NOW)
    service.approve(session, run_id, approver="carol", digest=DIGEST, note="ok", now=NOW)
    with pytest.raises(RunStateError, match="already approved"):
        service.approve(session, run_id, approver="dave", digest=DIGEST, note="", now=NOW)
    assert service.run_read(session, service.get_run(session, run_id)).approved_by == "carol"


def test_a_payout_is_paid_only_when_the_credited_amounts_match_the_run(session: Session) -> None:
    run_id = _run(session)
    service.approve(session, run_id, approver="carol", digest=DIGEST, note="", now=NOW)
    service.start_payout(session, run_id, actor="carol", now=NOW)
    service.record_progress(session, run_id, lines_paid=3, amounts_paid={"JPY": 5_999},
                            now=NOW)
    with pytest.raises(RunStateError, match="not marked paid"):
        service.finish_payout(session, run_id, actor="carol", error="", now=NOW)
    service.record_progress(session, run_id, lines_paid=3, amounts_paid={"JPY": 6_000},
                            now=NOW)
    payout = service.finish_payout(session, run_id, actor="carol", error="", now=NOW)
    assert payout.finished_at == NOW
    assert service.payout_read(session, run_id).state is RunState.PAID


def test_a_stopped_payout_keeps_its_reason_and_resumes_as_a_new_attempt(session: Session) -> None:
    run_id = _run(session)
    service.approve(session, run_id, approver="carol", digest=DIGEST, note="", now=NOW)
    service.start_payout(session, run_id, actor="carol", now=NOW)
    service.record_progress(session, run_id, lines_paid=1, amounts_paid={"JPY": 1_000},
                            now=NOW)
    stopped = service.finish_payout(session, run_id, actor="carol",
                                    error="venue_unavailable: restarting", now=NOW)
    assert stopped.finished_at is None and "restarting" in stopped.last_error
    assert service.payout_read(session, run_id).state is RunState.PAYING
    resumed = service.start_payout(session, run_id, actor="dave", now=NOW)
    assert resumed.attempts == 2 and resumed.last_error == ""


def test_the_accounting_csv_has_exact_amounts_and_the_digest(session: Session) -> None:
    run_id = _run(session, accounts=25_003)
    text_out = "".join(service.export_csv(session, run_id))
    rows = list(csv.DictReader(io.StringIO(text_out)))
    assert len(rows) == 25_003
    assert sum(int(row["amount_minor"]) for row in rows) \
        == service.get_run(session, run_id).totals["JPY"]
    assert rows[-1]["amount"] == "25003000" and rows[0]["digest"] == DIGEST


def test_explaining_an_account_without_a_line_says_so(session: Session) -> None:
    run_id = _run(session)
    assert service.explain(session, run_id, 102).lines[0].amount_minor == 2_000
    with pytest.raises(RunNotFoundError, match="no line"):
        service.explain(session, run_id, 999)
    with pytest.raises(RunNotFoundError):
        service.get_run(session, run_id + 1)


def test_statements_are_written_once_per_paid_account_in_both_languages(
    session: Session,
) -> None:
    run_id = _run(session)
    with pytest.raises(RunStateError, match="not paid"):
        flows.write_statements(session, run_id, now=NOW)
    service.approve(session, run_id, approver="carol", digest=DIGEST, note="", now=NOW)
    service.start_payout(session, run_id, actor="carol", now=NOW)
    service.record_progress(session, run_id, lines_paid=3, amounts_paid={"JPY": 6_000},
                            now=NOW)
    service.finish_payout(session, run_id, actor="carol", error="", now=NOW)
    assert flows.write_statements(session, run_id, now=NOW) == 3
    assert flows.write_statements(session, run_id, now=NOW) == 0
    items, total = service.list_statements(session, run_id, account=103)
    assert total == 1
    assert "口座番号 103" in items[0].body_ja and "JPY 3,000" in items[0].body_ja
    assert "account 103" in items[0].body_en and "goodwill-jpy" in items[0].body_en
