"""``haltguard venue conformance --adapter FILE``: does a venue keep the venue contract?

Loads the adapter file (refused with the file's line on any problem), checks the venue
answers, runs the conformance suite and prints what holds and what does not, in English
and Japanese. Exit status 0 when everything holds, 1 otherwise. It halts markets and pulls
the kill switch: point it at a test or staging venue.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from haltguard.adapters.control import AdapterVenueControl
from haltguard.adapters.errors import AdapterError
from haltguard.adapters.spec import load_adapter
from haltguard.conformance.suite import CHECK_NAMES, ConformanceReport, run_conformance
from haltguard.venue.control import VenueControlError

console = Console()
errors = Console(stderr=True)


def _settings(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            errors.print(f"[red]Error:[/red] --set {pair!r} is not NAME=VALUE")
            raise typer.Exit(2)
        values[name] = value
    return values


def conformance_command(
    adapter: Annotated[Path, typer.Option("--adapter", help="The adapter file (YAML).")],
    settings: Annotated[list[str] | None, typer.Option(
        "--set", help="Set one of the adapter's variables: NAME=VALUE (repeatable).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help=f"Run only these checks: {', '.join(CHECK_NAMES)}.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Check a venue against the venue contract through its adapter (test venues only:
    it halts markets and pulls the kill switch)."""
    unknown = sorted(set(only or ()) - set(CHECK_NAMES))
    if unknown:
        errors.print(f"[red]Error:[/red] no such check {', '.join(unknown)}; checks: "
                     f"{', '.join(CHECK_NAMES)}")
        raise typer.Exit(2)
    try:
        spec = load_adapter(adapter, _settings(settings or []))
        with AdapterVenueControl(spec) as control:
            control.check_reachable()
            report = run_conformance(control, only=tuple(only or ()),
                                     progress=None if as_json else errors.print)
    except AdapterError as exc:
        errors.print(f"[red]Error:[/red] {exc.message}", soft_wrap=True)
        if exc.message_ja:
            errors.print(exc.message_ja, soft_wrap=True)
        if exc.next_step:
            errors.print(f"Next: {exc.next_step}", soft_wrap=True)
        raise typer.Exit(1) from None
    except VenueControlError as exc:
        errors.print(f"[red]Error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    _print(report, as_json)
    raise typer.Exit(0 if report.passed else 1)


def _print(report: ConformanceReport, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({"adapter": report.adapter, "passed": report.passed,
                                       "checks": [vars(result) for result in report.results]}))
        return
    table = Table(title=f"venue contract conformance: {report.adapter}")
    for column in ("", "check", "確認項目", "seen", "ms"):
        table.add_column(column)
    for result in report.results:
        mark = "[green]holds[/green]" if result.holds else "[red]FAILS[/red]"
        table.add_row(mark, result.title_en, result.title_ja, result.detail,
                      f"{result.elapsed_ms:.0f}")
    console.print(table)
    held = sum(result.holds for result in report.results)
    console.print(f"{held} of {len(report.results)} hold / {len(report.results)} 件中 "
                  f"{held} 件が成立")
