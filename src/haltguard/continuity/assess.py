"""The plan against the evidence: pure, with ``now`` passed in (no clock, no files).

The rules, stated once:

- Each service is judged on one row of evidence per scenario that can interrupt it (the
  newest drill of that scenario), plus the last good backup and the last verified restore
  if it is ``restored_from_backup``, plus the last failover if it ``fails_over``.
- A drill counts if it finished within the plan's ``drill_age_days_max`` (or the
  scenario's own), passed, recovered within the service's RTO (``recovery_time_s``) and lost
  nothing the RPO forbids: with an RPO of 0 not one acknowledged order; a ``disk-loss`` drill's
  measured data loss (seconds of journal time) within the RPO.
- A scenario no drill rehearses, evidence that does not exist and evidence older than its
  limit all fail the row: what cannot be shown does not pass.
- Findings about the plan itself (approval older than ``review_every_days``, gaps in the
  contact tree) fail the check too; a service passes when all its rows pass, the plan when
  every service passes and there is no finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from haltguard.backup.models import BackupEvidence
from haltguard.continuity.bcp import Plan, Register, Risk, Service
from haltguard.drill.records import DrillRecord
from haltguard.status.texts import Bilingual

DISK_LOSS_DRILL = "disk-loss"
"""The drill whose figures the backup domain also keeps (restore time, data lost)."""
DATA_LOST_KEYS = ("data lost (s of journal time)", "data lost (s)")
"""Where a ``disk-loss`` drill record says how much journal time the restore lost."""
S_PER_DAY = 86_400
S_PER_HOUR = 3_600


class EvidenceKind(StrEnum):
    DRILL = "drill"
    BACKUP = "backup"
    RESTORE = "restore"
    FAILOVER = "failover"


KIND_LABEL: dict[EvidenceKind, Bilingual] = {
    EvidenceKind.DRILL: Bilingual("訓練", "Drill"),
    EvidenceKind.BACKUP: Bilingual("最新の正常なバックアップ", "Last good backup"),
    EvidenceKind.RESTORE: Bilingual("最新の復元検証", "Last verified restore"),
    EvidenceKind.FAILOVER: Bilingual("最新の切替（フェイルオーバー）", "Last failover"),
}


FAILOVER_DRILL = "site-loss"
"""The replication's drill: the primary site lost, the standby takes over; its record is the
failover evidence."""


@dataclass(frozen=True)
class FailoverEvidence:
    """What the last failover to the alternate site measured (the ``site-loss`` drill)."""

    finished_at: datetime
    passed: bool
    failover_s: float | None
    data_lost_s: float = 0.0
    orders_lost: int = 0


def failover_of(record: DrillRecord | None) -> FailoverEvidence | None:
    """The failover evidence a ``site-loss`` drill record holds (None: no such drill yet)."""
    if record is None:
        return None
    return FailoverEvidence(finished_at=record.finished_at, passed=record.passed,
                            failover_s=record.recovery_time_s,
                            orders_lost=record.acknowledged_orders_lost)


@dataclass(frozen=True)
class Evidence:
    """Everything ``bcp check`` judges the plan by, gathered before judging."""

    drills: Mapping[str, DrillRecord]
    """The newest record of each drill scenario."""
    backup: BackupEvidence
    failover: FailoverEvidence | None = None
    contact_tree_gaps: tuple[str, ...] = ()
    """Incident categories the contact tree names nobody for (``haltguard oncall``)."""


@dataclass(frozen=True)
class Row:
    """One piece of evidence for one service, judged."""

    kind: EvidenceKind
    subject: Bilingual
    at: datetime | None
    measured: Bilingual
    target: Bilingual
    problems: tuple[Bilingual, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ServiceVerdict:
    service: Service
    rows: tuple[Row, ...]

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)


@dataclass(frozen=True)
class Assessment:
    plan: Plan
    at: datetime
    services: tuple[ServiceVerdict, ...]
    findings: tuple[Bilingual, ...]

    @property
    def passed(self) -> bool:
        return not self.findings and all(verdict.passed for verdict in self.services)


def _days(seconds: float) -> str:
    return f"{seconds / S_PER_DAY:.1f}"


def _age(problems: list[Bilingual], at: datetime, now: datetime, limit_s: float,
         what: Bilingual) -> None:
    age_s = (now - at).total_seconds()
    if age_s > limit_s:
        problems.append(Bilingual(
            f"{what.ja}が古すぎます（{_days(age_s)}日前、上限{_days(limit_s)}日）",
            f"{what.en} is stale ({_days(age_s)} days old, limit {_days(limit_s)} days)"))


def _drill_of_disk_loss(backup: BackupEvidence) -> DrillRecord | None:
    """The backup domain's own record of the last ``disk-loss`` drill, as a drill record."""
    if backup.last_drill_at is None:
        return None
    return DrillRecord(
        scenario=DISK_LOSS_DRILL, passed=bool(backup.last_drill_passed), completed=True,
        finished_at=backup.last_drill_at, started_at=None,
        recovery_time_s=backup.last_drill_restore_s,
        acknowledged_orders_lost=backup.last_drill_commands_lost or 0,
        ledger_invariant_ok=bool(backup.last_drill_passed), incident_id=None,
        path=Path("backup_restores"),
        extra={} if backup.last_drill_data_lost_s is None
        else {"data lost (s)": f"{backup.last_drill_data_lost_s:g}"},
    )


