"""``haltguard detect ...``: detection rules and decisions.

``rules check`` and ``rules reference`` work offline on a file; the rest talk to the
operations service's API (``--url``/``HALTGUARD_URL``, ``HALTGUARD_TOKEN`` or the saved
login), which holds the running detection service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from haltguard.cli.client import (
    api_of,
    connect,
    fail,
)
from haltguard.cli.timefmt import table_time
from haltguard.detection.rulesfile import (
    RulesError,
    load_rules_text,
    read_rules_file,
    reference_markdown,
)
from haltguard.incidents.rules import incident_ref

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Detection rules, decisions and dry-run.")
rules_app = typer.Typer(no_args_is_help=True, add_completion=False,
                        help="Check, show and reload the rules.")
app.add_typer(rules_app, name="rules")
console = Console(markup=False, highlight=False, soft_wrap=True)


app.callback()(connect)


@rules_app.command("check")
def check(file: Path) -> None:
    """Check FILE whole, offline; every problem is listed with its line. Exit 1 if any."""
    try:
        ruleset = load_rules_text(read_rules_file(file), str(file))
    except RulesError as exc:
        for problem in exc.problems:
            console.print(str(problem))
        fail(f"{file} has {len(exc.problems)} problem(s); nothing was loaded")
    console.print(f"{file}: {len(ruleset.rules)} rules, all good (version {ruleset.version})"
                  + ("; dry-run for every rule" if ruleset.dry_run else ""))


@rules_app.command("reload")
def reload(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(
        help="Send this file's rules; without it the service rereads its own file.")] = None,
) -> None:
    """Put rules in force on the running service, whole or not at all."""
    body: dict[str, Any] = {}
    if file is not None:
        try:
            body = {"text": read_rules_file(file), "source": str(file)}
        except RulesError as exc:
            fail(str(exc))
    api = api_of(ctx)
    data = api.json("POST", "/api/detection/rules/reload", body=body)
    if api.as_json:
        console.print_json(data=data)
        return
    console.print(f"in force: {len(data['rules'])} rules from {data['source']} "
                  f"(version {data['version']})")


@rules_app.command("show")
def show(ctx: typer.Context) -> None:
    """The rules in force."""
    api = api_of(ctx)
    data = api.json("GET", "/api/detection/rules")
    if api.as_json:
        console.print_json(data=data)
        return
    table = Table(title=f"rules {data['version']} from {data['source']}"
                  + (" (DRY-RUN)" if data["dry_run"] else ""))
    for column in ("id", "signal", "condition", "class", "sev", "actions"):
        table.add_column(column)
    for rule in data["rules"]:
        table.add_row(rule["id"] + (" (dry-run)" if rule["dry_run"] else ""), rule["signal"],
                      rule["condition"], rule["classification"], rule["severity"],
                      ", ".join(rule["actions"]))
    console.print(table)


@rules_app.command("reference")
def reference() -> None:
    """Print the rules file reference (Markdown), generated from the schema."""
    typer.echo(reference_markdown(), nl=False)


@app.command("decisions")
def decisions(
    ctx: typer.Context,
    rule: Annotated[str | None, typer.Option(help="Only this rule's decisions.")] = None,
    dry_run: Annotated[bool | None, typer.Option(
        "--dry-run/--executed", help="Only dry-run records, or only executed decisions.",
        show_default=False)] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """The decisions log, newest first."""
    api = api_of(ctx)
    data = api.json("GET", "/api/detection/decisions", params={
        "rule_id": rule, "dry_run": None if dry_run is None else str(dry_run).lower(),
        "limit": limit, "offset": offset})
    if api.as_json:
        console.print_json(data=data)
        return
    table = Table(title=f"decisions {offset + 1}..{offset + len(data['items'])} of "
                  f"{data['total']}")
    for column in ("id", "at", "rule", "kind", "observed", "condition", "incident", "outcome"):
        table.add_column(column)
    for item in data["items"]:
        outcome = "; ".join(f"{o['kind']}: {o['detail']}" for o in item["outcomes"])
        table.add_row(str(item["id"]), table_time(item["decided_at"]), item["rule_id"],
                      item["kind"] + (" (dry-run)" if item["dry_run"] else ""),
                      item["observed"], item["condition"],
                      incident_ref(item["incident_id"]) if item["incident_id"] else "", outcome)
    console.print(table)


@app.command("dry-run")
def dry_run(
    ctx: typer.Context,
    state: Annotated[str, typer.Argument(help="on or off")],
    reason: Annotated[str, typer.Option(help="Why (written to the audit chain).")],
) -> None:
    """Switch global dry-run: on, rules record what they would do and do nothing."""
    if state not in ("on", "off"):
        fail(f"say 'on' or 'off', not '{state}'")
    api = api_of(ctx)
    data = api.json("PUT", "/api/detection/dry-run",
                    body={"enabled": state == "on", "reason": reason})
    console.print("dry-run is " + ("ON: no rule acts" if data["enabled"] else "off"))
