"""The people a drill plays where the manual asks for a person, each named in every record
the drill leaves (:data:`~haltguard.drill.scenario.DRILL_ACTOR` and the two below).

The incident commander takes the incident (impact start, cause, ``identified``) or opens it
by hand when detection did not; customer support publishes the first public update from the
status page's bilingual template when nothing did by itself; the approving operators run the
phased resume (four eyes after a SEV1) through the incident flows; and at the end the
incident is resolved, its postmortem written and its reports generated. Everything goes
through the domains' services and flows, as an operator's request would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from haltguard.common.clock import utc_now
from haltguard.drill.checks import note_played_support, reports_check
from haltguard.drill.observe import (
    decisions_seen,
    first_public_update_after,
    incident_for,
    notices_delivered,
)
from haltguard.drill.scenario import DRILL_ACTOR, DrillContext, DrillResult
from haltguard.drill.surface import DrillSurface, database
from haltguard.drill.waiting import DrillError, wait_for
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import (
    ApprovalAction,
    IncidentCreate,
    IncidentUpdate,
    PostmortemWrite,
    ResumePhaseSpec,
    ResumeRequest,
)
from haltguard.incidents.rules import OPEN_STATUSES, Category, IncidentStatus, Severity
from haltguard.reports import postmortem, regulatory
from haltguard.status import service as status
from haltguard.status.models import IncidentDraftRequest
from haltguard.status.rules import UpdateStatus
from haltguard.venue.types import MarketState

DRILL_SECOND_ACTOR = "drill (playing the second approving operator)"
"""The four-eyes approver after a SEV1: a different name from :data:`DRILL_ACTOR`."""
DRILL_SUPPORT_ACTOR = "drill (playing customer support)"
"""Who publishes the public update when nothing did it by itself (manual 2.3)."""

NOTICE_WAIT_S = 10.0  # longest wait for queued notices to be delivered before counting
RESUME_PHASES_DEFAULT = (
    ResumePhaseSpec(state=MarketState.CANCEL_ONLY, min_seconds=1),
    ResumePhaseSpec(state=MarketState.AUCTION, min_seconds=1),
    ResumePhaseSpec(state=MarketState.OPEN, min_seconds=0),
)


# --- the incident commander -----------------------------------------------------------------


def note_on_incident(system: DrillSurface, incident_id: int, text: str) -> None:
    """A comment from the drill, so the record says what the drill did and why."""
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        if incident.status != IncidentStatus.CLOSED:
            incidents.comment(session, incident, text, actor=DRILL_ACTOR, now=utc_now())


def take_incident(system: DrillSurface, incident_id: int, *, started_at: datetime,
                  cause: str) -> None:
    """Play the incident commander's first minutes: record when the impact started (the
    drill knows: it caused it) and the cause, and move the incident to ``identified``."""
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        if incident.status not in OPEN_STATUSES:
            return
        now = utc_now()
        started = min(started_at, incident.detected_at)
        incidents.update(session, incident, IncidentUpdate(started_at=started, cause=cause),
                         actor=DRILL_ACTOR, now=now)
        if incident.status in {IncidentStatus.DETECTED, IncidentStatus.INVESTIGATING}:
            incidents.transition(session, incident, IncidentStatus.IDENTIFIED, actor=DRILL_ACTOR,
                                 now=now, note="drill: cause known, it was injected")


def open_incident_by_hand(
    system: DrillSurface, note: Callable[[str, str], None], *, title: str, category: Category,
    severity: Severity, markets: Sequence[str] = (), components: Sequence[str] = (),
) -> int:
    """Open the incident as the incident commander would when detection did not: the rest
    of the response is still rehearsed, and the drill says it stepped in."""
    note("自動検知でインシデントが開かれなかったため、訓練がインシデントコマンダーとして"
         "手動で起票した。",
         "No incident was opened by detection, so the drill opened it by hand as the "
         "incident commander would.")
    with database(system) as session:
        incident = incident_flows.open_incident(
            session, IncidentCreate(title=title, category=category, severity=severity,
                                    affected_markets=list(markets),
                                    affected_components=list(components)),
            actor=DRILL_ACTOR, clock=system.clock,
            responder_settings=system.responder_settings)
        return int(incident.id)


def first_response(context: DrillContext, result: DrillResult, attack_at: datetime, *,
                   rule_id: str, cause_en: str, cause_ja: str) -> int | DrillError:
    """While the attack runs: wait for ``rule_id``'s incident, take it as its commander and
    publish the first update (ja + en) if nothing did. The incident, or why not."""
    system, scale, progress = context.system, context.scale, context.progress
    progress(f"{result.scenario}: waiting for rule {rule_id}'s incident while the attack goes on")
    try:
        incident_id = wait_for(
            lambda: incident_for(system, since=attack_at, rule_id=rule_id),
            scale.timeout_s, f"an incident from rule {rule_id}",
            seen=lambda: decisions_seen(system, attack_at))
        take_incident(system, incident_id, started_at=attack_at, cause=f"drill: {cause_en}")
        played: list[str] = []
        ensure_public_update(system, incident_id, grace_s=min(2.0, scale.timeout_s),
                             cause_ja=cause_ja, cause_en=cause_en, notes=played)
    except DrillError as exc:
        return exc
    note_played_support(result, played)
    return incident_id


# --- customer support ----------------------------------------------------------------------


def publish_update(
    system: DrillSurface, incident_id: int, update_status: UpdateStatus, *,
    cause_ja: str | None = None, cause_en: str | None = None,
) -> int:
    """Draft the incident's public update from the status page's bilingual template and
    publish it, as the drill playing customer support; returns the update's id."""
    settings = system.status_settings
    with database(system) as session:
        now = utc_now()
        draft = status.draft_incident_update(
            session, incident_id,
            IncidentDraftRequest(status=update_status, cause_ja=cause_ja, cause_en=cause_en),
            actor=DRILL_SUPPORT_ACTOR, now=now, settings=settings,
        )
        published = status.publish(session, draft.id, actor=DRILL_SUPPORT_ACTOR, now=now,
                                   settings=settings)
        return int(published.id)


