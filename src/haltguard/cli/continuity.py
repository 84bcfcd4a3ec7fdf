"""``haltguard bcp``, ``risk``, ``insurance``, ``vuln`` and ``training``: the continuity plan
checked against its evidence, the risk register, and the security records of chapter 3.

Works directly on the database named by ``HALTGUARD_DATABASE_URL`` (default
``./data/haltguard.sqlite3``) and the files the configuration names; every change is audited
with the actor ``cli:<os user>``. Why not through the API: these records are what an operator
needs when the service is down or the site is lost (the insurer's claim contacts, whether the
restore was verified), and an auditor's ``bcp check`` must not depend on the service it
judges.

``bcp check`` exits 0 when every service passes, 1 when something failed, 2 on bad input.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from haltguard.cli.client import fail_with
from haltguard.cli.settings import environment_config, local_engine
from haltguard.cli.timefmt import table_time
from haltguard.common.clock import SystemClock
from haltguard.common.errors import HaltguardError
from haltguard.continuity import flows, service
from haltguard.continuity.assess import overdue_reviews
from haltguard.continuity.bcp import (
    INSURANCE_EXAMPLE,
    PLAN_EXAMPLE,
    REGISTER_EXAMPLE,
    load_plan,
    load_register,
)
from haltguard.continuity.heatmap import Rating, render_svg
from haltguard.continuity.models import (
    FindingClose,
    FindingStatus,
    InsuranceCreate,
    TrainingComplete,
    TrainingCreate,
    TrainingKind,
    UpdateCreate,
)
from haltguard.continuity.report import both, verdict
from haltguard.continuity.scanners import ScanFormat, parse_scan
from haltguard.continuity.settings import ContinuitySettings
from haltguard.continuity.strictyaml import load_file
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_session_factory, session_scope
from haltguard.incidents import paging as incident_paging

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

bcp_app = typer.Typer(no_args_is_help=True, add_completion=False,
                      help="The business continuity plan: check it against the evidence.")
risk_app = typer.Typer(no_args_is_help=True, add_completion=False,
                       help="The risk register: check, show, heat map.")
insurance_app = typer.Typer(no_args_is_help=True, add_completion=False,
                            help="Insurance policies, their claim contacts and expiry.")
vuln_app = typer.Typer(no_args_is_help=True, add_completion=False,
                       help="Vulnerability findings from scanners, tracked to closure; "
                            "the software-update log.")
training_app = typer.Typer(no_args_is_help=True, add_completion=False,
                           help="Operators' security training and drill participation.")

console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

PlanOption = Annotated[Path | None, typer.Option(
    "--plan", show_default=False, help="The plan file (default: continuity.plan_file).")]
RegisterOption = Annotated[Path | None, typer.Option(
    "--register", show_default=False,
    help="The risk register file (default: continuity.register_file).")]
DateArg = Annotated[str, typer.Option(help="A date: YYYY-MM-DD.")]


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def _settings(plan: Path | None = None, register: Path | None = None,
              **changes: Any) -> ContinuitySettings:
    base = environment_config().continuity_settings()
    values: dict[str, Any] = {"plan_file": plan or base.plan_file,
                              "register_file": register or base.register_file}
    values.update({key: value for key, value in changes.items() if value is not None})
    return ContinuitySettings(**{**base.__dict__, **values})


def run(work: Callable[[Session], T]) -> T:
    """One unit of work on the local database (migrated first); a refusal prints what was
    wrong and what to do, and exits 1 (2 for a file that cannot be used)."""
    incident_paging.subscribe()
    engine = local_engine()
    try:
        upgrade(engine)
        with session_scope(make_session_factory(engine)) as session:
            return work(session)
    except HaltguardError as exc:
        if exc.code == "continuity_file_invalid":
            error_console.print(f"[red]error:[/red] {escape(exc.message)}\n"
                                f"{escape(exc.message_ja or '')}")
            raise typer.Exit(EXIT_BAD_INPUT) from exc
        fail_with(exc)
    finally:
        engine.dispose()


def _date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        error_console.print(f"[red]error:[/red] {option} must be a date like 2027-03-31, "
                            f"not {escape(text)!r}")
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _file_error(exc: HaltguardError) -> typer.Exit:
    error_console.print(f"[red]error:[/red] {escape(exc.message)}\n{escape(exc.message_ja or '')}")
    return typer.Exit(EXIT_BAD_INPUT)


# --- bcp --------------------------------------------------------------------------------------


@bcp_app.command("check")
def bcp_check(
    plan: PlanOption = None, register: RegisterOption = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report-dir", show_default=False,
        help="Where the report goes (default: continuity.report_dir).")] = None,
    drill_reports: Annotated[list[Path] | None, typer.Option(
        "--drill-reports", show_default=False,
        help="A directory of drill reports to take evidence from (repeat; default: "
             "continuity.drill_report_dirs).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON.")] = False,
) -> None:
    """Judge every service of the plan by the evidence (drills, backups, restores, failover)
    and write the report (Markdown and HTML, ja/en, with the risk heat maps)."""
    settings = _settings(plan, register, report_dir=report_dir,
                         drill_report_dirs=tuple(drill_reports) if drill_reports else None)
    outcome = run(lambda session: flows.check_plan(session, settings, SystemClock().now()))
    assessment = outcome.assessment
    if as_json:
        console.print_json(json.dumps({
            "passed": assessment.passed,
            "services": {v.service.id: v.passed for v in assessment.services},
            "findings": [finding.en for finding in assessment.findings],
            "report": [str(path) for path in outcome.paths]}))
    else:
        table = Table(title=outcome.document.title)
        for head in ("Service", "Evidence", "Date (UTC)", "Measured", "Verdict"):
            table.add_column(head)
        for service_verdict in assessment.services:
            for row in service_verdict.rows:
                mark = "[green]PASS[/green]" if row.passed else "[bold red]FAIL[/bold red]"
                table.add_row(service_verdict.service.id, escape(row.subject.en),
                              "-" if row.at is None else f"{row.at:%Y-%m-%d %H:%M}",
                              escape(row.measured.en), mark)
        console.print(table)
        for finding in assessment.findings:
            console.print(f"[red]finding:[/red] {escape(finding.en)} / {escape(finding.ja)}")
        for path in outcome.paths:
            console.print(f"report: {path}", markup=False)
        overall = both(verdict(assessment.passed))
        console.print(f"[{'green' if assessment.passed else 'bold red'}]{overall}[/]")
    raise typer.Exit(EXIT_PASSED if assessment.passed else EXIT_FAILED)


@bcp_app.command("show")
def bcp_show(plan: PlanOption = None) -> None:
    """The plan as loaded: approval, services with their targets, scenarios, alternate site."""
    path = plan or environment_config().continuity_settings().plan_file
    try:
        loaded = load_plan(path)
    except HaltguardError as exc:
        raise _file_error(exc) from exc
    head = loaded.plan
    console.print(f"{head.title.ja} / {head.title.en} (v{head.version}, {path})", markup=False)
    console.print(f"approved by {head.approved_by.name} ({head.approved_by.title.en}); board "
                  f"approval {head.approved_by.board_approved_on}; review every "
                  f"{head.review_every_days} days", markup=False)
    table = Table(title="Services / 業務")
    for column in ("id", "name", "RTO s", "RPO s", "depends on", "scenarios", "recovery"):
        table.add_column(column)
    for each in loaded.services:
        recovery = ", ".join(name for name, on in (("backup", each.restored_from_backup),
                                                    ("failover", each.fails_over)) if on)
        table.add_row(each.id, escape(f"{each.name.ja} / {each.name.en}"), str(each.rto_s),
                      str(each.rpo_s), ", ".join(each.depends_on), ", ".join(each.scenarios),
                      recovery or "-")
    console.print(table)
    table = Table(title="Scenarios / 想定事態")
    for column in ("id", "name", "runbook", "drill"):
        table.add_column(column)
    for scenario in loaded.scenarios:
        table.add_row(scenario.id, escape(f"{scenario.name.ja} / {scenario.name.en}"),
                      scenario.runbook, scenario.drill or "-")
    console.print(table)
    site = loaded.alternate_site
    console.print(f"alternate site: {site.name.en} / {site.name.ja} ({site.location.en})",
                  markup=False)


@bcp_app.command("example")
def bcp_example(
    which: Annotated[str, typer.Argument(help="plan, register or insurance")] = "plan",
) -> None:
    """Print a shipped example (plan, risk register, insurance policy) to copy and make your
    own."""
    files = {"plan": PLAN_EXAMPLE, "register": REGISTER_EXAMPLE,
             "insurance": INSURANCE_EXAMPLE}
    if which not in files:
        error_console.print("[red]error:[/red] choose plan, register or insurance")
        raise typer.Exit(EXIT_BAD_INPUT)
    print(files[which].read_text(encoding="utf-8"), end="")


@bcp_app.command("remind")
def bcp_remind(register: RegisterOption = None) -> None:
    """Page the owner of every overdue risk review, expiring policy, overdue training and
    overdue finding (once a day each; run it from cron or a timer)."""
    settings = _settings(None, register)
    paging = environment_config().paging
    loaded = None
    if settings.register_file == REGISTER_EXAMPLE:
        console.print("the risk register is the shipped example (made-up owners): risk "
                      "reviews are not reminded; set continuity.register_file", markup=False)
    else:
        try:
            loaded = load_register(settings.register_file)
        except HaltguardError as exc:
            raise _file_error(exc) from exc
    results = run(lambda session: flows.send_reminders(session, loaded, settings,
                                                       SystemClock(), paging=paging))
    for result in results:
        outcome = f"page {result.page_id}" if result.page_id is not None else \
            f"NOT SENT: {result.error}"
        console.print(f"{result.subject} -> {result.person}: {outcome}", markup=False)
    console.print(f"{len(results)} reminder(s) today", markup=False)
    if any(result.page_id is None for result in results):
        raise typer.Exit(EXIT_FAILED)


# --- risk -------------------------------------------------------------------------------------


@risk_app.command("check")
def risk_check(register: RegisterOption = None) -> None:
    """Load the register strictly (every problem named with its line) and check that each
    control names an existing drill scenario or detection rule (exit 1 if one does not)."""
    settings = _settings(None, register)
    try:
        loaded = load_register(settings.register_file)
    except HaltguardError as exc:
        raise _file_error(exc) from exc
    findings = flows.control_findings(loaded, settings)
    for finding in findings:
        console.print(f"{finding.en} / {finding.ja}", markup=False)
    console.print(f"{settings.register_file}: {len(loaded.risks)} risks, "
                  f"{'valid' if not findings else f'{len(findings)} unknown control(s)'}",
                  markup=False)
    if findings:
        raise typer.Exit(EXIT_FAILED)


@risk_app.command("show")
def risk_show(register: RegisterOption = None) -> None:
    """The risks with their ratings, owners, controls and review dates."""
    path = register or environment_config().continuity_settings().register_file
    try:
        loaded = load_register(path)
    except HaltguardError as exc:
        raise _file_error(exc) from exc
    overdue = {risk.id for risk in overdue_reviews(loaded, date.today())}
    table = Table(title=f"Risk register / リスク登録簿 ({path})")
    for column in ("id", "risk", "cause", "LxI", "residual", "owner", "review by"):
        table.add_column(column)
    for risk in sorted(loaded.risks, key=lambda each: -each.score):
        review = f"[bold red]{risk.review_by} overdue[/]" if risk.id in overdue \
            else str(risk.review_by)
        table.add_row(risk.id, escape(f"{risk.title.en} / {risk.title.ja}"), risk.cause.value,
                      f"{risk.likelihood}x{risk.impact}={risk.score}",
                      f"{risk.residual.likelihood}x{risk.residual.impact}="
                      f"{risk.residual_score}", risk.owner, review)
    console.print(table)


@risk_app.command("heatmap")
def risk_heatmap(
    out: Annotated[Path, typer.Option("--out", help="The SVG file to write.")],
    register: RegisterOption = None,
    rating: Annotated[Rating, typer.Option(help="inherent or residual")] = Rating.INHERENT,
) -> None:
    """Write the register's heat map as SVG."""
    path = register or environment_config().continuity_settings().register_file
    try:
        loaded = load_register(path)
    except HaltguardError as exc:
        raise _file_error(exc) from exc
    out.write_text(render_svg(loaded, rating), encoding="utf-8")
    console.print(f"wrote {out}", markup=False)


