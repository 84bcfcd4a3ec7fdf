"""The ``bcp check`` report: pass/fail per service with the date of every piece of evidence,
the plan's findings, the risk register with its heat maps, and the security records' state;
in Japanese and English, as a terminal summary, Markdown and HTML that say the same thing
(the reports' own document model; the heat maps are inlined SVG in HTML and files beside the
Markdown).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from haltguard.continuity.assess import KIND_LABEL, Assessment, overdue_reviews
from haltguard.continuity.bcp import Register
from haltguard.continuity.heatmap import TITLES, Rating, render_svg
from haltguard.reports.document import (
    Block,
    Bullets,
    Document,
    Figure,
    Paragraph,
    Section,
    Table,
    render_html,
    render_markdown,
)
from haltguard.reports.timefmt import jst_utc
from haltguard.status.texts import Bilingual

PASS = Bilingual("合格", "PASS")
FAIL = Bilingual("不合格", "FAIL")
TITLE = Bilingual("事業継続計画の点検", "Business continuity plan check")
NONE = Bilingual("なし", "none")
HEAD_SERVICE = Bilingual("業務", "Service")
HEAD_EVIDENCE = Bilingual("証跡", "Evidence")
HEAD_SUBJECT = Bilingual("対象", "Subject")
HEAD_DATE = Bilingual("日時", "Date")
HEAD_MEASURED = Bilingual("実績", "Measured")
HEAD_TARGET = Bilingual("目標", "Target")
HEAD_VERDICT = Bilingual("判定", "Verdict")
HEAD_PROBLEMS = Bilingual("指摘", "Problems")
SECTION_SERVICES = Bilingual("業務ごとの判定", "Verdict per service")
SECTION_EVIDENCE = Bilingual("証跡と目標", "Evidence against targets")
SECTION_FINDINGS = Bilingual("計画への指摘", "Findings about the plan")
SECTION_SITE = Bilingual("代替拠点と緊急連絡網", "Alternate site and contact tree")
SECTION_RISKS = Bilingual("リスク登録簿", "Risk register")
SECTION_RECORDS = Bilingual("セキュリティ記録", "Security records")


def both(text: Bilingual) -> str:
    return text.en if text.ja == text.en else f"{text.ja} / {text.en}"


def verdict(passed: bool) -> Bilingual:
    return PASS if passed else FAIL


@dataclass(frozen=True)
class RecordsSummary:
    """The security records' state on the day of the check (from the database)."""

    insurance_in_force: int
    insurance_expiring: tuple[str, ...]
    """Policies expiring within the reminder window: ``name (expires_on)``."""
    training_overdue: tuple[str, ...]
    """``person: course (due_on)``."""
    findings_open: dict[str, int]
    findings_overdue: int


HEATMAP_FILES = {Rating.INHERENT: "risk-heatmap-inherent.svg",
                 Rating.RESIDUAL: "risk-heatmap-residual.svg"}


def _register_blocks(register: Register, today: date) -> tuple[Block, ...]:
    overdue = {risk.id for risk in overdue_reviews(register, today)}
    rows = tuple(
        (risk.id, both(Bilingual(risk.title.ja, risk.title.en)), risk.cause.value,
         str(risk.likelihood), str(risk.impact), str(risk.score),
         f"{risk.residual.likelihood}x{risk.residual.impact}={risk.residual_score}",
         risk.owner, ", ".join(f"{c.kind}:{c.ref}" for c in risk.controls),
         f"{risk.review_by}" + (" (期限切れ / overdue)" if risk.id in overdue else ""))
        for risk in register.risks)
    figures = tuple(Figure(render_svg(register, rating), HEATMAP_FILES[rating],
                           f"{TITLES[rating][0]} / {TITLES[rating][1]}") for rating in Rating)
    header = ("ID", both(Bilingual("リスク", "Risk")), both(Bilingual("原因", "Cause")),
              both(Bilingual("発生可能性", "Likelihood")), both(Bilingual("影響度", "Impact")),
              both(Bilingual("評点", "Score")), both(Bilingual("残存", "Residual")),
              both(Bilingual("責任者", "Owner")), both(Bilingual("対策", "Controls")),
              both(Bilingual("見直し期限", "Review by")))
    return (*figures, Table(header, rows),
            Paragraph(both(Bilingual(f"見直し期限切れ: {len(overdue)}件",
                                     f"Reviews overdue: {len(overdue)}"))))


