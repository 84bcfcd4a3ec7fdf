"""Multi-step incident work: opening with a page, the protective actions on the venue, the
four-eyes approvals, and paging for overdue runbook tasks.

Every protective action goes through one :class:`VenueControl`, carries the incident's ref
so the venue journals it, and lands in the incident timeline and the audit chain, whether
the venue took it or refused it. Resuming trading is always a person's decision: nothing
here reopens a market by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from haltguard.common.clock import Clock
from haltguard.common.units import NS_PER_S
from haltguard.incidents import service
from haltguard.incidents.errors import ErrorKind, IncidentError, not_found
from haltguard.incidents.models import (
    ActionOutcome,
    ActionResult,
    Approval,
    ApprovalAction,
    ApprovalRead,
    ApprovalStatus,
    HaltRequest,
    HoldKind,
    Incident,
    IncidentCreate,
    IncidentUpdate,
    KillSwitchRequest,
    MarketStateRequest,
    ResumeRequest,
    TimelineKind,
    VenueEventLink,
    WithdrawalsRequest,
)
from haltguard.incidents.rules import OPEN_STATUSES, SEVERITY_DEFINITIONS, Severity
from haltguard.responders import service as responders
from haltguard.responders.service import ResponderSettings
from haltguard.venue.commands import ResumePhase
from haltguard.venue.control import VenueControl, VenueControlError
from haltguard.venue.events import (
    AuctionUncrossed,
    CommandRejected,
    Event,
    KillSwitchChanged,
    MarketStateChanged,
    ResumePhaseEntered,
    ResumePlanEnded,
    ResumePlanStarted,
    WithdrawalsFrozen,
)
from haltguard.venue.types import MarketState

# States in which a market takes no new orders; leaving them for a trading state is a resume.
NON_TRADING_STATES = frozenset({MarketState.HALTED, MarketState.CANCEL_ONLY, MarketState.CLOSED})
TRADING_STATES = frozenset(set(MarketState) - NON_TRADING_STATES)
TIGHTEN_STATES = frozenset({MarketState.HALTED, MarketState.CANCEL_ONLY, MarketState.POST_ONLY,
                            MarketState.LIMIT_ONLY, MarketState.AUCTION})


# --- paging ---------------------------------------------------------------------------------


def page_on_call(
    session: Session, incident: Incident, *, summary: str, clock: Clock,
    responder_settings: ResponderSettings | None = None,
) -> int | None:
    """Page the on-call for ``incident`` and return the page id. The page's events reach
    the timeline through :mod:`haltguard.incidents.paging`.

    A page the responders refuse (e.g. a broken on-call set-up) does not stop the incident:
    the refusal goes in the timeline so someone calls people by hand, and ``None`` returns.
    """
    try:
        sent = responders.page(
            session,
            incident_id=incident.ref,
            summary=summary,
            category=incident.category.value,
            severity=incident.severity.value,
            clock=clock,
            settings=responder_settings,
        )
    except responders.RespondersError as exc:
        service.record(
            session, incident, kind=TimelineKind.PAGE, actor=service.SYSTEM_ACTOR,
            now=clock.now(), audit_action="page.failed",
            message=f"paging failed: {exc.message}; call the on-call by hand and fix the "
            "on-call set-up (haltguard oncall)",
            details={"error": exc.message},
        )
        return None
    return sent.id


def open_incident(
    session: Session, data: IncidentCreate, *, actor: str, clock: Clock,
    responder_settings: ResponderSettings | None = None,
) -> Incident:
    """Open the incident; SEV1 and SEV2 page the on-call at once."""
    incident = service.open_incident(session, data, actor=actor, now=clock.now())
    if SEVERITY_DEFINITIONS[incident.severity].pages_on_open:
        page_on_call(
            session, incident, clock=clock, responder_settings=responder_settings,
            summary=f"{incident.ref} {incident.severity} {incident.category}: {incident.title}",
        )
    return incident


def update_incident(
    session: Session, incident: Incident, data: IncidentUpdate, *, actor: str, clock: Clock,
    responder_settings: ResponderSettings | None = None,
) -> list[str]:
    """Apply an update; raising the severity to one that pages on open pages now."""
    before = incident.severity
    changed = service.update(session, incident, data, actor=actor, now=clock.now())
    after = incident.severity
    if (
        after.rank < before.rank
        and SEVERITY_DEFINITIONS[after].pages_on_open
        and not SEVERITY_DEFINITIONS[before].pages_on_open
    ):
        page_on_call(
            session, incident, clock=clock, responder_settings=responder_settings,
            summary=f"{incident.ref} raised to {after}: {incident.title}",
        )
    return changed


def page_overdue_tasks(
    session: Session, incident: Incident, *, actor: str, clock: Clock,
    responder_settings: ResponderSettings | None = None,
) -> int:
    """Page once for the runbook tasks that are overdue and not paged yet; returns how many.

    The timeline shows who asked and which tasks; the page itself follows from the
    responders' events."""
    now = clock.now()
    due = [task for task in service.overdue_tasks(incident, now) if task.overdue_paged_at is None]
    if not due:
        return 0
    names = ", ".join(task.step_key for task in due[:10])
    page_id = page_on_call(
        session, incident, clock=clock, responder_settings=responder_settings,
        summary=f"{incident.ref}: {len(due)} runbook task(s) overdue: {names}",
    )
    for task in due:
        task.overdue_paged_at = now
    service.record(
        session, incident, kind=TimelineKind.PAGE, actor=actor, now=now,
        audit_action="task.page_overdue",
        message=f"paged the on-call about {len(due)} overdue task(s): {names}",
        details={"page_id": page_id, "tasks": [task.step_key for task in due]},
    )
    return len(due)