def _data_lost_s(record: DrillRecord, backup: BackupEvidence) -> float | None:
    if record.scenario != DISK_LOSS_DRILL:
        return None
    text = next((record.extra[key] for key in DATA_LOST_KEYS if key in record.extra), None)
    if text is not None:
        try:
            return float(text)
        except ValueError:
            return None
    same = backup.last_drill_at is not None and backup.last_drill_at == record.finished_at
    return backup.last_drill_data_lost_s if same else None


def _drill_row(plan: Plan, service: Service, scenario_id: str, evidence: Evidence,
               now: datetime) -> Row:
    scenario = plan.scenario(scenario_id)
    limit_days = scenario.drill_age_days_max or plan.evidence.drill_age_days_max
    target = Bilingual(
        f"{limit_days}日以内に合格、復旧{service.rto_s}秒以内、損失{service.rpo_s}秒以内",
        f"passed within {limit_days} days, recovery <= {service.rto_s} s, "
        f"data lost <= {service.rpo_s} s")
    subject = Bilingual(scenario.name.ja, scenario.name.en)
    if scenario.drill is None:
        return Row(EvidenceKind.DRILL, subject, None, Bilingual("訓練なし", "no drill"), target,
                   (Bilingual("この事態を確かめる訓練が計画にありません",
                              "no drill rehearses this scenario in the plan"),))
    record = evidence.drills.get(scenario.drill)
    if scenario.drill == DISK_LOSS_DRILL:
        own = _drill_of_disk_loss(evidence.backup)
        if own is not None and (record is None or own.finished_at > record.finished_at):
            record = own
    if record is None:
        return Row(EvidenceKind.DRILL, subject, None,
                   Bilingual(f"{scenario.drill}: 記録なし", f"{scenario.drill}: no record"),
                   target, (Bilingual(f"訓練 {scenario.drill} が一度も行われていません",
                                      f"drill {scenario.drill} has never been run"),))
    problems: list[Bilingual] = []
    _age(problems, record.finished_at, now, limit_days * S_PER_DAY,
         Bilingual(f"訓練 {scenario.drill} の記録", f"drill {scenario.drill}"))
    if not record.passed:
        problems.append(Bilingual(f"訓練 {scenario.drill} は不合格でした",
                                  f"drill {scenario.drill} failed"))
    recovery = record.recovery_time_s
    if recovery is not None and recovery > service.rto_s:
        problems.append(Bilingual(f"復旧時間{recovery:.1f}秒が目標RTO {service.rto_s}秒を超過",
                                  f"recovery {recovery:.1f} s missed the RTO of "
                                  f"{service.rto_s} s"))
    if service.rpo_s == 0 and record.acknowledged_orders_lost > 0:
        problems.append(Bilingual(
            f"受付済み注文{record.acknowledged_orders_lost}件を喪失（RPO 0）",
            f"{record.acknowledged_orders_lost} acknowledged orders lost (RPO 0)"))
    lost_s = _data_lost_s(record, evidence.backup)
    if lost_s is not None and lost_s > service.rpo_s:
        problems.append(Bilingual(f"データ損失{lost_s:g}秒が目標RPO {service.rpo_s}秒を超過",
                                  f"data lost {lost_s:g} s missed the RPO of {service.rpo_s} s"))
    verdict = Bilingual("合格", "passed") if record.passed else Bilingual("不合格", "failed")
    recovered = "-" if recovery is None else f"{recovery:.1f}"
    lost = "" if lost_s is None else f", {lost_s:g} s"
    measured = Bilingual(
        f"{scenario.drill}: {verdict.ja}、復旧{recovered}秒、喪失注文"
        f"{record.acknowledged_orders_lost}件{lost}",
        f"{scenario.drill}: {verdict.en}, recovery {recovered} s, "
        f"{record.acknowledged_orders_lost} orders lost{lost}")
    return Row(EvidenceKind.DRILL, subject, record.finished_at, measured, target,
               tuple(problems))