def ensure_public_update(
    system: DrillSurface, incident_id: int, *, grace_s: float, cause_ja: str, cause_en: str,
    notes: list[str] | None = None, note: Callable[[str, str], None] | None = None,
) -> datetime:
    """The first public update: waited for ``grace_s`` in case the system publishes one by
    itself, else published by the drill playing support (said in ``notes`` in English, or
    through ``note`` in both languages)."""
    since = datetime.min.replace(tzinfo=UTC)
    try:
        return wait_for(lambda: first_public_update_after(system, incident_id, since), grace_s,
                        "a public update published by the system")
    except DrillError:
        pass
    publish_update(system, incident_id, UpdateStatus.IDENTIFIED, cause_ja=cause_ja,
                   cause_en=cause_en)
    played_en = ("No public update was published automatically; the drill played customer "
                 "support and published the status page's template (ja + en) at once.")
    if notes is not None:
        notes.append(played_en)
    if note is not None:
        note("公開情報が自動で掲載されなかったため、訓練がサポート担当としてステータスページの"
             "定型文(日英)を直ちに掲載した。", played_en)
    at = first_public_update_after(system, incident_id, since)
    if at is None:
        raise DrillError("published a public update but the incident's timeline does not show it")
    return at


# --- the approving operators --------------------------------------------------------------


@dataclass(frozen=True)
class ResumeOutcome:
    markets: tuple[str, ...]
    approvals: int  # 0: one operator sufficed; 1: a second one approved (SEV1)
    detail: str


def play_resume(
    system: DrillSurface,
    incident_id: int,
    markets: Sequence[str],
    *,
    reason: str,
    phases: Sequence[ResumePhaseSpec] = RESUME_PHASES_DEFAULT,
) -> ResumeOutcome:
    """Reopen ``markets`` through a phased resume plan, as the manual's operators would:
    the drill asks as :data:`DRILL_ACTOR`; after a SEV1 the request waits for a second
    operator, played as :data:`DRILL_SECOND_ACTOR`. Raises DrillError if the venue refuses."""
    request = ResumeRequest(markets=list(markets), reason=reason, phases=list(phases))
    venue = system.venue_control
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        if incident.status not in OPEN_STATUSES:
            raise DrillError(f"{incident.ref} is {incident.status}; a resume needs it open")
        outcome = incident_flows.resume_markets(session, venue, incident, request,
                                                actor=DRILL_ACTOR, now=utc_now())
        approvals = 0
        if outcome.approval is not None:
            approval = incident_flows.get_approval(session, outcome.approval.id)
            if approval.action != ApprovalAction.MARKET_RESUME:
                raise DrillError(f"unexpected approval {approval.action} for a resume")
            outcome = incident_flows.approve(
                session, venue, approval, approver=DRILL_SECOND_ACTOR, now=utc_now(),
                note="drill: second operator approves the phased resume")
            approvals = 1
    refused = [result for result in outcome.results if not result.ok]
    if refused:
        raise DrillError("the venue refused the resume: " + "; ".join(
            f"{result.target}: {result.detail}" for result in refused))
    shown = " -> ".join(f"{phase.state.value} {phase.min_seconds} s" for phase in phases)
    return ResumeOutcome(tuple(markets), approvals, shown)


