"""What the compensation domain does with its tables, as plain functions over a session.

The computation itself is pure (:mod:`haltguard.compensation.compute`); this module stores
a computed run whole, reads it back (lines, one account's explanation, the accounting CSV),
records the second operator's approval, keeps a payout's progress and writes the statements.
Every change is one audit entry and one line on the incident's timeline
(``incidents.service.record``), carrying the run's digest. Functions flush, never commit:
the caller's transaction makes each step durable whole or not at all. ``now`` is passed in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from haltguard.compensation.errors import (
    FourEyesError,
    RunNotFoundError,
    RunStateError,
    StaleDigestError,
)
from haltguard.compensation.models import (
    CompensationApproval,
    CompensationLine,
    CompensationPayout,
    CompensationRun,
    CompensationStatement,
    Explanation,
    LineRead,
    PayoutRead,
    RunRead,
    RunState,
    StatementRead,
    StatementStatus,
)
from haltguard.compensation.texts import format_minor
from haltguard.incidents import service as incidents
from haltguard.incidents.models import Incident, TimelineKind

LINE_INSERT_BATCH_MAX = 20_000
"""Lines written per INSERT statement when a run is stored (bounded memory per batch)."""
CSV_BATCH_LINES_MAX = 10_000
"""Lines read per query while the accounting CSV streams out."""
CSV_HEADER = ("run_id", "line_no", "account", "currency", "amount_minor", "amount", "digest")
CSV_CHUNK_BYTES = 1 << 20
"""The accounting CSV goes out in pieces of about this size."""


def run_target(run_id: int) -> str:
    """How the audit chain names a run."""
    return f"compensation-run-{run_id}"


# --- runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineToStore:
    """A computed line as the store takes it (the computation's own type stays pure)."""

    line_no: int
    account: int
    currency: str
    amount_minor: int
    parts: list[dict[str, Any]]


@dataclass(frozen=True)
class RunToStore:
    """Everything a computed run binds and yields, ready to be written once."""

    incident_id: int
    proposed_by: str
    note: str
    policies: list[dict[str, Any]]
    cutoff: dict[str, Any]
    window: dict[str, Any]
    references: list[dict[str, Any]]
    digest: str
    totals: dict[str, int]
    currency_scales: dict[str, int]
    histogram: list[dict[str, Any]]
    top_accounts: list[dict[str, Any]]
    supersedes_run_id: int | None


def get_run(session: Session, run_id: int) -> CompensationRun:
    run = session.get(CompensationRun, run_id)
    if run is None:
        raise RunNotFoundError(
            f"there is no compensation run {run_id}",
            next_step="list the runs with `haltguard compensation show`",
            message_ja=f"補償ラン {run_id} は存在しません",
        )
    return run


def store_run(
    session: Session, data: RunToStore, lines: Sequence[LineToStore], *, now: datetime
) -> CompensationRun:
    """Write a computed run and all its lines, then one timeline entry and audit entry with
    its digest. Lines are inserted in batches of :data:`LINE_INSERT_BATCH_MAX`."""
    incident = incidents.get(session, data.incident_id)
    if data.supersedes_run_id is not None:
        earlier = get_run(session, data.supersedes_run_id)
        if earlier.incident_id != data.incident_id:
            raise RunStateError(
                f"run {earlier.id} belongs to another incident; a recomputation supersedes a "
                "run of the same incident",
                next_step="name a run of this incident in supersedes_run_id, or none",
                message_ja=f"ラン {earlier.id} は別のインシデントのものです",
            )
    run = CompensationRun(
        incident_id=data.incident_id, proposed_by=data.proposed_by, proposed_at=now,
        note=data.note, policies=data.policies, cutoff=data.cutoff, window=data.window,
        references=data.references, digest=data.digest, line_count=len(lines),
        account_count=len({line.account for line in lines}), totals=data.totals,
        currency_scales=data.currency_scales, histogram=data.histogram,
        top_accounts=data.top_accounts, supersedes_run_id=data.supersedes_run_id,
    )
    session.add(run)
    session.flush()
    _insert_lines(session, run.id, lines)
    totals_text = ", ".join(
        f"{currency} {format_minor(total, data.currency_scales.get(currency, 1))}"
        for currency, total in sorted(data.totals.items())) or "nothing owed"
    incidents.record(
        session, incident, kind=TimelineKind.APPROVAL_REQUESTED, actor=data.proposed_by,
        now=now, audit_action="compensation.run.propose",
        message=f"compensation run {run.id} computed: {run.line_count} lines, {totals_text}; "
        "waiting for a second operator's approval",
        details={"run_id": run.id, "digest": run.digest, "lines": run.line_count,
                 "totals": dict(data.totals)},
    )
    return run


def _insert_lines(session: Session, run_id: int, lines: Sequence[LineToStore]) -> None:
    """The DB-API's own executemany with the parts encoded once by msgspec: a million lines
    is the size the issue asks for, and going through SQLAlchemy's per-row parameter and
    JSON processing took six times as long (50 s against 8 s for 1,000,000 lines on SQLite).
    The columns are those of :class:`CompensationLine`; PostgreSQL casts the text to JSON."""
    connection = session.connection()
    if connection.dialect.paramstyle == "qmark":
        values = "?, ?, ?, ?, ?, ?"
    else:
        values = "%s, %s, %s, %s, %s, CAST(%s AS JSON)"
    statement = (f"INSERT INTO {CompensationLine.__tablename__} "
                 f"(run_id, line_no, account, currency, amount_minor, parts) VALUES ({values})")
    encode = msgspec.json.encode
    for start in range(0, len(lines), LINE_INSERT_BATCH_MAX):
        connection.exec_driver_sql(statement, [
            (run_id, line.line_no, line.account, line.currency, line.amount_minor,
             encode(line.parts).decode())
            for line in lines[start:start + LINE_INSERT_BATCH_MAX]
        ])


def approval_of(session: Session, run_id: int) -> CompensationApproval | None:
    return session.scalar(
        select(CompensationApproval).where(CompensationApproval.run_id == run_id)
    )


def payout_of(session: Session, run_id: int) -> CompensationPayout | None:
    return session.get(CompensationPayout, run_id)


def run_state(session: Session, run: CompensationRun) -> RunState:
    payout = payout_of(session, run.id)
    if payout is not None:
        return RunState.PAID if payout.finished_at is not None else RunState.PAYING
    if approval_of(session, run.id) is not None:
        return RunState.APPROVED
    return RunState.COMPUTED


def run_read(session: Session, run: CompensationRun) -> RunRead:
    approval = approval_of(session, run.id)
    return RunRead(
        id=run.id, incident_id=run.incident_id, state=run_state(session, run),
        proposed_by=run.proposed_by, proposed_at=run.proposed_at, note=run.note,
        policies=run.policies, cutoff=run.cutoff, window=run.window, references=run.references,
        digest=run.digest, line_count=run.line_count, account_count=run.account_count,
        totals=run.totals, currency_scales=run.currency_scales, histogram=run.histogram,
        top_accounts=run.top_accounts, supersedes_run_id=run.supersedes_run_id,
        approved_by=approval.approved_by if approval else None,
        approved_at=approval.approved_at if approval else None,
    )


def list_runs(
    session: Session, *, incident_id: int | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[CompensationRun], int]:
    query = select(CompensationRun)
    if incident_id is not None:
        query = query.where(CompensationRun.incident_id == incident_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(CompensationRun.id.desc())
                                .offset(offset).limit(limit)))
    return rows, total


