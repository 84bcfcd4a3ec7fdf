"""``haltguard impact ...``: who an interruption affected, from the operations API.

A client of the API like ``haltguard incident``: the service reads the venue's journal (it
runs beside it), checks ``impact.read`` and answers; connecting and authenticating are
``cli/client.py``'s. ``show`` prints the counts, the journal range they come from and the
brakes pulled; ``--csv`` writes one list whole (affected accounts by default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from haltguard.cli.client import api_of, connect, fail

LISTS = ("accounts", "refused_orders", "uncancellable_orders", "refused_withdrawals",
         "caught_orders")

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Impact analysis over the operations API.")
console = Console(markup=False, highlight=False)
app.callback()(connect)


def _query(
    incident: int | None, from_time: str | None, to_time: str | None, from_seq: int | None,
    to_seq: int | None,
) -> tuple[str, dict[str, Any]]:
    """The API path (without ``.csv``) and query of the window asked for."""
    windows = sum(1 for given in (incident is not None, from_time or to_time,
                                  from_seq is not None or to_seq is not None) if given)
    if windows != 1:
        fail("give one of --incident ID, --from/--to (times) or --from-seq/--to-seq")
    if incident is not None:
        return f"/api/incidents/{incident}/impact", {}
    return "/api/impact", {"from": from_time, "to": to_time, "from_seq": from_seq,
                           "to_seq": to_seq}


@app.command("show")
def show_command(
    ctx: typer.Context,
    *,
    incident: Annotated[int | None, typer.Option("--incident", help="The incident's id.")] = None,
    from_time: Annotated[str | None, typer.Option(
        "--from", help="Window start, ISO 8601 with a zone.")] = None,
    to_time: Annotated[str | None, typer.Option(
        "--to", help="Window end, ISO 8601 with a zone (default: the journal's end).")] = None,
    from_seq: Annotated[int | None, typer.Option("--from-seq")] = None,
    to_seq: Annotated[int | None, typer.Option("--to-seq")] = None,
    market: Annotated[list[str] | None, typer.Option(
        "--market", help="Only this market (repeat for more).")] = None,
    csv_file: Annotated[Path | None, typer.Option(
        "--csv", help="Write one list, whole, as CSV to this file ('-': standard output).")
    ] = None,
    list_name: Annotated[str, typer.Option(
        "--list", help=f"The list --csv writes: {', '.join(LISTS)}.")] = "accounts",
) -> None:
    """Who the incident (or window) affected and why, the orders refused, and the journal
    range it was read from."""
    api = api_of(ctx)
    path, params = _query(incident, from_time, to_time, from_seq, to_seq)
    params["market"] = market or None
    if csv_file is not None:
        if list_name not in LISTS:
            fail(f"--list {list_name!r} is not one of {', '.join(LISTS)}")
        text = api.call("GET", path + ".csv", params={**params, "list": list_name}).text
        if str(csv_file) == "-":
            typer.echo(text, nl=False)
        else:
            csv_file.write_text(text, encoding="utf-8")
            console.print(f"{max(0, text.count(chr(10)) - 1)} rows of {list_name} written to "
                          f"{csv_file}")
        return
    report = api.json("GET", path, params={**params, "limit": 20})
    if api.as_json:
        console.print_json(json.dumps(report, ensure_ascii=False))
        return
    _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    journal, counts = report["journal"], report["counts"]
    title = report.get("incident_ref") or "window"
    console.print(f"Impact of {title}: journal seq {journal['first_seq']} to "
                  f"{journal['last_seq']} ({journal['first_ts_ns']} to {journal['last_ts_ns']} "
                  "ns since the epoch)")
    table = Table(title="Counts")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("affected_accounts", "orders_refused", "cancels_refused",
                "withdrawals_refused", "resting_orders_caught", "orders_cancelled_by_exchange"):
        table.add_row(key.replace("_", " "), f"{counts[key]:,}")
    for reason, count in counts["by_reason"].items():
        table.add_row(f"  accounts: {reason.replace('_', ' ')}", f"{count:,}")
    for code, count in counts["refused_by_code"].items():
        table.add_row(f"  refused: {code}", f"{count:,}")
    console.print(table)
    changes = Table(title="Brakes in the window")
    for column in ("seq", "market", "change", "actor", "reason", "incident"):
        changes.add_column(column)
    for change in report["state_changes"]:
        changes.add_row(str(change["seq"]), change["market"] or "-", change["change"],
                        change["actor"], change["reason"], change["incident_id"])
    console.print(changes)
    shedding = report["load_shedding"]
    console.print(shedding["note_en"])
    console.print(shedding["note_ja"])
    console.print(report["trade_busts_note"])
