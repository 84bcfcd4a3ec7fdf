"""``haltguard oncall ...``: on-call set-up, pages and acknowledgements on the local database.

Works directly on the database named by ``HALTGUARD_DATABASE_URL`` (default
``./data/haltguard.sqlite3``); every change is audited with the actor ``cli:<os user>``.
Pages go out through the SMTP server and public URL set by ``HALTGUARD_SMTP_*`` and
``HALTGUARD_PUBLIC_URL``.

Why the database and not the API: paging is what must still work when the operations
service is down (that is when people are paged), so ``page``, ``ack``, ``tick`` and ``run``
need nothing but the database and SMTP; the rota and contacts are loaded before the service
first starts.
"""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from haltguard.cli.client import fail_with
from haltguard.cli.settings import environment_config, local_engine
from haltguard.cli.timefmt import line_time, table_time
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_session_factory, session_scope
from haltguard.incidents import paging as incident_paging
from haltguard.responders import service
from haltguard.responders.contacts import (
    INCIDENT_CATEGORIES,
    SEVERITIES,
    ContactTreeError,
    contact_tree_from_yaml,
    contact_tree_to_data,
)
from haltguard.responders.models import ContactIn, ContactMethodIn, OverrideIn, PersonIn
from haltguard.responders.settings import SettingsError

app = typer.Typer(no_args_is_help=True, add_completion=False)
person_app = typer.Typer(no_args_is_help=True, help="People who can be paged.")
schedule_app = typer.Typer(no_args_is_help=True, help="Rotations, overrides, who is on call.")
policy_app = typer.Typer(no_args_is_help=True, help="Escalation policies and routes.")
contacts_app = typer.Typer(no_args_is_help=True, help="The emergency contact tree (3.3).")
app.add_typer(person_app, name="person")
app.add_typer(schedule_app, name="schedule")
app.add_typer(policy_app, name="policy")
app.add_typer(contacts_app, name="contacts")

console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def open_database() -> sessionmaker[Session]:
    """The local database, migrated to the newest schema first. Page events from here (a
    page, a tick, the loop) land in their incidents' timelines, as in the service."""
    incident_paging.subscribe()
    engine = local_engine()
    upgrade(engine)
    return make_session_factory(engine)


def run(work: Callable[[Session], T]) -> T:
    """One unit of work; a refusal prints what was wrong and what to do, and exits 1."""
    try:
        with session_scope(open_database()) as session:
            return work(session)
    except service.RespondersError as exc:
        fail_with(exc)
    except (SettingsError, ContactTreeError) as exc:
        error_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def _when(text: str | None, clock: service.Clock) -> datetime:
    if not text:
        return clock.now()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        error_console.print(f"[red]error:[/red] cannot read time {text!r}; write "
                            "2026-03-02T09:00+09:00")
        raise typer.Exit(2) from exc
    if moment.tzinfo is None:
        error_console.print(f"[red]error:[/red] {text!r} has no time zone; add one such as "
                            "+09:00")
        raise typer.Exit(2)
    return moment


def _print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


# --- the whole set-up ------------------------------------------------------------------------


@app.command("load")
def load(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="YAML with people, schedules, policies, routes, "
                                              "contact_tree")],
) -> None:
    """Apply an on-call YAML file, all or nothing. Sections left out stay as they are."""
    config = run(lambda _session: service.parse_config_yaml(path.read_text(encoding="utf-8")))
    summary = run(lambda session: service.apply_config(session, config, actor=cli_actor(),
                                                       clock=service.SystemClock()))
    console.print(f"applied {path}: {summary['people']} people, {summary['schedules']} "
                  f"schedules, {summary['policies']} policies, {summary['routes']} routes")
    gaps = summary["contact_tree_categories_without_contacts"]
    if gaps:
        console.print(f"[yellow]warning:[/yellow] nobody to call for: {gaps}")


# --- people ----------------------------------------------------------------------------------