# --- lines, explanation, accounting export ----------------------------------------------


def _line_read(line: CompensationLine) -> LineRead:
    return LineRead(line_no=line.line_no, account=line.account, currency=line.currency,
                    amount_minor=line.amount_minor, parts=line.parts)


def list_lines(
    session: Session, run_id: int, *, offset: int = 0, limit: int = 50
) -> tuple[list[LineRead], int]:
    total = get_run(session, run_id).line_count
    rows = session.scalars(
        select(CompensationLine).where(CompensationLine.run_id == run_id)
        .order_by(CompensationLine.line_no).offset(offset).limit(limit)
    )
    return [_line_read(line) for line in rows], total


def explain(session: Session, run_id: int, account: int) -> Explanation:
    """One account's lines with the inputs each policy used, and the rules as published."""
    run = get_run(session, run_id)
    lines = [_line_read(line) for line in session.scalars(
        select(CompensationLine)
        .where(CompensationLine.run_id == run_id, CompensationLine.account == account)
        .order_by(CompensationLine.line_no)
    )]
    if not lines:
        raise RunNotFoundError(
            f"account {account} has no line in run {run_id}: the policies gave it nothing",
            next_step="check the account number, or read the run's policies and cut-off with "
            "`haltguard compensation show RUN`",
            message_ja=f"口座 {account} はラン {run_id} の補償対象ではありません",
        )
    return Explanation(run_id=run.id, account=account, digest=run.digest, cutoff=run.cutoff,
                       window=run.window, references=run.references, policies=run.policies,
                       lines=lines)


