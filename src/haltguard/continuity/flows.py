"""The continuity workflows that span domains: gathering the evidence ``bcp check`` judges
(drill records, the backup domain's evidence, the contact tree), writing its report, and
reminding owners of what is overdue or expiring by paging them through the responders.

Reminders: each item due is paged to its owner at most once a day (one ``continuity_reminders``
row per item and day, written whether the page went out or not, with the error if not), so
running the reminders every few minutes pages nobody twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.backup import service as backups
from haltguard.common.clock import Clock
from haltguard.common.errors import HaltguardError
from haltguard.common.taxonomy import Category, Severity
from haltguard.continuity import report, service
from haltguard.continuity.assess import (
    FAILOVER_DRILL,
    Assessment,
    Evidence,
    assess,
    failover_of,
    overdue_reviews,
    unknown_controls,
)
from haltguard.continuity.bcp import (
    REGISTER_EXAMPLE,
    Plan,
    Register,
    load_plan,
    load_register,
)
from haltguard.continuity.models import FindingStatus, Reminder
from haltguard.continuity.settings import REMIND_INTERVAL_S_MIN, ContinuitySettings
from haltguard.db.session import session_scope
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, RulesError, load_rules_file
from haltguard.drill.records import latest_records
from haltguard.drill.scenarios import SCENARIOS
from haltguard.reports.document import Document
from haltguard.responders import service as responders
from haltguard.responders.settings import ResponderSettings
from haltguard.status.texts import Bilingual

REMINDER_ACTOR = "system:continuity"
REMINDER_SEVERITY = Severity.SEV4
"""A reminder is not an incident: the lowest severity, routed like one."""
REMINDERS_PER_RUN_MAX = 200
"""Pages one run sends at most; the rest go on the next run (the same day or the next)."""
log = logging.getLogger(__name__)


def gather_evidence(session: Session, settings: ContinuitySettings) -> Evidence:
    """What the plan is judged by, read now: the newest drill record of each scenario, the
    backups' evidence, the failover figures of the newest ``site-loss`` drill (replication's)
    and the contact tree's gaps."""
    drills = latest_records(settings.drill_report_dirs)
    return Evidence(
        drills=drills,
        backup=backups.latest_evidence(session),
        failover=failover_of(drills.get(FAILOVER_DRILL)),
        contact_tree_gaps=tuple(responders.contact_tree(session).gaps()),
    )


def records_summary(session: Session, settings: ContinuitySettings,
                    today: date) -> report.RecordsSummary:
    policies = [service.insurance_read(policy, today)
                for policy in service.list_insurance(session)]
    window = settings.insurance_remind_days
    training = service.list_training(session, today=today, overdue_only=True)
    counts = service.count_findings(session, today=today)
    overdue = counts.pop("overdue")
    return report.RecordsSummary(
        insurance_in_force=sum(policy.in_force for policy in policies),
        insurance_expiring=tuple(f"{policy.name} ({policy.expires_on})" for policy in policies
                                 if 0 <= policy.days_to_expiry <= window),
        training_overdue=tuple(f"{record.person}: {record.course} ({record.due_on})"
                               for record in training),
        findings_open=counts, findings_overdue=overdue)


@dataclass(frozen=True)
class CheckOutcome:
    assessment: Assessment
    plan: Plan
    register: Register
    document: Document
    paths: tuple[Path, ...]


def control_findings(register: Register, settings: ContinuitySettings) -> list[Bilingual]:
    """The register's controls that name no existing drill scenario or detection rule."""
    try:
        rules = load_rules_file(settings.rules_file or DEFAULT_RULES_PATH)
        rule_ids: frozenset[str] | None = frozenset(rule.id for rule in rules.rules)
    except RulesError as exc:
        log.warning("continuity: the detection rules cannot be read to check the risk "
                    "controls: %s", exc)
        rule_ids = None
    return unknown_controls(register, rule_ids, frozenset(SCENARIOS))


def check_plan(session: Session, settings: ContinuitySettings, now: datetime, *,
               write: bool = True) -> CheckOutcome:
    """Load the plan and the register (refused whole if either is wrong), judge the plan by
    the evidence at ``now`` (a register control naming nothing is a finding too), and write
    the report to ``settings.report_dir``."""
    plan = load_plan(settings.plan_file)
    register = load_register(settings.register_file)
    assessment = assess(plan, gather_evidence(session, settings), now)
    assessment = replace(assessment, findings=(
        *assessment.findings, *control_findings(register, settings)))
    doc = report.document(assessment, plan_file=settings.plan_file, register=register,
                          records=records_summary(session, settings, now.date()))
    paths = report.write_files(doc, register, settings.report_dir,
                               f"{now:%Y%m%dT%H%M%SZ}") if write else []
    return CheckOutcome(assessment, plan, register, doc, tuple(paths))


# --- reminders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """One item whose owner is to be reminded today."""

    subject: str
    person: str
    category: Category
    text: Bilingual