def _records_blocks(records: RecordsSummary) -> tuple[Block, ...]:
    open_text = ", ".join(f"{severity} {count}" for severity, count in
                          sorted(records.findings_open.items())) or "0"
    return (Bullets((
        both(Bilingual(f"有効な保険契約: {records.insurance_in_force}件",
                       f"Insurance policies in force: {records.insurance_in_force}")),
        both(Bilingual("期限が近い保険: ", "Policies expiring soon: "))
        + (", ".join(records.insurance_expiring) or both(NONE)),
        both(Bilingual("期限切れの研修・訓練参加: ", "Training or drill participation overdue: "))
        + (", ".join(records.training_overdue) or both(NONE)),
        both(Bilingual(f"未対応の脆弱性: {open_text}（期限切れ {records.findings_overdue}件）",
                       f"Open vulnerability findings: {open_text} "
                       f"({records.findings_overdue} overdue)")),
    )),)


def document(assessment: Assessment, *, plan_file: Path, register: Register | None = None,
             records: RecordsSummary | None = None) -> Document:
    plan = assessment.plan
    head = plan.plan
    preamble: tuple[Block, ...] = (Bullets((
        f"{both(Bilingual('計画', 'Plan'))}: {both(Bilingual(head.title.ja, head.title.en))} "
        f"(v{head.version}, {plan_file})",
        f"{both(Bilingual('承認', 'Approved by'))}: {head.approved_by.name}, "
        f"{both(Bilingual(head.approved_by.title.ja, head.approved_by.title.en))}; "
        f"{both(Bilingual('取締役会承認日', 'board approval'))} "
        f"{head.approved_by.board_approved_on}",
        f"{both(Bilingual('点検日時', 'Checked at'))}: {jst_utc(assessment.at)}",
        f"{both(Bilingual('結果', 'Result'))}: {both(verdict(assessment.passed))}",
    )),)
    service_rows = tuple(
        (both(Bilingual(v.service.name.ja, v.service.name.en)), f"{v.service.rto_s} s",
         f"{v.service.rpo_s} s", both(verdict(v.passed))) for v in assessment.services)
    evidence_rows = tuple(
        (v.service.id, both(KIND_LABEL[row.kind]), both(row.subject), jst_utc(row.at),
         both(row.measured), both(row.target), both(verdict(row.passed)),
         "; ".join(both(problem) for problem in row.problems) or "-")
        for v in assessment.services for row in v.rows)
    site = plan.alternate_site
    sections: list[Section] = [
        Section(both(SECTION_SERVICES), (Table(
            (both(HEAD_SERVICE), "RTO", "RPO", both(HEAD_VERDICT)), service_rows),)),
        Section(both(SECTION_EVIDENCE), (Table(
            (both(HEAD_SERVICE), both(HEAD_EVIDENCE), both(HEAD_SUBJECT), both(HEAD_DATE),
             both(HEAD_MEASURED), both(HEAD_TARGET), both(HEAD_VERDICT), both(HEAD_PROBLEMS)),
            evidence_rows),)),
        Section(both(SECTION_FINDINGS), (Bullets(
            tuple(both(finding) for finding in assessment.findings), empty=both(NONE)),)),
        Section(both(SECTION_SITE), (Bullets((
            f"{both(Bilingual(site.name.ja, site.name.en))}: "
            f"{both(Bilingual(site.location.ja, site.location.en))}",
            both(Bilingual(site.activation.ja, site.activation.en)),
            both(Bilingual("緊急連絡網: haltguard oncall で管理（不備は上記の指摘に記載）",
                           "Contact tree: kept by haltguard oncall (gaps are listed as "
                           "findings above)")),
        )),)),
    ]
    if register is not None:
        sections.append(Section(both(SECTION_RISKS),
                                _register_blocks(register, assessment.at.date())))
    if records is not None:
        sections.append(Section(both(SECTION_RECORDS), _records_blocks(records)))
    if not assessment.passed:
        failing = [f"{v.service.id}: {both(problem)}" for v in assessment.services
                   for row in v.rows for problem in row.problems]
        failing += [both(finding) for finding in assessment.findings]
        sections.insert(0, Section(both(FAIL), (Bullets(tuple(failing)),)))
    return Document(title=both(TITLE), lang="ja", sections=tuple(sections), preamble=preamble)


def write_files(doc: Document, register: Register | None, report_dir: Path,
                stamp: str) -> list[Path]:
    """``bcp-check-<stamp>.md`` and ``.html`` in ``report_dir`` (and the heat maps as SVG
    files the Markdown links to); returns the paths written."""
    report_dir.mkdir(parents=True, exist_ok=True)
    base = report_dir / f"bcp-check-{stamp}"
    paths = [base.with_suffix(".md"), base.with_suffix(".html")]
    paths[0].write_text(render_markdown(doc), encoding="utf-8")
    paths[1].write_text(render_html(doc), encoding="utf-8")
    if register is not None:
        for rating, name in HEATMAP_FILES.items():
            svg_path = report_dir / name
            svg_path.write_text(render_svg(register, rating), encoding="utf-8")
            paths.append(svg_path)
    return paths