@person_app.command("add")
def person_add(
    handle: Annotated[str, typer.Argument(help="short id, e.g. tanaka")],
    *,
    name: Annotated[str, typer.Option("--name", help="display name")],
    language: Annotated[str, typer.Option("--language", help="ja or en")] = "ja",
    email: Annotated[list[str] | None, typer.Option("--email", help="sent by SMTP")] = None,
    apprise_url: Annotated[list[str] | None, typer.Option(
        "--apprise", help="slack://..., tgram://..., json://host/path ...")] = None,
) -> None:
    """Add a person or replace their details and contact methods."""
    methods = [ContactMethodIn(kind="email", address=a) for a in email or []]
    methods += [ContactMethodIn(kind="apprise", address=u) for u in apprise_url or []]
    if language not in ("ja", "en"):
        error_console.print("[red]error:[/red] --language must be ja or en")
        raise typer.Exit(2)
    data = PersonIn(handle=handle, display_name=name, language="ja" if language == "ja" else "en",
                    contacts=methods)
    run(lambda session: service.put_person(session, data, actor=cli_actor(),
                                           clock=service.SystemClock()))
    console.print(f"saved {handle} with {len(methods)} contact method(s)")


@person_app.command("list")
def person_list(limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
                offset: Annotated[int, typer.Option(min=0)] = 0) -> None:
    def work(session: Session) -> None:
        people, total = service.list_people(session, offset=offset, limit=limit)
        table = Table("handle", "name", "lang", "contacts", title=f"{total} people")
        for person in people:
            shown = service.person_out(person)
            table.add_row(shown.handle, shown.display_name, shown.language,
                          "\n".join(f"{c.kind}: {c.address}" for c in shown.contacts))
        console.print(table)

    run(work)


@person_app.command("remove")
def person_remove(handle: str) -> None:
    run(lambda session: service.delete_person(session, handle, actor=cli_actor(),
                                              clock=service.SystemClock()))
    console.print(f"removed {handle}")


# --- schedules -------------------------------------------------------------------------------


@schedule_app.command("list")
def schedule_list() -> None:
    def work(session: Session) -> None:
        clock = service.SystemClock()
        found, total = service.list_schedules(session, limit=200)
        table = Table("schedule", "rotation", "handoff", "members", "on call now",
                      title=f"{total} schedules")
        for schedule in found:
            now = service.on_call(session, schedule.name, clock.now())
            table.add_row(schedule.name, f"{schedule.rotation_days} d",
                          f"{schedule.handoff} {schedule.timezone}",
                          ", ".join(m.person.handle for m in schedule.members),
                          now.person or "-")
        console.print(table)

    run(work)


@schedule_app.command("who")
def schedule_who(
    name: str,
    at: Annotated[str | None, typer.Option("--at", help="ISO time with zone; default now")]
    = None,
) -> None:
    """Who is on call for a schedule (now, or at --at)."""
    moment = _when(at, service.SystemClock())
    shift = run(lambda session: service.on_call(session, name, moment))
    if shift.person is None:
        console.print(f"nobody is on call for {name} at {line_time(moment)}")
        raise typer.Exit(1)
    source = " (override)" if shift.override else ""
    assert shift.start is not None and shift.end is not None
    console.print(f"{shift.person}{source} from {line_time(shift.start)} "
                  f"until {line_time(shift.end)}")


@schedule_app.command("shifts")
def schedule_shifts(
    name: str,
    days: Annotated[int, typer.Option(min=1, max=366)] = 14,
    start: Annotated[str | None, typer.Option("--start", help="ISO time with zone")] = None,
) -> None:
    """The coming shifts of a schedule, overrides applied."""
    begin = _when(start, service.SystemClock())

    def work(session: Session) -> None:
        schedule = service.get_schedule(session, name)
        table = Table("from", "until", "person", "",
                      title=f"{name} (hand-off {schedule.handoff} {schedule.timezone})")
        for shift in service.upcoming_shifts(session, name, begin, begin + timedelta(days=days)):
            assert shift.start is not None and shift.end is not None
            table.add_row(table_time(shift.start), table_time(shift.end),
                          shift.person or "-", "override" if shift.override else "")
        console.print(table)

    run(work)


