"""``haltguard audit ...``: read and verify the append-only audit chain, and print signed
checkpoints of it to keep elsewhere.

Why the database and not the API: an audit checks the chain without trusting the service
that wrote it (a compromised service could answer anything), so it reads the rows itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from haltguard.cli.security import console, error_console, folded_table, run
from haltguard.cli.timefmt import table_time
from haltguard.security import audit

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command("verify")
def verify(
    *,
    checkpoint_files: Annotated[
        list[Path] | None,
        typer.Option("--checkpoint", help="a file of lines printed by `haltguard audit "
                     "checkpoint` (repeatable); the chain must still hold those entries"),
    ] = None,
) -> None:
    """Walk the whole chain and check it against the audit key and the anchor; exit 0 with
    the count if intact, 1 naming the first bad entry."""
    lines: list[str] = []
    for path in checkpoint_files or []:
        try:
            lines.extend(path.read_text(encoding="ascii").splitlines())
        except (OSError, UnicodeDecodeError) as exc:
            error_console().print(f"[red]error:[/red] cannot read the checkpoint file {path}: "
                                  f"{exc}")
            raise typer.Exit(1) from exc

    def work(session: Session) -> audit.AuditVerification:
        with console().status("verifying the audit chain ..."):
            return audit.verify(session, checkpoints=lines)

    outcome = run(work)
    if outcome.ok:
        console().print(outcome.summary())
        return
    error_console().print(f"[red]{outcome.summary()}[/red]")
    raise typer.Exit(1)


@app.command("checkpoint")
def checkpoint() -> None:
    """Print one signed line naming the chain's last entry; keep it off this machine (a
    ticket, another host, paper) and give it to `verify --checkpoint` later."""

    def work(session: Session) -> str:
        try:
            return audit.checkpoint(session)
        except audit.AuditRecordError as exc:
            error_console().print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc

    print(run(work), end="")


@app.command("list")
def list_entries(
    *,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    actor: Annotated[str | None, typer.Option(help="only this actor")] = None,
    action: Annotated[str | None, typer.Option(help="only this action")] = None,
    oldest_first: Annotated[bool, typer.Option("--oldest-first")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per line, with hashes")
    ] = False,
) -> None:
    """Audit entries, newest first."""

    def work(session: Session) -> None:
        entries, total = audit.list_entries(
            session,
            offset=offset,
            limit=limit,
            actor=actor,
            action=action,
            newest_first=not oldest_first,
        )
        if as_json:
            for entry in entries:
                print(
                    json.dumps(
                        {
                            "index": entry.index,
                            "created_at": entry.created_at.isoformat(),
                            "actor": entry.actor,
                            "action": entry.action,
                            "target": entry.target,
                            "details": audit.entry_details(entry),
                            "prev_hash": entry.prev_hash,
                            "entry_hash": entry.entry_hash,
                            "entry_mac": entry.entry_mac,
                        },
                        ensure_ascii=False,
                    )
                )
            return
        table = folded_table("#", "time", "actor", "action", "target", "details")
        for entry in entries:
            table.add_row(
                str(entry.index),
                table_time(entry.created_at),
                entry.actor,
                entry.action,
                entry.target,
                entry.details_json,
            )
        console().print(table)
        console().print(f"{len(entries)} of {total} entries (offset {offset})")

    run(work)