# --- protective actions ---------------------------------------------------------------------


def _require_active(incident: Incident) -> None:
    if incident.status not in OPEN_STATUSES:
        raise IncidentError(
            ErrorKind.CONFLICT, "incident_not_active",
            f"{incident.ref} is {incident.status}; protective actions need an active incident "
            "(reopen it, or open a new one)",
        )


def _known_markets(venue: VenueControl, markets: list[str]) -> dict[str, MarketState]:
    states = venue.market_states()
    unknown = [market for market in markets if market not in states]
    if unknown:
        raise IncidentError(
            ErrorKind.INVALID, "unknown_market",
            f"the venue lists no market {', '.join(unknown)}; it lists: "
            f"{', '.join(sorted(states)) or 'none'}",
        )
    if len(set(markets)) != len(markets):
        raise IncidentError(ErrorKind.INVALID, "duplicate_market", "name each market once")
    return states


def describe_event(event: Event) -> str:
    """One line a person reads in the timeline."""
    if isinstance(event, MarketStateChanged):
        until = f" until ts {event.until_ts}" if event.until_ts else ""
        return f"{event.market} {event.old} -> {event.new}{until}"
    if isinstance(event, KillSwitchChanged):
        return "kill switch " + ("engaged" if event.engaged else "released")
    if isinstance(event, WithdrawalsFrozen):
        return f"withdrawals of {event.asset} " + ("frozen" if event.frozen else "unfrozen")
    if isinstance(event, ResumePlanStarted):
        return f"resume plan started for {event.market}: {' -> '.join(event.phases)}"
    if isinstance(event, ResumePhaseEntered):
        return f"{event.market} resume phase {event.index}: {event.state}"
    if isinstance(event, AuctionUncrossed):
        return f"{event.market} auction uncrossed at {event.price} ticks, {event.volume} lots"
    if isinstance(event, ResumePlanEnded):
        return f"{event.market} resume plan " + ("completed" if event.completed else "ended")
    if isinstance(event, CommandRejected):
        return f"refused ({event.reason}): {event.detail}"
    return _event_type(event)


def _event_type(event: Event) -> str:
    return str(event.__struct_config__.tag)


def _apply(
    session: Session,
    incident: Incident,
    *,
    target: str,
    call: Callable[[], list[Event]],
    kind: TimelineKind,
    audit_action: str,
    verb: str,
    actor: str,
    now: datetime,
    details: dict[str, Any],
) -> ActionResult:
    """Run one venue call and record what happened, taken or refused, in timeline and audit."""
    try:
        events = call()
    except VenueControlError as exc:
        events, error = [], str(exc)
    else:
        rejected = [event for event in events if isinstance(event, CommandRejected)]
        error = "; ".join(describe_event(event) for event in rejected)
    ok = not error
    summary = "; ".join(describe_event(event) for event in events) or "no change"
    for event in events:
        if isinstance(event, MarketStateChanged) and event.new != MarketState.OPEN:
            service.add_hold(session, incident, HoldKind.MARKET, event.market, actor=actor,
                             now=now)
        if not isinstance(event, CommandRejected):
            session.add(VenueEventLink(
                incident_id=incident.id, seq=None, event_type=_event_type(event),
                summary=describe_event(event), linked_at=now, linked_by=actor,
            ))
    service.record(
        session, incident, kind=kind, actor=actor, now=now, audit_action=audit_action,
        message=(f"{verb} {target}: {summary}" if ok
                 else f"{verb} {target} refused by the venue: {error}"),
        details={**details, "action": audit_action, "target": target, "ok": ok, "events": [
            {"type": _event_type(event), "summary": describe_event(event)} for event in events
        ]},
    )
    return ActionResult(target=target, ok=ok, detail=summary if ok else error)