def export_csv(session: Session, run_id: int) -> Iterator[str]:
    """The run's lines for accounting, streamed in chunks of :data:`CSV_BATCH_LINES_MAX`;
    ``amount`` is the exact decimal of ``amount_minor`` in the whole unit. What produced a
    line is in ``explain``, not here: accounting books amounts."""
    run = get_run(session, run_id)
    scales = dict(run.currency_scales)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for line_no, account, currency, amount_minor in amounts_in_order(session, run_id):
        writer.writerow((run.id, line_no, account, currency, amount_minor,
                         format_minor(amount_minor, scales.get(currency, 1), grouped=False),
                         run.digest))
        if buffer.tell() >= CSV_CHUNK_BYTES:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def amounts_in_order(
    session: Session, run_id: int, *, batch_max: int = CSV_BATCH_LINES_MAX
) -> Iterator[tuple[int, int, str, int]]:
    """``(line_no, account, currency, amount_minor)`` of every line by line number, a batch
    at a time, without the parts: what a payout and the accounting CSV need."""
    table = CompensationLine.__table__
    after = -1
    while True:
        rows = session.execute(
            select(table.c.line_no, table.c.account, table.c.currency, table.c.amount_minor)
            .where(table.c.run_id == run_id, table.c.line_no > after)
            .order_by(table.c.line_no).limit(batch_max)
        ).all()
        for row in rows:
            yield int(row[0]), int(row[1]), str(row[2]), int(row[3])
        if len(rows) < batch_max:
            return
        after = int(rows[-1][0])


def lines_in_order(
    session: Session, run_id: int, *, batch_max: int = CSV_BATCH_LINES_MAX
) -> Iterator[LineRead]:
    """Every line of a run by line number with its parts, read a batch at a time (bounded
    memory; plain rows, not ORM objects, which cost three times as much to load)."""
    after = -1
    columns = (CompensationLine.line_no, CompensationLine.account, CompensationLine.currency,
               CompensationLine.amount_minor, CompensationLine.parts)
    while True:
        rows = session.execute(
            select(*columns)
            .where(CompensationLine.run_id == run_id, CompensationLine.line_no > after)
            .order_by(CompensationLine.line_no).limit(batch_max)
        ).all()
        for line_no, account, currency, amount_minor, parts in rows:
            yield LineRead.model_construct(line_no=line_no, account=account, currency=currency,
                                           amount_minor=amount_minor, parts=parts)
        if len(rows) < batch_max:
            return
        after = int(rows[-1][0])


# --- approval (four eyes) ---------------------------------------------------------------


def approve(
    session: Session, run_id: int, *, approver: str, digest: str, note: str, now: datetime
) -> CompensationApproval:
    """The second operator's approval of exactly the run they reviewed: never the proposer,
    never twice, and only for the digest the run has."""
    run = get_run(session, run_id)
    if approval_of(session, run_id) is not None:
        raise RunStateError(
            f"run {run_id} is already approved",
            next_step=f"pay it with `haltguard compensation pay {run_id}`",
            message_ja=f"ラン {run_id} は承認済みです",
        )
    if incidents.audit_actor(approver) == incidents.audit_actor(run.proposed_by):
        raise FourEyesError(
            f"{approver} proposed run {run_id} and cannot also approve it",
            next_step="ask another operator with the compensation.approve permission",
            message_ja=f"ラン {run_id} の提案者は承認できません。別の承認者に依頼してください",
        )
    if digest != run.digest:
        raise StaleDigestError(
            f"run {run_id} has digest {run.digest}, not {digest}: you reviewed something else",
            next_step=f"review it again with `haltguard compensation show {run_id}` and "
            "approve the digest shown there",
            message_ja=f"ラン {run_id} のダイジェストが一致しません。内容を再確認してください",
        )
    approval = CompensationApproval(run_id=run_id, approved_by=approver, approved_at=now,
                                    digest=digest, note=note)
    session.add(approval)
    session.flush()
    incidents.record(
        session, incidents.get(session, run.incident_id), kind=TimelineKind.APPROVAL_DECIDED,
        actor=approver, now=now, audit_action="compensation.run.approve",
        message=f"compensation run {run_id} approved (proposed by {run.proposed_by})",
        details={"run_id": run_id, "digest": digest, "proposed_by": run.proposed_by,
                 "note": note},
    )
    return approval


