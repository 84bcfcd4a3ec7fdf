"""The drills screen: start a drill on this system and watch its progress live, and open the
reports of past drills.

A drill runs through the drill domain's own registry (``drill.service.DrillRegistry``, the one
``/api/drills`` and ``haltguard drill`` use), so the console's drill is the same one-at-a-time
run with the same reports. The registry exists only on a system with drills allowed
(``drill.enabled``); without it the screen says so and still lists past reports, which are
read from the reports directory (``data_dir/drills``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from haltguard.common.errors import ErrorKind
from haltguard.console import auth, previews
from haltguard.console.errors import ConsoleError
from haltguard.console.live import ChangeFeed
from haltguard.console.web import (
    PREFIX,
    SECURITY_HEADERS,
    ConsoleRoute,
    guard,
    live,
    operations_of,
    read_form,
    redirect,
    render,
    run_work,
    unit_of_work,
    viewer_for,
)
from haltguard.drill.records import read_record
from haltguard.drill.runner import DrillRun
from haltguard.drill.scenario import SCALES
from haltguard.drill.scenarios import SCENARIOS
from haltguard.drill.service import REPORTS_DIR_NAME, DrillRegistry, DrillStart
from haltguard.security import audit
from haltguard.security.permissions import Action
from haltguard.web.errors import ApiError

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)

REPORTS_SHOWN_MAX = 50
REPORT_FILES_SCANNED_MAX = 2_000
REPORT_SUFFIXES = (".html", ".md")


class DrillScreenError(ConsoleError):
    """A drill the console cannot start or a report it cannot find."""


@dataclass(frozen=True)
class PastReport:
    """One finished drill's report files (relative to the reports directory)."""

    scenario: str
    passed: bool
    finished_at: datetime
    recovery_time_s: float | None
    html: str
    markdown: str


def reports_dir(request: Request) -> Path:
    return operations_of(request).settings.data_dir / REPORTS_DIR_NAME


def past_reports(directory: Path) -> list[PastReport]:
    """The newest drills' reports first, at most ``REPORTS_SHOWN_MAX``."""
    if not directory.is_dir():
        return []
    found: list[PastReport] = []
    for index, path in enumerate(directory.rglob("drill-*.json")):
        if index >= REPORT_FILES_SCANNED_MAX:
            break
        record = read_record(path)
        if record is None:
            continue
        relative = path.relative_to(directory)
        found.append(PastReport(
            record.scenario, record.passed, record.finished_at, record.recovery_time_s,
            relative.with_suffix(".html").as_posix(), relative.with_suffix(".md").as_posix()))
    found.sort(key=lambda report: report.finished_at, reverse=True)
    return found[:REPORTS_SHOWN_MAX]


def report_links(run: DrillRun, directory: Path) -> list[str]:
    """A finished run's report files, relative to the reports directory (as the report route
    takes them)."""
    if run.result is None:
        return []
    root = directory.resolve()
    found = []
    for written in run.result.report_paths:
        path = Path(written).resolve()
        if path.is_relative_to(root) and path.suffix in REPORT_SUFFIXES:
            found.append(path.relative_to(root).as_posix())
    return found


def registry_of(request: Request) -> DrillRegistry | None:
    registry = operations_of(request).optional_part(DrillRegistry)
    if registry is not None:  # progress lines reach the open drill pages like other changes
        operations_of(request).part(ChangeFeed).follow("drills", lambda: tuple(
            (run.id, len(run.lines), run.done.is_set()) for run in list(registry.runs.values())))
    return registry


def _run_of(registry: DrillRegistry | None, run_id: str) -> DrillRun:
    run = None if registry is None else registry.runs.get(run_id)
    if run is None:
        raise DrillScreenError(
            f"no drill {run_id} in this service (runs are kept until it restarts); the "
            "reports of past drills are listed on the drills screen",
            kind=ErrorKind.NOT_FOUND, code="drill_not_found",
            message_ja=f"訓練 {run_id} はこのサービスにありません(再起動までの実行のみ保持)。"
                       "過去の訓練の記録は訓練の画面にあります")
    return run


