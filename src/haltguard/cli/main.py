"""The ``haltguard`` command: one tool for everything an operator does.

Each domain contributes a Typer sub-app from ``haltguard/cli/<domain>.py``; a domain whose
module is not there yet is simply not listed.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="haltguard",
    help="Keep a crypto-asset exchange safe through trading interruptions.",
    no_args_is_help=True,
    add_completion=False,
)

# (module under haltguard.cli, sub-command name, one-line help)
_SUBCOMMANDS = (
    ("venue", "venue", "The matching engine, ledger and journal: serve, verify, inspect."),
    ("incidents", "incident", "Open, run and close incidents; runbooks, actions, reports."),
    ("security", "operator", "Operator accounts, logins, roles and API tokens."),
    ("audit", "audit", "The append-only audit chain: list and verify."),
    ("responders", "oncall", "On-call schedules, escalation policies, pages and acks."),
    ("detection", "detect", "Detection rules (check, reload, reference), decisions, dry-run."),
    ("notify", "notify", "Customer notices: subscribers, channels and the delivery outbox."),
    ("status", "status", "The public status page: components, updates, maintenance, export."),
    ("impact", "impact", "Who an interruption affected, from the journal: show, CSV lists."),
    ("compensation", "compensation",
     "Compensation runs: policies, run, show, explain, approve, pay, statements."),
    ("support", "support",
     "The support desk: tickets, bulk replies, incident FAQ, staffing (Erlang C), reports."),
    ("trades", "trades",
     "Trade corrections: review, bust, adjust, rollback-plan, rollback, approve, notices."),
    ("backup", "backup", "Backups proven to restore: keygen, create, list, verify, restore."),
    ("customers", "customers",
     "Customers' own protection: create, unlock, approve-withdrawal, publish-terms, sign."),
)

for module_name, command_name, help_text in _SUBCOMMANDS:
    try:
        module = importlib.import_module(f"haltguard.cli.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"haltguard.cli.{module_name}":
            raise
        continue
    app.add_typer(module.app, name=command_name, help=help_text)

for module_name in ("serve", "drill", "continuity"):
    try:
        importlib.import_module(f"haltguard.cli.{module_name}").register(app)
    except ModuleNotFoundError as exc:
        if exc.name != f"haltguard.cli.{module_name}":
            raise


if __name__ == "__main__":
    app()