# --- payout -----------------------------------------------------------------------------


def start_payout(
    session: Session, run_id: int, *, actor: str, now: datetime
) -> CompensationPayout:
    """Begin paying an approved run, or continue a payout that stopped (a new attempt on the
    same row). A paid run is refused: there is nothing left to pay."""
    run = get_run(session, run_id)
    approval = approval_of(session, run_id)
    if approval is None:
        raise RunStateError(
            f"run {run_id} is not approved yet; a run is paid only after a second operator "
            "approved it",
            next_step=f"ask another operator to run `haltguard compensation approve {run_id}`",
            message_ja=f"ラン {run_id} は未承認のため支払えません",
        )
    if approval.digest != run.digest:  # a run never changes; this is the invariant, checked
        raise StaleDigestError(
            f"run {run_id}'s approval is for digest {approval.digest}, the run has {run.digest}",
            next_step="do not pay; compare the audit chain with the run and report it",
            message_ja=f"ラン {run_id} の承認と内容のダイジェストが一致しません",
        )
    payout = payout_of(session, run_id)
    if payout is not None and payout.finished_at is not None:
        raise RunStateError(
            f"run {run_id} is paid in full (finished {payout.finished_at.isoformat()})",
            next_step=f"send the statements with `haltguard compensation statements {run_id}`",
            message_ja=f"ラン {run_id} は支払い済みです",
        )
    lines_total = run.line_count
    if payout is None:
        payout = CompensationPayout(run_id=run_id, started_by=actor, started_at=now,
                                    attempts=1, lines_total=lines_total, lines_paid=0,
                                    amounts_paid={}, updated_at=now)
        session.add(payout)
    else:
        payout.attempts += 1
        payout.updated_at = now
        payout.last_error = ""
    session.flush()
    incidents.record(
        session, incidents.get(session, run.incident_id), kind=TimelineKind.COMMENT,
        actor=actor, now=now, audit_action="compensation.payout.start",
        message=f"compensation run {run_id}: payout attempt {payout.attempts} started "
        f"({lines_total} lines)",
        details={"run_id": run_id, "digest": run.digest, "attempt": payout.attempts},
    )
    return payout


def record_progress(
    session: Session, run_id: int, *, lines_paid: int, amounts_paid: Mapping[str, int],
    now: datetime,
) -> CompensationPayout:
    """What the venue has credited so far (counted from its answers, already-credited lines
    included), so a reader sees the payout move and a restart knows where it stood."""
    payout = session.get(CompensationPayout, run_id)
    assert payout is not None, "progress is recorded only on a started payout"
    assert 0 <= lines_paid <= payout.lines_total, (lines_paid, payout.lines_total)
    payout.lines_paid = lines_paid
    payout.amounts_paid = dict(amounts_paid)
    payout.updated_at = now
    session.flush()
    return payout


def finish_payout(
    session: Session, run_id: int, *, actor: str, error: str, now: datetime
) -> CompensationPayout:
    """Close an attempt: paid in full (``error`` empty and every line credited) or stopped
    with the venue's reason, to be resumed by paying again."""
    run = get_run(session, run_id)
    payout = session.get(CompensationPayout, run_id)
    assert payout is not None
    payout.updated_at = now
    incident = incidents.get(session, run.incident_id)
    if error or payout.lines_paid < payout.lines_total:
        payout.last_error = error[:2000] or (
            f"{payout.lines_total - payout.lines_paid} lines not credited")
        session.flush()
        incidents.record(
            session, incident, kind=TimelineKind.COMMENT, actor=actor, now=now,
            audit_action="compensation.payout.stop",
            message=f"compensation run {run_id}: payout stopped after {payout.lines_paid} of "
            f"{payout.lines_total} lines: {payout.last_error}",
            details={"run_id": run_id, "digest": run.digest, "lines_paid": payout.lines_paid},
        )
        return payout
    if payout.amounts_paid != run.totals:
        raise RunStateError(
            f"run {run_id}: the venue credited {payout.amounts_paid} but the run's totals are "
            f"{run.totals}; the payout is not marked paid",
            next_step="compare the ledger with the run's CSV before paying again",
            message_ja=f"ラン {run_id} の入金額が計算結果と一致しません",
        )
    payout.finished_at = now
    payout.last_error = ""
    session.flush()
    incidents.record(
        session, incident, kind=TimelineKind.COMMENT, actor=actor, now=now,
        audit_action="compensation.payout.finish",
        message=f"compensation run {run_id} paid: {payout.lines_paid} lines",
        details={"run_id": run_id, "digest": run.digest, "amounts_paid": payout.amounts_paid},
    )
    return payout