def due_reminders(session: Session, register: Register | None,
                  settings: ContinuitySettings, today: date) -> list[Due]:
    """Everything overdue or expiring on ``today``: risk reviews, insurance policies within
    the reminder window (or expired), training and drill participation, findings past their
    deadline."""
    due: list[Due] = []
    for risk in overdue_reviews(register, today) if register is not None else []:
        due.append(Due(f"risk:{risk.id}", risk.owner, risk.cause, Bilingual(
            f"リスク {risk.id}「{risk.title.ja}」の見直し期限（{risk.review_by}）を過ぎています",
            f"risk {risk.id} ({risk.title.en}) was due for review on {risk.review_by}")))
    window = timedelta(days=settings.insurance_remind_days)
    for policy in service.list_insurance(session):
        if policy.expires_on - window <= today:
            verb_en = "expired" if policy.expires_on < today else "expires"
            verb_ja = "満了しました" if policy.expires_on < today else "満了します"
            due.append(Due(f"insurance:{policy.id}", policy.owner,
                           Category(policy.categories[0]), Bilingual(
                f"保険「{policy.name}」（{policy.insurer}）は {policy.expires_on} に{verb_ja}",
                f"insurance {policy.name} ({policy.insurer}) {verb_en} on {policy.expires_on}")))
    for record in service.list_training(session, today=today, overdue_only=True):
        due.append(Due(f"training:{record.id}", record.person, Category.UNAUTHORIZED_ACCESS,
                       Bilingual(f"{record.course} の期限（{record.due_on}）を過ぎています",
                                 f"{record.course} was due on {record.due_on}")))
    for finding in service.list_findings(session, today=today, status=FindingStatus.OPEN,
                                         overdue_only=True):
        due.append(Due(f"finding:{finding.id}", finding.owner, Category.UNAUTHORIZED_ACCESS,
                       Bilingual(f"脆弱性 {finding.identifier}（{finding.severity}）の対応期限"
                                 f"（{finding.due_on}）を過ぎています",
                                 f"vulnerability {finding.identifier} ({finding.severity}) "
                                 f"was due to be closed on {finding.due_on}")))
    return due


@dataclass(frozen=True)
class ReminderResult:
    subject: str
    person: str
    page_id: int | None
    error: str


def send_reminders(session: Session, register: Register | None,
                   settings: ContinuitySettings, clock: Clock, *,
                   paging: ResponderSettings | None = None) -> list[ReminderResult]:
    """Page each due item's owner once today. A page that cannot be sent (an owner no
    longer in the directory, no route) is recorded with its error and reported; it does
    not stop the others."""
    now = clock.now()
    today = now.date()
    already = set(session.scalars(select(Reminder.subject).where(Reminder.remind_on == today)))
    results: list[ReminderResult] = []
    for item in due_reminders(session, register, settings, today):
        if item.subject in already or len(results) >= REMINDERS_PER_RUN_MAX:
            continue
        page_id, error = None, ""
        try:
            with session.begin_nested():
                sent = responders.page_person(
                    session, person=item.person, incident_id=f"continuity:{item.subject}",
                    summary=f"{item.text.ja} / {item.text.en}", category=item.category.value,
                    severity=REMINDER_SEVERITY.value,
                    reason=f"continuity reminder: {item.text.en}"[:500], clock=clock,
                    actor=REMINDER_ACTOR, settings=paging)
                page_id = sent.id
        except HaltguardError as exc:
            error = exc.message
        session.add(Reminder(subject=item.subject, remind_on=today, person=item.person,
                             sent_at=now, page_id=page_id, error=error))
        session.flush()
        results.append(ReminderResult(item.subject, item.person, page_id, error))
    return results


class ReminderLoop:
    """The reminders as a part of a running ``serve``: every ``interval_s`` the register is
    read again (a broken file is logged and its reminders skipped, the others still go; the
    shipped example register, whose owners are made up, is not used) and
    :func:`send_reminders` runs; at most one page per item and day, so the interval only
    decides how soon after midnight or after a change a reminder goes out."""

    def __init__(self, session_factory: sessionmaker[Session], settings: ContinuitySettings,
                 clock: Clock, interval_s: float, *,
                 paging: ResponderSettings | None = None) -> None:
        if interval_s < REMIND_INTERVAL_S_MIN:
            raise ValueError(f"interval_s must be at least {REMIND_INTERVAL_S_MIN}")
        self.session_factory = session_factory
        self.settings = settings
        self.clock = clock
        self.interval_s = interval_s
        self.paging = paging
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[ReminderResult]:
        register: Register | None = None
        try:
            if self.settings.register_file != REGISTER_EXAMPLE:  # its owners are made up
                register = load_register(self.settings.register_file)
        except HaltguardError as exc:
            log.error("continuity reminders: the risk register cannot be used: %s",
                      exc.message)
        with session_scope(self.session_factory) as session:
            return send_reminders(session, register, self.settings, self.clock,
                                  paging=self.paging)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                for result in self.tick():
                    if result.error:
                        log.warning("continuity reminder %s to %s not sent: %s",
                                    result.subject, result.person, result.error)
            except Exception:
                log.exception("continuity reminders failed; trying again next interval")
            self.stop_event.wait(self.interval_s)

    def start(self) -> ReminderLoop:
        assert self._thread is None, "a reminder loop starts once"
        self._thread = threading.Thread(target=self._run, name="haltguard-continuity",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