def halt_markets(
    session: Session, venue: VenueControl, incident: Incident, request: HaltRequest, *,
    actor: str, now: datetime,
) -> ActionOutcome:
    _require_active(incident)
    _known_markets(venue, request.markets)
    results = [
        _apply(
            session, incident, target=market, kind=TimelineKind.MARKET_ACTION,
            audit_action="market.halt", verb="halt", actor=actor, now=now,
            details={"reason": request.reason, "cancels_allowed": request.cancels_allowed},
            call=partial(
                venue.set_market_state, market, MarketState.HALTED,
                actor=service.audit_actor(actor), reason=request.reason,
                incident_id=incident.ref, cancels_allowed=request.cancels_allowed,
            ),
        )
        for market in request.markets
    ]
    return ActionOutcome(action="halt", results=results)


def set_market_state(
    session: Session, venue: VenueControl, incident: Incident, request: MarketStateRequest, *,
    actor: str, now: datetime,
) -> ActionOutcome:
    """Tighten markets (cancel-only, post-only, limit-only, auction, halted). Moving a market
    that takes no orders to one that does is a resume and is refused here."""
    _require_active(incident)
    if request.state not in TIGHTEN_STATES:
        raise IncidentError(
            ErrorKind.INVALID, "not_a_protective_state",
            f"{request.state} is not a protective state; use the resume action to reopen, or "
            f"one of {', '.join(sorted(TIGHTEN_STATES))}",
        )
    states = _known_markets(venue, request.markets)
    resumes = [market for market in request.markets
               if states[market] in NON_TRADING_STATES and request.state in TRADING_STATES]
    if resumes:
        raise IncidentError(
            ErrorKind.CONFLICT, "use_resume",
            f"{', '.join(resumes)} take no orders now; moving to {request.state} reopens "
            "trading, which is the resume action (it may need a second operator's approval)",
        )
    auction_ns = request.auction_seconds * NS_PER_S
    results = [
        _apply(
            session, incident, target=market, kind=TimelineKind.MARKET_ACTION,
            audit_action="market.set_state", verb=f"set {request.state} on", actor=actor, now=now,
            details={"reason": request.reason, "state": request.state.value},
            call=partial(
                venue.set_market_state, market, request.state, actor=service.audit_actor(actor),
                reason=request.reason, incident_id=incident.ref, auction_ns=auction_ns,
            ),
        )
        for market in request.markets
    ]
    return ActionOutcome(action="set_state", results=results)


def engage_kill_switch(
    session: Session, venue: VenueControl, incident: Incident, request: KillSwitchRequest, *,
    actor: str, now: datetime,
) -> ActionOutcome:
    """Halt every market at once. Releasing it later needs a second operator."""
    _require_active(incident)
    result = _apply(
        session, incident, target="all markets", kind=TimelineKind.KILL_SWITCH,
        audit_action="kill_switch.engage", verb="kill switch engaged on", actor=actor, now=now,
        details={"reason": request.reason},
        call=partial(venue.kill_switch, True, actor=service.audit_actor(actor),
                     reason=request.reason, incident_id=incident.ref),
    )
    if result.ok:
        service.add_hold(session, incident, HoldKind.KILL_SWITCH, "", actor=actor, now=now)
    return ActionOutcome(action="kill_switch_engage", results=[result])