def resolve_incident(system: DrillSurface, incident_id: int, note: str) -> None:
    """Monitoring, then resolved (the holds are checked against the venue's states)."""
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        now = utc_now()
        if incident.status not in OPEN_STATUSES:
            return
        if incident.status != IncidentStatus.MONITORING:
            incidents.transition(session, incident, IncidentStatus.MONITORING, actor=DRILL_ACTOR,
                                 now=now, note=note)
        incidents.transition(session, incident, IncidentStatus.RESOLVED, actor=DRILL_ACTOR,
                             now=now, note=note,
                             market_states=system.venue_control.market_states())


# --- the end of the incident --------------------------------------------------------------


def write_postmortem(system: DrillSurface, incident_id: int, *, summary: str, cause: str,
                     went_well: list[str], went_badly: list[str]) -> None:
    """The postmortem the reports are built from, written by the drill (a resolved incident)."""
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        incidents.write_postmortem(session, incident, PostmortemWrite(
            summary=summary, cause=cause, went_well=went_well, went_badly=went_badly,
            recurrence_prevention=["Run this drill regularly (haltguard drill)."],
        ), actor=DRILL_ACTOR, now=utc_now())


def generate_reports(system: DrillSurface, incident_id: int, report_dir: Path) -> list[Path]:
    """The incident's postmortem (English) and regulatory report (Japanese), as Markdown and
    HTML files in ``report_dir``; each generation is noted on the timeline."""
    report_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with database(system) as session:
        incident = incidents.get(session, incident_id)
        for name, module in (("postmortem", postmortem), ("regulatory", regulatory)):
            document = module.build(session, incident)
            for suffix, render in (("md", module.render_markdown), ("html", module.render_html)):
                path = report_dir / f"{incident.ref}-{name}.{suffix}"
                path.write_text(render(document), encoding="utf-8")
                written.append(path)
            incidents.record_report(session, incident, report=name, output="markdown+html",
                                    actor=DRILL_ACTOR, now=utc_now())
    return written


def close_incident_record(
    system: DrillSurface, result_notes: Callable[[str, str], None], incident_id: int, *,
    report_dir: Path | None, summary: str, cause: str, went_well: list[str],
    went_badly: list[str],
) -> list[Path]:
    """The end of the manual's chapter 2 as the drill plays it: resolve the incident (its
    markets must be open again), publish the resolved update, write the postmortem and
    generate the postmortem and regulatory reports. Returns the report files."""
    resolve_incident(system, incident_id, "drill: trading restored and checked")
    publish_update(system, incident_id, UpdateStatus.RESOLVED)
    result_notes("訓練がサポート担当として解決済みの公開情報を掲載した。",
                 "The drill, playing support, published the resolved update.")
    write_postmortem(system, incident_id, summary=summary, cause=cause, went_well=went_well,
                     went_badly=went_badly or ["Nothing failed in this drill."])
    if report_dir is None:
        return []
    return generate_reports(system, incident_id, report_dir)


def finish_incident(context: DrillContext, result: DrillResult, incident_id: int, *,
                    cause_en: str, went_well: list[str]) -> None:
    """Close the drill's incident with its postmortem and reports (a check that they were
    written), then count the notices delivered for it."""
    system, scale = context.system, context.scale
    paths = close_incident_record(
        system, result.note, incident_id, report_dir=context.report_dir,
        summary=f"Drill {result.scenario}: {cause_en}", cause=cause_en, went_well=went_well,
        went_badly=[check.name for check in result.checks if not check.passed])
    result.report_paths += [str(path) for path in paths]
    result.checks.append(reports_check(paths))
    notices = notices_delivered(system, incident_id, min(scale.timeout_s, NOTICE_WAIT_S))
    result.measurements.notices_sent = notices.sent