@router.get("/drills", dependencies=guard(Action.DRILL_READ))
async def drills_page(request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.DRILL_READ)
        registry = registry_of(request)
        runs = [] if registry is None else list(reversed(list(registry.runs.values())))
        return render(request, "drills.html", viewer_for(request, operator),
                      enabled=registry is not None, scenarios=sorted(SCENARIOS.values(),
                                                                     key=lambda s: s.name),
                      scales=list(SCALES), runs=runs, reports=past_reports(reports_dir(request)))

    return await run_work(request, work)


@router.post("/drills", dependencies=guard(Action.DRILL_RUN))
async def drill_start(request: Request) -> Response:
    """Start one drill, as ``POST /api/drills``: one at a time, on this system."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.DRILL_RUN)
        registry = registry_of(request)
        if registry is None:
            raise DrillScreenError(
                "drills are not allowed on this system; start it with drill.enabled = true "
                "(the default with --demo)", kind=ErrorKind.FORBIDDEN, code="drills_disabled",
                message_ja="このシステムでは訓練が許可されていません。drill.enabled = true "
                           "(--demo では既定)で起動してください")
        wanted = DrillStart(scenario=form.get("scenario"), scale=form.get("scale") or "reduced")
        with unit_of_work(request) as session:
            try:
                run = registry.start(wanted)
            except ApiError as refused:
                raise DrillScreenError(
                    refused.message, kind=refused.kind, code=refused.code,
                    message_ja=f"訓練を開始できませんでした: {refused.message}") from None
            audit.record(session, actor=operator.actor, action="drill.started",
                         target=f"drill:{run.id}",
                         details={"scenario": wanted.scenario, "scale": wanted.scale})
        return redirect(f"{PREFIX}/drills/runs/{run.id}")

    return await run_work(request, work)


@router.get("/drills/runs/{run_id}", dependencies=guard(Action.DRILL_READ))
async def drill_run_page(run_id: str, request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.DRILL_READ)
        run = _run_of(registry_of(request), run_id[:32])
        return render(request, "drill_run.html", viewer_for(request, operator), run=run,
                      reports=report_links(run, reports_dir(request)))

    return await run_work(request, work)


@router.get("/live/drills/runs/{run_id}", dependencies=live(Action.DRILL_READ))
async def drill_run_live(run_id: str, request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.DRILL_READ, activity=False)
        run = _run_of(registry_of(request), run_id[:32])
        return render(request, "drill_run_live.html", viewer_for(request, operator), run=run,
                      reports=report_links(run, reports_dir(request)))

    return await run_work(request, work)


@router.get("/drills/reports/{report_path:path}", dependencies=guard(Action.DRILL_READ))
async def drill_report(report_path: str, request: Request) -> Response:
    """A past drill's report as written (HTML or Markdown), from the reports directory only."""
    return await run_work(request, lambda: _report_file(request, report_path))


def _report_file(request: Request, report_path: str) -> Response:
    auth.authorize(request, Action.DRILL_READ)
    directory = reports_dir(request).resolve()
    wanted = (directory / report_path).resolve()
    if (not wanted.is_relative_to(directory) or wanted.suffix not in REPORT_SUFFIXES
            or not wanted.name.startswith("drill-") or not wanted.is_file()):
        raise DrillScreenError(
            f"no drill report {report_path!r}; open one from the drills screen",
            kind=ErrorKind.NOT_FOUND, code="drill_report_not_found",
            message_ja="その訓練の記録はありません。訓練の画面から開いてください")
    body = wanted.read_text(encoding="utf-8")
    if wanted.suffix == ".md":
        response = HTMLResponse(body, media_type="text/plain; charset=utf-8")
        response.headers.update(SECURITY_HEADERS)
        return response
    response = HTMLResponse(body)
    response.headers.update({**SECURITY_HEADERS, "Content-Security-Policy":
                             previews.PREVIEW_CONTENT_SECURITY_POLICY.replace(
                                 "frame-ancestors 'self'", "frame-ancestors 'none'")})
    return response