@schedule_app.command("override")
def schedule_override(
    name: str,
    *,
    person: Annotated[str, typer.Option("--person")],
    start: Annotated[str, typer.Option("--start", help="ISO time with zone")],
    end: Annotated[str, typer.Option("--end", help="ISO time with zone")],
    reason: Annotated[str, typer.Option("--reason")] = "",
) -> None:
    """Let --person cover the schedule from --start to --end."""
    clock = service.SystemClock()
    data = OverrideIn(person=person, start=_when(start, clock),
                                        end=_when(end, clock), reason=reason)
    override = run(lambda session: service.add_override(session, name, data, actor=cli_actor(),
                                                        clock=clock))
    console.print(f"override {override.id}: {person} covers {name}")


# --- policies and routes ---------------------------------------------------------------------


@policy_app.command("list")
def policy_list() -> None:
    def work(session: Session) -> None:
        found, total = service.list_policies(session, limit=200)
        table = Table("policy", "levels", "repeat", title=f"{total} policies")
        for policy in found:
            shown = service.policy_out(policy)
            table.add_row(shown.name, "\n".join(
                f"{n}. {', '.join(level.targets)} (ack within {level.ack_timeout_s // 60} min)"
                for n, level in enumerate(shown.levels, start=1)), str(shown.repeat_count))
        console.print(table)
        routes = service.list_routes(session)
        routing = Table("category", "severity", "policy", title="routes")
        for route in routes:
            routing.add_row(route.category, route.severity, route.policy)
        console.print(routing)

    run(work)


# --- contact tree ----------------------------------------------------------------------------


@contacts_app.command("show")
def contacts_show(
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Who to call for each incident category, with their backups."""
    def work(session: Session) -> None:
        tree = service.contact_tree(session)
        if as_json:
            _print_json(contact_tree_to_data(tree))
            return
        table = Table("category", "role", "call", "backup", title="emergency contact tree")
        for category in INCIDENT_CATEGORIES:
            contacts = tree.contacts(category)
            if not contacts:
                table.add_row(category, "[red]nobody[/red]", "", "")
            for contact in contacts:
                table.add_row(category, contact.role, contact.person, contact.backup)
        console.print(table)

    run(work)


@contacts_app.command("load")
def contacts_load(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Replace the whole contact tree from a YAML file."""
    try:
        tree = contact_tree_from_yaml(path.read_text(encoding="utf-8"))
    except ContactTreeError as exc:
        error_console.print(f"[red]error:[/red] {path}: {exc}")
        raise typer.Exit(1) from exc
    gaps = run(lambda session: service.replace_contact_tree(session, tree, actor=cli_actor(),
                                                           clock=service.SystemClock()))
    console.print(f"contact tree replaced from {path}")
    if gaps:
        console.print(f"[yellow]warning:[/yellow] nobody to call for: {', '.join(gaps)}")


@contacts_app.command("set")
def contacts_set(
    category: Annotated[str, typer.Argument(help=", ".join(INCIDENT_CATEGORIES))],
    contact: Annotated[list[str] | None, typer.Option(
        "--contact", help="PERSON:BACKUP[:ROLE], in calling order; none clears the category")]
    = None,
) -> None:
    """Replace who to call for one category."""
    items: list[ContactIn] = []
    for text in contact or []:
        parts = text.split(":", 2)
        if len(parts) < 2:
            error_console.print(f"[red]error:[/red] --contact {text!r}: write PERSON:BACKUP[:ROLE]")
            raise typer.Exit(2)
        items.append(ContactIn(person=parts[0], backup=parts[1],
                               role=parts[2] if len(parts) == 3 else ""))
    run(lambda session: service.set_category_contacts(session, category, items,
                                                      actor=cli_actor(),
                                                      clock=service.SystemClock()))
    console.print(f"{category}: {len(items)} contact(s)")


# --- pages -----------------------------------------------------------------------------------


@app.command("page")
def send_page(
    *,
    incident: Annotated[str, typer.Option("--incident", help="incident id")],
    summary: Annotated[str, typer.Option("--summary")],
    category: Annotated[str, typer.Option("--category", help=", ".join(INCIDENT_CATEGORIES))],
    severity: Annotated[str, typer.Option("--severity", help=", ".join(SEVERITIES))],
    person: Annotated[str | None, typer.Option(
        "--person", help="page this person directly (e.g. the incident commander); "
                         "unanswered, the page escalates by the routed policy")] = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="why this person (required with --person)")] = None,
) -> None:
    """Page the on-call responders for an incident now, or one person with --person."""
    if person is not None and not reason:
        error_console.print("[red]error:[/red] say why you page this person: add --reason")
        raise typer.Exit(2)
    settings = environment_config().paging

    def work(session: Session) -> service.Page:
        with console.status("paging ..."):
            if person is not None:
                return service.page_person(
                    session, person=person, incident_id=incident, summary=summary,
                    category=category, severity=severity, reason=reason or "",
                    clock=service.SystemClock(), actor=cli_actor(), settings=settings,
                )
            return service.page(session, incident_id=incident, summary=summary,
                                category=category, severity=severity,
                                clock=service.SystemClock(), actor=cli_actor(),
                                settings=settings)

    sent = run(work)
    for event in sent.events:
        console.print(f"{event.text_en}\n{event.text_ja}")
    console.print(f"page {sent.id}: {sent.status}")