# --- insurance -------------------------------------------------------------------------------


@insurance_app.command("add")
def insurance_add(
    file: Annotated[Path, typer.Argument(help="The policy as YAML (the fields of "
                                              "InsuranceCreate; docs/continuity.md).")],
) -> None:
    """Record an insurance policy from a YAML file (strict: an unknown field is an error)."""
    try:
        data = load_file(InsuranceCreate, file, what_en="the insurance policy",
                         what_ja="保険契約ファイル")
    except HaltguardError as exc:
        raise _file_error(exc) from exc
    today = date.today()
    read = run(lambda session: service.insurance_read(service.add_insurance(
        session, data, actor=cli_actor(), now=SystemClock().now()), today))
    console.print(f"insurance policy {read.id}: {read.name}, expires {read.expires_on}",
                  markup=False)


@insurance_app.command("list")
def insurance_list(
    incident: Annotated[int | None, typer.Option(
        "--incident", show_default=False,
        help="Only the policies in force that cover this incident's category.")] = None,
) -> None:
    """Policies with their cover, limit, expiry and claim contacts."""
    today = date.today()

    def work(session: Session) -> list[Any]:
        if incident is not None:
            return service.insurance_for_incident(session, incident, today).policies
        return [service.insurance_read(policy, today) for policy in service.list_insurance(session)]

    policies = run(work)
    table = Table(title="Insurance / 保険")
    for column in ("id", "name", "insurer", "categories", "limit", "expires", "contacts"):
        table.add_column(column)
    for policy in policies:
        expiry = f"{policy.expires_on} ({policy.days_to_expiry} d)"
        contacts = "; ".join(f"{c['name']} {c.get('phone', '')} {c.get('email', '')}".strip()
                             for c in policy.contacts)
        table.add_row(str(policy.id), escape(policy.name), escape(policy.insurer),
                      ", ".join(policy.categories), f"{policy.limit_minor} {policy.currency}",
                      expiry if policy.in_force else f"[red]{expiry} not in force[/red]",
                      escape(contacts))
    console.print(table)