def _backup_rows(plan: Plan, backup: BackupEvidence, now: datetime) -> tuple[Row, Row]:
    limits = plan.evidence
    label = KIND_LABEL[EvidenceKind.BACKUP]
    problems: list[Bilingual] = []
    at = backup.last_good_backup_at
    target = Bilingual(f"{limits.backup_age_hours_max}時間以内",
                       f"within {limits.backup_age_hours_max} h")
    if at is None:
        problems.append(Bilingual("正常なバックアップがありません", "no good backup exists"))
        measured = Bilingual("なし", "none")
    else:
        _age(problems, at, now, limits.backup_age_hours_max * S_PER_HOUR, label)
        age_h = (now - at).total_seconds() / S_PER_HOUR
        measured = Bilingual(f"{age_h:.1f}時間前 ({backup.last_good_backup_id})",
                             f"{age_h:.1f} h old ({backup.last_good_backup_id})")
    failed = backup.last_failed_backup_at
    if failed is not None and (at is None or failed > at):
        problems.append(Bilingual(f"最新のバックアップが失敗: {backup.last_failure}",
                                  f"the newest backup failed: {backup.last_failure}"))
    backup_row = Row(EvidenceKind.BACKUP, label, at, measured, target, tuple(problems))

    label = KIND_LABEL[EvidenceKind.RESTORE]
    problems = []
    at = backup.last_verified_at
    target = Bilingual(f"{limits.restore_verified_age_days_max}日以内に検証合格",
                       f"verified within {limits.restore_verified_age_days_max} days")
    if at is None:
        problems.append(Bilingual("復元が一度も検証されていません",
                                  "no restore has ever been verified"))
        measured = Bilingual("なし", "none")
    else:
        _age(problems, at, now, limits.restore_verified_age_days_max * S_PER_DAY, label)
        measured = Bilingual(f"合格 ({backup.last_verified_backup_id})",
                             f"passed ({backup.last_verified_backup_id})")
    failed = backup.last_verify_failed_at
    if failed is not None and (at is None or failed > at):
        problems.append(Bilingual("最新の復元検証が不合格でした",
                                  "the newest restore verification failed"))
    return backup_row, Row(EvidenceKind.RESTORE, label, at, measured, target, tuple(problems))