def payout_read(session: Session, run_id: int) -> PayoutRead:
    run = get_run(session, run_id)
    payout = payout_of(session, run_id)
    if payout is None:
        raise RunStateError(
            f"run {run_id} has no payout yet",
            next_step=f"pay it with `haltguard compensation pay {run_id}` once approved",
            message_ja=f"ラン {run_id} はまだ支払われていません",
        )
    return PayoutRead(
        run_id=run_id, state=run_state(session, run), lines_total=payout.lines_total,
        lines_paid=payout.lines_paid, amounts_paid=payout.amounts_paid,
        attempts=payout.attempts, started_by=payout.started_by, started_at=payout.started_at,
        updated_at=payout.updated_at, finished_at=payout.finished_at,
        last_error=payout.last_error, public_note_posted_at=payout.public_note_posted_at,
    )


# --- statements -------------------------------------------------------------------------


def statement_read(statement: CompensationStatement) -> StatementRead:
    return StatementRead(
        run_id=statement.run_id, account=statement.account, line_nos=statement.line_nos,
        status=StatementStatus(statement.status), subject_ja=statement.subject_ja,
        subject_en=statement.subject_en, body_ja=statement.body_ja, body_en=statement.body_en,
        language=statement.language, phrase_shown=statement.phrase_shown,
        sent_at=statement.sent_at, last_error=statement.last_error,
    )


def statements_written(session: Session, run_id: int) -> int:
    return session.scalar(select(func.count()).select_from(CompensationStatement)
                          .where(CompensationStatement.run_id == run_id)) or 0


def add_statements(session: Session, statements: Sequence[Mapping[str, Any]]) -> None:
    """Insert statement rows (column -> value) with one executemany: ORM objects cost about
    three times as much per statement, and a run may have a million."""
    if statements:
        session.connection().execute(insert(CompensationStatement), list(statements))


def statements_for_accounts(
    session: Session, run_id: int, accounts: Iterable[int]
) -> list[CompensationStatement]:
    """The statements of these accounts not sent yet (stored, or failed before)."""
    wanted = list(set(accounts))
    found: list[CompensationStatement] = []
    for start in range(0, len(wanted), 500):
        found += session.scalars(
            select(CompensationStatement).where(
                CompensationStatement.run_id == run_id,
                CompensationStatement.account.in_(wanted[start:start + 500]),
                CompensationStatement.status != StatementStatus.SENT,
            ).order_by(CompensationStatement.account)
        )
    return found


def statement_counts(session: Session, run_id: int) -> dict[str, int]:
    rows = session.execute(
        select(CompensationStatement.status, func.count())
        .where(CompensationStatement.run_id == run_id)
        .group_by(CompensationStatement.status)
    ).all()
    return {str(status): int(count) for status, count in rows}


def list_statements(
    session: Session, run_id: int, *, account: int | None = None, offset: int = 0,
    limit: int = 50,
) -> tuple[list[StatementRead], int]:
    get_run(session, run_id)
    query = select(CompensationStatement).where(CompensationStatement.run_id == run_id)
    if account is not None:
        query = query.where(CompensationStatement.account == account)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(CompensationStatement.account)
                           .offset(offset).limit(limit))
    return [statement_read(row) for row in rows], total


def note_statements(
    session: Session, run_id: int, *, actor: str, written: int, sent: int,
    counts: Mapping[str, int], now: datetime,
) -> None:
    """One timeline and audit entry per statements step: how many were written and sent."""
    run = get_run(session, run_id)
    incidents.record(
        session, incident_of(session, run), kind=TimelineKind.COMMENT, actor=actor, now=now,
        audit_action="compensation.statements",
        message=f"compensation run {run_id}: {written} statements written, {sent} emailed now",
        details={"run_id": run_id, "digest": run.digest, "written": written, "sent": sent,
                 "counts": dict(counts)},
    )


def mark_public_note(session: Session, run_id: int, *, now: datetime) -> None:
    payout = session.get(CompensationPayout, run_id)
    assert payout is not None and payout.finished_at is not None
    payout.public_note_posted_at = now
    session.flush()


def incident_of(session: Session, run: CompensationRun) -> Incident:
    return incidents.get(session, run.incident_id)