# --- vulnerabilities and updates ---------------------------------------------------------------


@vuln_app.command("import")
def vuln_import(
    file: Annotated[Path, typer.Argument(help="pip-audit JSON or a SARIF file.")],
    scan_format: Annotated[ScanFormat, typer.Option("--format", help="pip-audit or sarif")],
    owner: Annotated[str, typer.Option(help="Who closes these (a person of oncall).")],
) -> None:
    """Import a scanner's output: new findings get deadlines by severity."""
    settings = _settings()
    try:
        text = file.read_text(encoding="utf-8")
        scan = parse_scan(text, str(file), scan_format,
                          pip_audit_severity=settings.pip_audit_severity)
    except OSError as exc:
        error_console.print(f"[red]error:[/red] cannot read {file}: {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    except HaltguardError as exc:
        raise _file_error(exc) from exc
    summary = run(lambda session: service.import_scan(
        session, scan, owner=owner, actor=cli_actor(), now=SystemClock().now(),
        settings=settings))
    console.print(f"{summary.scanner}: {summary.found} findings, {summary.new} new, "
                  f"{summary.seen_again} seen again, {summary.reopened} reopened", markup=False)


@vuln_app.command("list")
def vuln_list(
    status: Annotated[FindingStatus | None, typer.Option(help="open, fixed or accepted")]
    = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only open ones past their "
                                                            "deadline.")] = False,
) -> None:
    """Findings with their severity, owner and deadline; overdue ones in red."""
    today = date.today()
    findings = run(lambda session: [service.finding_read(finding, today) for finding in
                                    service.list_findings(session, today=today, status=status,
                                                          overdue_only=overdue)])
    table = Table(title="Vulnerability findings / 脆弱性")
    for column in ("id", "severity", "identifier", "where", "owner", "due", "status"):
        table.add_column(column)
    for finding in findings:
        where = f"{finding.package} {finding.installed_version}".strip() or finding.location
        due = f"[bold red]{finding.due_on} overdue[/]" if finding.overdue else str(finding.due_on)
        table.add_row(str(finding.id), finding.severity, escape(finding.identifier),
                      escape(where), finding.owner, due, finding.status)
    console.print(table)
    if any(finding.overdue for finding in findings):
        raise typer.Exit(EXIT_FAILED)