def _failover_row(plan: Plan, service: Service, failover: FailoverEvidence | None,
                  now: datetime) -> Row:
    label = KIND_LABEL[EvidenceKind.FAILOVER]
    limit_days = plan.evidence.failover_age_days_max
    target = Bilingual(f"{limit_days}日以内、切替{service.rto_s}秒以内、損失{service.rpo_s}秒以内",
                       f"within {limit_days} days, switch <= {service.rto_s} s, "
                       f"data lost <= {service.rpo_s} s")
    if failover is None:
        return Row(EvidenceKind.FAILOVER, label, None, Bilingual("証跡なし", "no evidence"),
                   target, (Bilingual("副拠点への切替の証跡がありません",
                                      "no evidence of a failover to the alternate site"),))
    problems: list[Bilingual] = []
    _age(problems, failover.finished_at, now, limit_days * S_PER_DAY, label)
    if not failover.passed:
        problems.append(Bilingual("最新の切替は失敗しました", "the last failover failed"))
    if failover.failover_s is None:
        problems.append(Bilingual("切替時間が計測されていません",
                                  "the failover time was not measured"))
    elif failover.failover_s > service.rto_s:
        problems.append(Bilingual(f"切替{failover.failover_s:.1f}秒がRTOを超過",
                                  f"failover {failover.failover_s:.1f} s missed the RTO"))
    if failover.data_lost_s > service.rpo_s:
        problems.append(Bilingual(f"データ損失{failover.data_lost_s:g}秒がRPOを超過",
                                  f"data lost {failover.data_lost_s:g} s missed the RPO"))
    if service.rpo_s == 0 and failover.orders_lost > 0:
        problems.append(Bilingual(f"切替で受付済み注文{failover.orders_lost}件を喪失（RPO 0）",
                                  f"{failover.orders_lost} acknowledged orders lost in the "
                                  "failover (RPO 0)"))
    took = "-" if failover.failover_s is None else f"{failover.failover_s:.1f}"
    measured = Bilingual(f"切替{took}秒、喪失注文{failover.orders_lost}件",
                         f"switch {took} s, {failover.orders_lost} orders lost")
    return Row(EvidenceKind.FAILOVER, label, failover.finished_at, measured, target,
               tuple(problems))


def plan_findings(plan: Plan, evidence: Evidence, now: datetime) -> list[Bilingual]:
    """What is wrong with the plan itself, apart from any one service."""
    findings: list[Bilingual] = []
    approved = plan.plan.approved_by.board_approved_on
    review_due = approved + timedelta(days=plan.plan.review_every_days)
    if review_due < now.date():
        findings.append(Bilingual(
            f"計画の見直し期限切れ: 取締役会承認 {approved}、期限 {review_due}",
            f"the plan is overdue for review: board approval {approved}, due {review_due}"))
    if approved > now.date():
        findings.append(Bilingual(f"取締役会承認日 {approved} が未来の日付です",
                                  f"the board approval date {approved} is in the future"))
    if evidence.contact_tree_gaps:
        gaps = ", ".join(evidence.contact_tree_gaps)
        findings.append(Bilingual(f"緊急連絡網に連絡先のない事態: {gaps}",
                                  f"the contact tree names nobody to call for: {gaps} "
                                  "(haltguard oncall contacts)"))
    return findings


def assess(plan: Plan, evidence: Evidence, now: datetime) -> Assessment:
    """Judge every service of ``plan`` by ``evidence`` at ``now`` (UTC, aware)."""
    assert now.tzinfo is not None, "now must carry its time zone"
    verdicts = []
    backup_rows = _backup_rows(plan, evidence.backup, now)
    for service in plan.services:
        rows = [_drill_row(plan, service, scenario, evidence, now)
                for scenario in service.scenarios]
        if service.restored_from_backup:
            rows.extend(backup_rows)
        if service.fails_over:
            rows.append(_failover_row(plan, service, evidence.failover, now))
        verdicts.append(ServiceVerdict(service, tuple(rows)))
    return Assessment(plan, now, tuple(verdicts), tuple(plan_findings(plan, evidence, now)))


# --- the risk register --------------------------------------------------------------------


def overdue_reviews(register: Register, today: date) -> list[Risk]:
    """Risks whose review date has passed, most overdue first."""
    return sorted((risk for risk in register.risks if risk.review_by < today),
                  key=lambda risk: (risk.review_by, risk.id))


def unknown_controls(register: Register, rule_ids: frozenset[str] | None,
                     drill_names: frozenset[str]) -> list[Bilingual]:
    """Controls that name a detection rule or a drill that does not exist: a control nobody
    can point to does not lower a risk. ``rule_ids`` of None: the rules file could not be
    read, so rule controls are not judged here (its own check says why)."""
    findings = []
    for risk in register.risks:
        for control in risk.controls:
            missing = ((control.kind == "drill" and control.ref not in drill_names)
                       or (control.kind == "rule" and rule_ids is not None
                           and control.ref not in rule_ids))
            if missing:
                findings.append(Bilingual(
                    f"リスク {risk.id} の対策 {control.kind}:{control.ref} が存在しません",
                    f"risk {risk.id}: control {control.kind}:{control.ref} does not exist"))
    return findings
