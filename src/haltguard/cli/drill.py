"""``haltguard drill SCENARIO``: rehearse one of the manual's interruptions end to end.

Against the system ``haltguard serve`` runs on the data directory when there is one (found
through ``data_dir/serve.json``; the drill then runs inside that serve, started through
``/api/drills``), otherwise on a demo system of its own on a fresh temporary directory
(or ``--data-dir``), served on an ephemeral port so every HTTP path is the real one. It
says which it did. Exit code 0 when the drill passed, 1 when it failed (with the reasons),
2 for bad input.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from haltguard.app.config import CONFIG_FILE_ENV, ConfigError, load_config
from haltguard.app.drill_system import own_system
from haltguard.app.system import StartError
from haltguard.cli.client import api_error_text
from haltguard.drill.report import print_table
from haltguard.drill.runner import fresh_data_dir, run_scenario
from haltguard.drill.scenario import SCALES, Check, DrillResult, Measurements, Targets
from haltguard.drill.scenarios import SCENARIOS
from haltguard.drill.waiting import DrillError
from haltguard.status.texts import Bilingual

SERVE_FILE_NAME = "serve.json"
POLL_INTERVAL_S = 0.5
EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
REMOTE_TIMEOUT_S = 1_800.0

console = Console(highlight=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)


def show(line: str) -> None:
    console.print(f"[cyan]>[/cyan] {escape(line)}")


def running_serve(data_dir: Path) -> dict[str, Any] | None:
    """The serve running on ``data_dir`` (its ``serve.json``) if its process is alive and
    its API answers; None otherwise."""
    path = data_dir / SERVE_FILE_NAME
    try:
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        os.kill(int(info["pid"]), 0)
        httpx.get(f"{str(info['api_url']).rstrip('/')}/api/drills/-",
                  headers={"Authorization": f"Bearer {info['drill_token']}"}, timeout=3.0)
    except (OSError, ValueError, KeyError, TypeError, httpx.HTTPError):
        return None
    return info


def result_from_json(data: dict[str, Any]) -> DrillResult:
    """The result as ``/api/drills`` returned it, back into its own type."""
    measurements = Measurements(**data["measurements"])
    checks = [Check(**check) for check in data["checks"]]
    fields = {key: value for key, value in data.items()
              if key not in {"measurements", "checks", "started_at", "finished_at"}}
    return DrillResult(measurements=measurements, checks=checks, **fields)


def drill_remote(info: dict[str, Any], scenario: str, scale: str) -> DrillResult:
    base = str(info["api_url"]).rstrip("/")
    headers = {"Authorization": f"Bearer {info['drill_token']}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30.0) as client:
        started = client.post("/api/drills", json={"scenario": scenario, "scale": scale})
        if started.status_code != 202:
            raise DrillError(f"the serve refused the drill: {api_error_text(started)}")
        run_id = started.json()["id"]
        since = 0
        deadline = time.monotonic() + REMOTE_TIMEOUT_S
        while time.monotonic() < deadline:
            body = client.get(f"/api/drills/{run_id}", params={"since": since}).json()
            for line in body["lines"]:
                show(line)
            since = body["next"]
            if body["state"] == "done":
                return result_from_json(body["result"])
            time.sleep(POLL_INTERVAL_S)
    raise DrillError(f"drill {run_id} did not finish within {REMOTE_TIMEOUT_S:g} s")


def drill(
    scenario: Annotated[str, typer.Argument(
        help=f"One of: {', '.join(SCENARIOS)}; or 'list'.", show_default=False)],
    *,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", show_default=False,
        help="The data directory of the serve to drill, or of the drill's own system "
             "(default: the configuration's, else a fresh temporary one).")] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", envvar=CONFIG_FILE_ENV, show_default=False,
        help="The configuration file (TOML or YAML), for the targets and the own system.")]
        = None,
    own: Annotated[bool, typer.Option(
        "--own-system", help="Always start a system of the drill's own.")] = False,
    report_dir: Annotated[Path, typer.Option(
        "--report-dir", help="Where the drill and incident reports are written (a drill run "
        "inside a serve writes them to that serve's data_dir/drills).")]
        = Path("drill-reports"),
    scale: Annotated[str, typer.Option(
        "--scale", help="full (default) or reduced (as the test suite runs it).")] = "full",
) -> None:
    """Rehearse an interruption end to end and report against the configured targets."""
    if scenario == "list":
        for name, each in SCENARIOS.items():
            console.print(f"{name:<22} {each.title_en} / {each.title_ja}")
        raise typer.Exit(EXIT_PASSED)
    chosen = SCENARIOS.get(scenario)
    if chosen is None:
        error_console.print(f"[red]no drill scenario {escape(scenario)!r}[/red]; choose one "
                            f"of: {', '.join(SCENARIOS)} (haltguard drill list)")
        raise typer.Exit(EXIT_BAD_INPUT)
    if scale not in SCALES:
        error_console.print(f"[red]--scale must be one of {', '.join(SCALES)}[/red], "
                            f"not {escape(scale)!r}")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        serving = load_config(config_file, overrides={
            "data_dir": None if data_dir is None else str(data_dir)})
    except ConfigError as exc:
        error_console.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    targets: Targets = getattr(serving, "drill_targets", None) or Targets()
    info = None if own else running_serve(serving.data_dir)
    try:
        if info is not None:
            console.print(f"Drilling the running serve (pid {info['pid']}) at "
                          f"{info['api_url']}; the drill runs inside it.")
            result = drill_remote(info, scenario, scale)
        else:
            result = drill_own(chosen.name, data_dir, config_file, scale, report_dir)
    except (DrillError, StartError, ConfigError, httpx.HTTPError) as exc:
        error_console.print(f"[red]the drill could not run:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_FAILED) from exc
    print_table(console, result, targets, Bilingual(chosen.title_ja, chosen.title_en))
    if not result.passed:
        for reason in result.failures():
            error_console.print(f"[red]failed:[/red] {escape(reason)}")
        raise typer.Exit(EXIT_FAILED)


def drill_own(scenario: str, data_dir: Path | None, config_file: Path | None, scale: str,
              report_dir: Path) -> DrillResult:
    console.print("No serve is running on that data directory: the drill starts a demo system "
                  "of its own, drills it, and stops it.")
    with fresh_data_dir(data_dir) as chosen_dir:
        config = load_config(config_file, overrides={"data_dir": str(chosen_dir)})
        with own_system(config, show) as system:
            return run_scenario(system, SCENARIOS[scenario], scale=SCALES[scale], progress=show,
                                report_dir=report_dir, targets=system.drill_targets)


def register(app: typer.Typer) -> None:
    """Add ``haltguard drill`` to the main command."""
    app.command("drill")(drill)