@vuln_app.command("close")
def vuln_close(
    finding_id: Annotated[int, typer.Argument()],
    note: Annotated[str, typer.Option(help="How it was fixed, or why it is accepted.")],
    accepted: Annotated[bool, typer.Option("--accepted", help="Close as accepted risk, "
                                                              "not fixed.")] = False,
) -> None:
    data = FindingClose(status=FindingStatus.ACCEPTED if accepted else FindingStatus.FIXED,
                        note=note)
    run(lambda session: service.close_finding(session, finding_id, data, actor=cli_actor(),
                                              now=SystemClock().now()))
    console.print(f"finding {finding_id} closed as {data.status.value}", markup=False)


@vuln_app.command("update")
def vuln_update(
    component: Annotated[str, typer.Argument()],
    *,
    from_version: Annotated[str, typer.Option("--from")],
    to_version: Annotated[str, typer.Option("--to")],
    maintenance: Annotated[int | None, typer.Option(
        "--maintenance", show_default=False,
        help="The status page's maintenance it was applied in.")] = None,
    fixes: Annotated[list[int] | None, typer.Option(
        "--fixes", show_default=False, help="A finding it fixes (repeat).")] = None,
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """Log a software update applied now (closing the findings it fixes)."""
    now = SystemClock().now()
    data = UpdateCreate(component=component, from_version=from_version, to_version=to_version,
                        applied_at=now, note=note, maintenance_id=maintenance,
                        fixes=list(fixes or []))
    read = run(lambda session: service.update_read(session, service.log_update(
        session, data, actor=cli_actor(), now=now)))
    console.print(f"update {read.id}: {component} {from_version} -> {to_version}; fixed "
                  f"{read.fixes or 'none'}", markup=False)


@vuln_app.command("updates")
def vuln_updates() -> None:
    """The software-update log, newest first, with the maintenance each was applied in."""
    updates = run(lambda session: [service.update_read(session, update)
                                   for update in service.list_updates(session)])
    table = Table(title="Software updates / ソフトウェア更新")
    for column in ("id", "applied", "component", "versions", "maintenance", "fixes"):
        table.add_column(column)
    for update in updates:
        window = "-" if update.maintenance_id is None else \
            f"{update.maintenance_id} {update.maintenance_name_en or ''}" + (
                "" if update.in_maintenance_window else " (outside its window)")
        table.add_row(str(update.id), table_time(update.applied_at),
                      escape(update.component),
                      escape(f"{update.from_version} -> {update.to_version}"),
                      escape(window), ", ".join(map(str, update.fixes)) or "-")
    console.print(table)


# --- training ---------------------------------------------------------------------------------


@training_app.command("assign")
def training_assign(
    person: Annotated[str, typer.Argument()],
    course: Annotated[str, typer.Argument()],
    due: DateArg,
    kind: Annotated[TrainingKind, typer.Option()] = TrainingKind.SECURITY_TRAINING,
) -> None:
    """Assign a course (or a drill to take part in) to a person, due by a date."""
    data = TrainingCreate(person=person, course=course, due_on=_date(due, "--due"), kind=kind)
    record = run(lambda session: service.add_training(session, data, actor=cli_actor(),
                                                      now=SystemClock().now()).id)
    console.print(f"training record {record}: {person}, {course}, due {data.due_on}",
                  markup=False)


@training_app.command("complete")
def training_complete(
    record_id: Annotated[int, typer.Argument()],
    on: DateArg,
    next_due: Annotated[str | None, typer.Option(
        "--next-due", show_default=False, help="Assign the next round, due then.")] = None,
    evidence: Annotated[str, typer.Option(help="A certificate id, a report file ...")] = "",
) -> None:
    data = TrainingComplete(completed_on=_date(on, "--on"), evidence=evidence,
                            next_due_on=None if next_due is None else _date(next_due,
                                                                            "--next-due"))
    run(lambda session: service.complete_training(session, record_id, data, actor=cli_actor(),
                                                  now=SystemClock().now()))
    console.print(f"training record {record_id} completed on {data.completed_on}",
                  markup=False)


@training_app.command("list")
def training_list(
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue ones.")] = False,
) -> None:
    today = date.today()
    records = run(lambda session: [service.training_read(record, today) for record in
                                   service.list_training(session, today=today,
                                                         overdue_only=overdue)])
    table = Table(title="Training and drill participation / 研修・訓練参加")
    for column in ("id", "person", "kind", "course", "due", "completed"):
        table.add_column(column)
    for record in records:
        due = f"[bold red]{record.due_on} overdue[/]" if record.overdue else str(record.due_on)
        table.add_row(str(record.id), record.person, record.kind, escape(record.course), due,
                      str(record.completed_on or "-"))
    console.print(table)
    if any(record.overdue for record in records):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add ``bcp``, ``risk``, ``insurance``, ``vuln`` and ``training`` to the main command."""
    app.add_typer(bcp_app, name="bcp", help="The business continuity plan: check, show, "
                  "example, remind.")
    app.add_typer(risk_app, name="risk", help="The risk register: check, show, heatmap.")
    app.add_typer(insurance_app, name="insurance", help="Insurance policies: add, list.")
    app.add_typer(vuln_app, name="vuln", help="Vulnerability findings (import, list, close) "
                  "and the software-update log (update, updates).")
    app.add_typer(training_app, name="training",
                  help="Security training and drill participation: assign, complete, list.")
