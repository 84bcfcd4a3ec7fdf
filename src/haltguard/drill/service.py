"""``/api/drills`` on the operations service: start a drill in the serving process, follow
its progress, read its result.

Guarded by the system's drill token (``Authorization: Bearer``, written to
``data_dir/serve.json`` for the local ``haltguard drill`` command). One drill at a time: a
second start while one runs answers 409 with the running one's id.
"""

from __future__ import annotations

import dataclasses
import hmac
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query
from pydantic import BaseModel, ConfigDict, Field

from haltguard.drill.runner import DrillRun, start_run
from haltguard.drill.scenario import SCALES
from haltguard.drill.scenarios import SCENARIOS
from haltguard.drill.surface import DrillSurface
from haltguard.web.bounds import Count, Key
from haltguard.web.context import attach, context_of
from haltguard.web.errors import ApiError

RUNS_KEPT_MAX = 20
REPORTS_DIR_NAME = "drills"


class DrillApiError(ApiError):
    """A drill refusal, rendered by the one error handler: ``{"error": {"code", "message"}}``."""


class DrillStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(min_length=1, max_length=64, description="e.g. server-down")
    scale: str = Field(default="full", max_length=16, description="full or reduced")


class DrillRegistry:
    """The runs of this process, the newest last; at most one running."""

    def __init__(self, system: DrillSurface) -> None:
        self.system = system
        self.runs: dict[str, DrillRun] = {}
        self._lock = threading.Lock()

    def running(self) -> DrillRun | None:
        return next((run for run in self.runs.values() if not run.done.is_set()), None)

    def start(self, request: DrillStart) -> DrillRun:
        scenario = SCENARIOS.get(request.scenario)
        if scenario is None:
            raise DrillApiError(404, "unknown_scenario",
                                f"no drill scenario {request.scenario!r}; choose one of "
                                f"{', '.join(sorted(SCENARIOS))}")
        scale = SCALES.get(request.scale)
        if scale is None:
            raise DrillApiError(422, "unknown_scale",
                                f"scale must be one of {', '.join(SCALES)}, not "
                                f"{request.scale!r}")
        with self._lock:
            busy = self.running()
            if busy is not None:
                raise DrillApiError(
                    409, "drill_running",
                    f"drill {busy.id} ({busy.scenario.name}) is still running; one drill at "
                    f"a time: wait for it (GET /api/drills/{busy.id})")
            run = start_run(self.system, scenario, scale_name=request.scale, scale=scale,
                            report_dir=self.system.data_dir / REPORTS_DIR_NAME)
            self.runs[run.id] = run
            while len(self.runs) > RUNS_KEPT_MAX:
                oldest = next(iter(self.runs))
                if not self.runs[oldest].done.is_set():
                    break
                del self.runs[oldest]
        return run


def run_body(run: DrillRun, since: int = 0) -> dict[str, Any]:
    result = run.result
    return {
        "id": run.id,
        "scenario": run.scenario.name,
        "scale": run.scale_name,
        "state": "done" if run.done.is_set() else "running",
        "lines": run.lines_since(since),
        "next": since + len(run.lines_since(since)),
        "passed": None if result is None else result.passed,
        "result": None if result is None else dataclasses.asdict(result),
    }


def require_drill_token(system: DrillSurface, authorization: str | None) -> None:
    """Drills need ``Authorization: Bearer <drill token>`` (from ``data_dir/serve.json``)."""
    token = system.drill_token
    if not token or not system.drills_enabled:
        raise DrillApiError(403, "drills_disabled",
                            "drills are disabled on this system; start it with drill.enabled "
                            "= true (the default with --demo)")
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise DrillApiError(401, "unauthorized",
                            "drills need 'Authorization: Bearer <drill token>'; the token is "
                            "in data_dir/serve.json of the running serve",
                            headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(presented.encode(), token.encode()):
        raise DrillApiError(403, "forbidden", "the drill token is not valid for this serve; "
                            "read it again from data_dir/serve.json")


def drills_router(registry: DrillRegistry) -> APIRouter:
    """``/api/drills`` over ``registry``: the routes are given the system's drills here,
    when they are mounted, rather than finding them on the app."""

    def token_checked(authorization: Annotated[str | None, Header()] = None) -> None:
        require_drill_token(registry.system, authorization)

    router = APIRouter(prefix="/api/drills", tags=["drills"],
                       dependencies=[Depends(token_checked)])

    @router.post("", status_code=202, summary="Start a drill")
    def start_drill(body: DrillStart) -> dict[str, Any]:
        """Start one drill scenario in this process; 409 while another drill runs."""
        return run_body(registry.start(body))

    @router.get("/{run_id}", summary="A drill's progress and result")
    def get_drill(
        run_id: Key, since: Annotated[Count, Query()] = 0
    ) -> dict[str, Any]:
        """Progress lines from index ``since``; ``result`` once ``state`` is ``done``."""
        run = registry.runs.get(run_id)
        if run is None:
            raise DrillApiError(404, "unknown_drill", f"no drill {run_id} in this serve")
        return run_body(run, since)

    return router


def install(app: FastAPI, system: DrillSurface) -> None:
    """Mount ``/api/drills`` on ``app``, the system's operations service; called once, by
    the system that runs the drills."""
    registry = DrillRegistry(system)
    app.include_router(drills_router(registry))
    # the operator console starts and follows drills through the same registry
    attach(app, context_of(app).with_parts([registry]))