def freeze_withdrawals(
    session: Session, venue: VenueControl, incident: Incident, request: WithdrawalsRequest, *,
    actor: str, now: datetime, frozen: bool = True,
) -> ActionOutcome:
    _require_active(incident)
    asset = request.asset.strip().upper()
    result = _apply(
        session, incident, target=asset, kind=TimelineKind.WITHDRAWALS,
        audit_action="withdrawals.freeze" if frozen else "withdrawals.unfreeze",
        verb="freeze withdrawals of" if frozen else "unfreeze withdrawals of",
        actor=actor, now=now, details={"reason": request.reason, "asset": asset},
        call=partial(venue.freeze_withdrawals, asset, frozen, actor=service.audit_actor(actor),
                     reason=request.reason, incident_id=incident.ref),
    )
    if result.ok and frozen:
        service.add_hold(session, incident, HoldKind.WITHDRAWALS, asset, actor=actor, now=now)
    if result.ok and not frozen:
        service.release_holds(session, incident, HoldKind.WITHDRAWALS, asset, actor=actor,
                              now=now)
    return ActionOutcome(action="withdrawals_freeze" if frozen else "withdrawals_unfreeze",
                         results=[result])


# --- four eyes ------------------------------------------------------------------------------


def needs_second_operator(incident: Incident, action: ApprovalAction) -> bool:
    """The kill switch release always does; resuming does after a SEV1 (even if downgraded)."""
    if action == ApprovalAction.KILL_SWITCH_RELEASE:
        return True
    return incident.peak_severity == Severity.SEV1


def _request_approval(
    session: Session, incident: Incident, action: ApprovalAction, params: dict[str, Any],
    reason: str, *, actor: str, now: datetime,
) -> ActionOutcome:
    approval = Approval(
        incident_id=incident.id, action=action, params=params, reason=reason,
        status=ApprovalStatus.PENDING, requested_by=actor, requested_at=now, outcome="",
    )
    session.add(approval)
    session.flush()
    service.record(
        session, incident, kind=TimelineKind.APPROVAL_REQUESTED, actor=actor, now=now,
        audit_action="approval.request",
        message=f"approval #{approval.id} requested for {action}: {reason} "
        "(a second operator must approve)",
        details={"approval_id": approval.id, "action": action.value, "params": params},
    )
    return ActionOutcome(action=action.value, approval=ApprovalRead.model_validate(approval))


def _validate_resume(venue: VenueControl, request: ResumeRequest) -> None:
    _known_markets(venue, request.markets)
    if request.plan()[-1].state != MarketState.OPEN:
        raise IncidentError(ErrorKind.INVALID, "plan_must_end_open",
                            "a resume plan's last phase must be open")


def resume_markets(
    session: Session, venue: VenueControl, incident: Incident, request: ResumeRequest, *,
    actor: str, now: datetime,
) -> ActionOutcome:
    """Reopen markets, at once or through a resume plan; after a SEV1 a second operator must
    approve first, and the outcome then carries the pending approval."""
    _require_active(incident)
    _validate_resume(venue, request)
    if needs_second_operator(incident, ApprovalAction.MARKET_RESUME):
        return _request_approval(
            session, incident, ApprovalAction.MARKET_RESUME, request.model_dump(mode="json"),
            request.reason, actor=actor, now=now,
        )
    return _execute_resume(session, venue, incident, request, actor=actor, now=now)


def _execute_resume(
    session: Session, venue: VenueControl, incident: Incident, request: ResumeRequest, *,
    actor: str, now: datetime,
) -> ActionOutcome:
    plan = request.plan()
    phases = [ResumePhase(state=phase.state, min_ns=phase.min_seconds * NS_PER_S)
              for phase in plan]
    shown = " -> ".join(f"{phase.state} ({phase.min_seconds} s)" for phase in plan)
    results = [
        _apply(
            session, incident, target=market, kind=TimelineKind.RESUME,
            audit_action="market.resume", verb="resume", actor=actor, now=now,
            details={"reason": request.reason, "plan": shown},
            call=partial(venue.start_resume_plan, market, phases,
                         actor=service.audit_actor(actor), reason=request.reason,
                         incident_id=incident.ref),
        )
        for market in request.markets
    ]
    return ActionOutcome(action="resume", results=results)


def release_kill_switch(
    session: Session, incident: Incident, request: KillSwitchRequest, *,
    actor: str, now: datetime,
) -> ActionOutcome:
    """Ask for the kill switch to be released: always a four-eyes decision. Markets stay
    halted after the release until each is resumed."""
    _require_active(incident)
    return _request_approval(
        session, incident, ApprovalAction.KILL_SWITCH_RELEASE, {"reason": request.reason},
        request.reason, actor=actor, now=now,
    )


