"""What the corrections domain does with its tables, as plain functions over a session.

Every change is one audit entry and one line on the incident's timeline
(``incidents.service.record``), carrying the request's digest. Functions flush, never commit;
``now`` is passed in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from haltguard.corrections.errors import (
    FourEyesError,
    RequestNotFoundError,
    RequestStateError,
    StaleDigestError,
)
from haltguard.corrections.models import (
    CorrectionDecision,
    CorrectionKind,
    CorrectionNotice,
    CorrectionRequest,
    CorrectionStatus,
    NoticeRead,
    RequestRead,
)
from haltguard.corrections.texts import notice_for
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineKind


def request_target(request_id: int) -> str:
    return f"correction-{request_id}"


def store(session: Session, request: CorrectionRequest, *, now: datetime) -> CorrectionRequest:
    """Store a proposed correction and put it on the incident's timeline."""
    incident = incidents.get(session, request.incident_id)
    session.add(request)
    session.flush()
    incidents.record(
        session, incident, kind=TimelineKind.APPROVAL_REQUESTED, actor=request.proposed_by,
        now=now, audit_action="corrections.propose",
        message=f"trade correction {request.id} proposed ({request.kind}): {request.reason}",
        details={"request_id": request.id, "kind": request.kind, "digest": request.digest,
                 "accounts": len(request.accounts), "policy": request.policy["name"],
                 "action": "trades.propose", "target": _target(request),
                 "reason": request.reason},
    )
    return request


def get(session: Session, request_id: int) -> CorrectionRequest:
    found = session.get(CorrectionRequest, request_id)
    if found is None:
        raise RequestNotFoundError(
            f"there is no trade correction {request_id}",
            message_ja=f"取引訂正 {request_id} はありません",
            next_step="list them with `haltguard trades list`",
        )
    return found


def decision_of(session: Session, request_id: int) -> CorrectionDecision | None:
    return session.scalars(
        select(CorrectionDecision).where(CorrectionDecision.request_id == request_id)
    ).first()


def list_requests(
    session: Session, *, incident_id: int | None, offset: int, limit: int
) -> tuple[list[CorrectionRequest], int]:
    query = select(CorrectionRequest)
    count = select(func.count()).select_from(CorrectionRequest)
    if incident_id is not None:
        query = query.where(CorrectionRequest.incident_id == incident_id)
        count = count.where(CorrectionRequest.incident_id == incident_id)
    rows = list(session.scalars(query.order_by(CorrectionRequest.id.desc())
                                .offset(offset).limit(limit)))
    return rows, int(session.scalar(count) or 0)


def read(session: Session, request: CorrectionRequest) -> RequestRead:
    decision = decision_of(session, request.id)
    status = CorrectionStatus.PROPOSED if decision is None else CorrectionStatus(decision.outcome)
    return RequestRead(
        id=request.id, incident_id=request.incident_id, kind=CorrectionKind(request.kind),
        status=status, proposed_by=request.proposed_by, proposed_at=request.proposed_at,
        reason=request.reason, policy=request.policy, plan=request.plan,
        accounts=request.accounts, digest=request.digest, allow_debit=request.allow_debit,
        approved_by=None if decision is None else decision.approved_by,
        approved_at=None if decision is None else decision.approved_at,
        detail="" if decision is None else decision.detail,
    )


def check_approval(
    session: Session, request: CorrectionRequest, *, approver: str, digest: str
) -> None:
    """The second operator may approve exactly what they reviewed: never the proposer, never
    a decided request, only the request's digest."""
    if decision_of(session, request.id) is not None:
        raise RequestStateError(
            f"trade correction {request.id} is decided already",
            message_ja=f"取引訂正 {request.id} は判断済みです",
            next_step=f"see it with `haltguard trades show {request.id}`",
        )
    if incidents.audit_actor(approver) == incidents.audit_actor(request.proposed_by):
        raise FourEyesError(
            f"{approver} proposed trade correction {request.id} and cannot also approve it",
            message_ja=f"取引訂正 {request.id} の提案者は承認できません。"
            "別の担当者に依頼してください",
            next_step="ask another operator with the corrections.approve permission",
        )
    if digest != request.digest:
        raise StaleDigestError(
            f"trade correction {request.id} has digest {request.digest}, not {digest}: you "
            "reviewed something else",
            message_ja=f"取引訂正 {request.id} のダイジェストが一致しません。"
            "内容を再確認してください",
            next_step=f"review it with `haltguard trades show {request.id}` and approve the "
            "digest shown there",
        )