@app.command("pages")
def list_pages(
    incident: Annotated[str | None, typer.Option("--incident")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Pages, newest first."""
    def work(session: Session) -> None:
        found, total = service.list_pages(session, incident_id=incident, status=status,
                                          offset=offset, limit=limit)
        table = Table("page", "incident", "severity", "status", "level", "created",
                      "acknowledged by", title=f"{total} pages")
        for item in found:
            table.add_row(str(item.id), item.incident_id, item.severity, item.status,
                          str(item.level_index + 1), table_time(item.created_at),
                          item.acknowledged_by or "-")
        console.print(table)

    run(work)


@app.command("show")
def show_page(page_id: int, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One page: who was notified, every delivery attempt, every event."""
    shown = run(lambda session: service.page_out(service.get_page(session, page_id)))
    if as_json:
        print(shown.model_dump_json(indent=2))
        return
    console.print(f"page {shown.id} for {shown.incident_id} [{shown.severity}] {shown.status}, "
                  f"policy {shown.policy}, level {shown.level_number}")
    for notification in shown.notifications:
        for delivery in notification.deliveries:
            console.print(f"  L{notification.level_number} {notification.person} "
                          f"{delivery.kind} {delivery.address}: {delivery.status} "
                          f"({len(delivery.attempts)} attempt(s))")
    for event in shown.events:
        console.print(f"  {line_time(event.at)} {event.text_en}")


@app.command("ack")
def ack(
    page_id: int,
    note: Annotated[str, typer.Option("--note")] = "",
) -> None:
    """Acknowledge a page: you are on it, escalation stops."""
    acked = run(lambda session: service.acknowledge(session, page_id=page_id, actor=cli_actor(),
                                                    via="cli", clock=service.SystemClock(),
                                                    note=note))
    console.print(f"page {acked.id} acknowledged by {acked.acknowledged_by}; escalation stopped")


@app.command("cancel")
def cancel(page_id: int, reason: Annotated[str, typer.Option("--reason")]) -> None:
    """Stop a page nobody needs to answer any more."""
    run(lambda session: service.cancel_page(session, page_id=page_id, actor=cli_actor(),
                                            reason=reason, clock=service.SystemClock()))
    console.print(f"page {page_id} cancelled")


@app.command("tick")
def tick() -> None:
    """Do whatever escalation and retry is due now, once."""
    settings = environment_config().paging
    report = run(lambda session: service.escalation_tick(session, service.SystemClock().now(),
                                                         settings=settings))
    for event in report.events:
        console.print(event.text_en)
    console.print(f"{report.pages_escalated} page(s) escalated, "
                  f"{report.deliveries_retried} delivery retry(ies)")


@app.command("run")
def run_loop(
    interval: Annotated[float, typer.Option("--interval", min=0.5, max=300,
                                            help="seconds between ticks")] = 5.0,
) -> None:
    """Keep escalating pages and retrying deliveries until interrupted (Ctrl-C)."""
    settings = environment_config().paging
    stop = threading.Event()
    console.print(f"escalation loop every {interval} s; Ctrl-C to stop")
    try:
        service.run_escalation_loop(stop, open_database(), service.SystemClock(), interval,
                                    settings=settings)
    except KeyboardInterrupt:
        stop.set()