def _execute_kill_switch_release(
    session: Session, venue: VenueControl, incident: Incident, reason: str, *, actor: str,
    now: datetime,
) -> ActionOutcome:
    result = _apply(
        session, incident, target="all markets", kind=TimelineKind.KILL_SWITCH,
        audit_action="kill_switch.release", verb="kill switch released on", actor=actor,
        now=now, details={"reason": reason},
        call=partial(venue.kill_switch, False, actor=service.audit_actor(actor), reason=reason,
                     incident_id=incident.ref),
    )
    if result.ok:
        service.release_holds(session, incident, HoldKind.KILL_SWITCH, "", actor=actor, now=now)
    return ActionOutcome(action="kill_switch_release", results=[result])


def get_approval(session: Session, approval_id: int) -> Approval:
    approval = session.get(Approval, approval_id)
    if approval is None:
        raise not_found("approval", approval_id)
    return approval


def approvals_query(
    incident_id: int | None = None, status: ApprovalStatus | None = None
) -> Select[Approval]:
    query = select(Approval).order_by(Approval.id.desc())
    if incident_id is not None:
        query = query.where(Approval.incident_id == incident_id)
    if status is not None:
        query = query.where(Approval.status == status)
    return query


def _check_decidable(approval: Approval, incident: Incident, approver: str) -> None:
    if approval.status != ApprovalStatus.PENDING:
        raise IncidentError(
            ErrorKind.CONFLICT, "approval_decided",
            f"approval #{approval.id} is already {approval.status} by {approval.decided_by}",
        )
    if approver == approval.requested_by:
        raise IncidentError(
            ErrorKind.FORBIDDEN, "second_operator_required",
            f"{approver} asked for approval #{approval.id}; a different operator must approve it",
        )
    _require_active(incident)


def approve(
    session: Session, venue: VenueControl, approval: Approval, *, approver: str, now: datetime,
    note: str = "",
) -> ActionOutcome:
    """A second operator approves; the action then runs at once, as the approver, and the
    approval records whether the venue took it."""
    incident = service.get(session, approval.incident_id)
    _check_decidable(approval, incident, approver)
    reason = f"{approval.reason} (requested by {approval.requested_by}, approved by {approver})"
    if approval.action == ApprovalAction.KILL_SWITCH_RELEASE:
        outcome = _execute_kill_switch_release(session, venue, incident, reason, actor=approver,
                                               now=now)
    else:
        request = ResumeRequest.model_validate({**approval.params, "reason": reason})
        _validate_resume(venue, request)
        outcome = _execute_resume(session, venue, incident, request, actor=approver, now=now)
    succeeded = any(result.ok for result in outcome.results)
    approval.status = ApprovalStatus.EXECUTED if succeeded else ApprovalStatus.FAILED
    approval.decided_by, approval.decided_at = approver, now
    approval.outcome = "; ".join(
        f"{result.target}: {'ok' if result.ok else 'refused'}: {result.detail}"
        for result in outcome.results
    )
    service.record(
        session, incident, kind=TimelineKind.APPROVAL_DECIDED, actor=approver, now=now,
        audit_action="approval.grant",
        message=f"approval #{approval.id} ({approval.action}) approved and "
        + ("executed" if succeeded else "refused by the venue") + (f": {note}" if note else ""),
        details={"approval_id": approval.id, "status": approval.status.value,
                 "requested_by": approval.requested_by},
    )
    outcome.approval = ApprovalRead.model_validate(approval)
    return outcome


def reject(
    session: Session, approval: Approval, *, approver: str, now: datetime, note: str = ""
) -> Approval:
    incident = service.get(session, approval.incident_id)
    if approval.status != ApprovalStatus.PENDING:
        raise IncidentError(
            ErrorKind.CONFLICT, "approval_decided",
            f"approval #{approval.id} is already {approval.status}",
        )
    approval.status = ApprovalStatus.REJECTED
    approval.decided_by, approval.decided_at, approval.outcome = approver, now, note
    service.record(
        session, incident, kind=TimelineKind.APPROVAL_DECIDED, actor=approver, now=now,
        audit_action="approval.reject",
        message=f"approval #{approval.id} ({approval.action}) rejected"
        + (f": {note}" if note else ""),
        details={"approval_id": approval.id, "status": approval.status.value},
    )
    return approval