def decide(
    session: Session, request: CorrectionRequest, *, approver: str, now: datetime,
    outcome: CorrectionStatus, detail: str, venue_events: list[dict[str, Any]],
) -> CorrectionDecision:
    """Record what the venue did with the approved correction; an applied one writes the
    notices of every affected account and puts the correction on the timeline."""
    decision = CorrectionDecision(
        request_id=request.id, approved_by=approver, approved_at=now, digest=request.digest,
        outcome=outcome.value, detail=detail, venue_events=venue_events,
    )
    session.add(decision)
    incident = incidents.get(session, request.incident_id)
    session.flush()
    incidents.record(
        session, incident, kind=TimelineKind.APPROVAL_DECIDED, actor=approver, now=now,
        audit_action="corrections.approve",
        message=f"trade correction {request.id} approved (proposed by {request.proposed_by})",
        details={"request_id": request.id, "digest": request.digest,
                 "proposed_by": request.proposed_by, "action": "trades.approve",
                 "target": _target(request)},
    )
    if outcome is CorrectionStatus.APPLIED:
        for account in request.accounts:
            subject_en, body_en, subject_ja, body_ja = notice_for(
                account, request.plan, reason=request.reason, policy=request.policy,
                kind=request.kind,
            )
            session.add(CorrectionNotice(
                request_id=request.id, account=account, subject_en=subject_en,
                body_en=body_en, subject_ja=subject_ja, body_ja=body_ja,
            ))
        message = _applied_message(request)
    else:
        message = f"trade correction {request.id} refused by the venue: {detail}"
    incidents.record(
        session, incident, kind=TimelineKind.MARKET_ACTION, actor=approver, now=now,
        audit_action="corrections.apply", message=message,
        details={"request_id": request.id, "kind": request.kind,
                 "ok": outcome is CorrectionStatus.APPLIED, "venue_result": outcome.value,
                 "action": f"trades.{request.kind}", "target": _target(request),
                 "reason": request.reason,
                 "proposed_by": request.proposed_by, "approved_by": approver,
                 "accounts": len(request.accounts), "trade_ids": _trade_ids(request)},
    )
    return decision


def reject(
    session: Session, request: CorrectionRequest, *, rejecter: str, reason: str, now: datetime,
) -> CorrectionDecision:
    """Record a second operator's refusal: the request is decided, nothing reaches the venue
    and no customer is told (nothing changed for them)."""
    decision = CorrectionDecision(
        request_id=request.id, approved_by=rejecter, approved_at=now, digest=request.digest,
        outcome=CorrectionStatus.REJECTED.value, detail=reason, venue_events=[],
    )
    session.add(decision)
    incident = incidents.get(session, request.incident_id)
    session.flush()
    incidents.record(
        session, incident, kind=TimelineKind.APPROVAL_DECIDED, actor=rejecter, now=now,
        audit_action="corrections.reject",
        message=f"trade correction {request.id} rejected (proposed by {request.proposed_by}): "
        f"{reason}",
        details={"request_id": request.id, "digest": request.digest,
                 "proposed_by": request.proposed_by, "action": "trades.reject",
                 "target": _target(request), "reason": reason},
    )
    return decision


def _target(request: CorrectionRequest) -> str:
    """What the correction is about, as the timeline and the regulator's report name it: the
    trade ids, or the seq a rollback returns to."""
    if request.kind == CorrectionKind.ROLLBACK:
        return f"seq {request.plan['target_seq']}"
    return ", ".join(map(str, _trade_ids(request)))


def _trade_ids(request: CorrectionRequest) -> list[int]:
    return [int(trade["trade_id"]) for trade in request.plan.get("trades", [])]


def _applied_message(request: CorrectionRequest) -> str:
    plan = request.plan
    if request.kind == CorrectionKind.ROLLBACK:
        return (f"venue rolled back to seq {plan['target_seq']}: {plan['orders_to_cancel']} "
                f"orders cancelled, {plan['trades_to_bust']} trades busted, "
                f"{len(request.accounts)} accounts notified")
    done = "busted" if request.kind == CorrectionKind.BUST else "re-priced"
    return (f"{len(plan['trades'])} trade(s) {done} ({', '.join(map(str, _trade_ids(request)))})"
            f"; {len(request.accounts)} accounts notified")


def notices(
    session: Session, request_id: int, *, account: int | None, offset: int, limit: int
) -> tuple[list[NoticeRead], int]:
    query = select(CorrectionNotice).where(CorrectionNotice.request_id == request_id)
    count = select(func.count()).select_from(CorrectionNotice).where(
        CorrectionNotice.request_id == request_id)
    if account is not None:
        query = query.where(CorrectionNotice.account == account)
        count = count.where(CorrectionNotice.account == account)
    rows = session.scalars(query.order_by(CorrectionNotice.account).offset(offset).limit(limit))
    return [NoticeRead(account=n.account, subject_en=n.subject_en, body_en=n.body_en,
                       subject_ja=n.subject_ja, body_ja=n.body_ja) for n in rows], int(
        session.scalar(count) or 0)


def busted_trades(session: Session, incident_id: int) -> list[dict[str, Any]]:
    """The trades busted or re-priced by applied corrections of an incident (impact and
    compensation list them as a cause)."""
    rows = session.execute(
        select(CorrectionRequest, CorrectionDecision)
        .join(CorrectionDecision, CorrectionDecision.request_id == CorrectionRequest.id)
        .where(CorrectionRequest.incident_id == incident_id,
               CorrectionDecision.outcome == CorrectionStatus.APPLIED.value)
    ).all()
    found: list[dict[str, Any]] = []
    for request, _ in rows:
        found += [{**trade, "request_id": request.id, "kind": request.kind}
                  for trade in request.plan.get("trades", [])]
    return found
