"""``haltguard notify ...``: run the outbox, list subscribers and notices, manage channels.

Works on the database named by ``HALTGUARD_DATABASE_URL`` (default
``./data/haltguard.sqlite3``); sends through ``HALTGUARD_SMTP_*``; links point at
``HALTGUARD_PUBLIC_URL``. Operator changes are audited with the actor ``cli:<os user>``.

Why the database and not the API: ``run`` is the outbox's sender, a process beside the
service that works the outbox table by design, and subscribers must still be told while the
operations service is down; the listing and channel commands are its operator's tools.
"""

from __future__ import annotations

import getpass
import signal
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from haltguard.cli.client import fail_with
from haltguard.cli.settings import environment_config, local_engine
from haltguard.common.clock import utc_now
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_session_factory, session_scope
from haltguard.notify import service
from haltguard.notify.errors import NotifyError
from haltguard.notify.models import ChannelCreate, Language, SubscriberKind, SubscriberStatus
from haltguard.notify.outbox import OutboxStats, OutboxWorker
from haltguard.notify.settings import NotifySettingsError

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def open_engine() -> Engine:
    """The local database, migrated to the newest schema first."""
    engine = local_engine()
    upgrade(engine)
    return engine


def run(work: Callable[[Session], T]) -> T:
    """One unit of work; a refusal prints what was wrong and what to do, and exits 1."""
    try:
        with session_scope(make_session_factory(open_engine())) as session:
            return work(session)
    except NotifyError as exc:
        fail_with(exc)
    except NotifySettingsError as exc:
        error_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


@app.command()
def worker(
    until_idle: Annotated[
        bool, typer.Option(help="Stop when nothing is left to send (retries included).")
    ] = False,
    senders: Annotated[
        int | None, typer.Option(min=1, max=32, help="Sender threads (default: settings).")
    ] = None,
) -> None:
    """Deliver queued notices: email, webhooks and social channels.

    Stop with Ctrl-C or SIGTERM: deliveries claimed but not yet sent are handed back.
    """
    settings = environment_config().notify_settings()
    if senders is not None:
        settings = replace(settings, senders=senders)
    engine = open_engine()
    with session_scope(make_session_factory(engine)) as session:
        secret = service.link_secret(session, settings, utc_now())

    def progress(stats: OutboxStats) -> None:
        console.print(
            f"sent {stats.sent}  retry later {stats.retried}  failed {stats.failed}  "
            f"skipped {stats.skipped}", highlight=False,
        )

    outbox = OutboxWorker(engine, settings, secret, on_progress=progress)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        outbox.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    console.print(f"notify worker: {settings.senders} sender(s), SMTP "
                  f"{settings.smtp.host}:{settings.smtp.port}", highlight=False)
    stats = outbox.run(until_idle=until_idle)
    progress(stats)
    engine.dispose()


@app.command()
def subscribers(
    kind: Annotated[SubscriberKind | None, typer.Option(help="email, webhook or apprise")] = None,
    status: Annotated[
        SubscriberStatus | None, typer.Option(help="pending, confirmed or unsubscribed")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """List subscribers (webhook and apprise URLs with their secrets masked)."""
    items, total = run(lambda session: service.list_subscribers(
        session, kind=kind, status=status, offset=offset, limit=limit))
    table = Table("id", "kind", "address", "lang", "status", "components",
                  title=f"{total} subscribers")
    for item in items:
        table.add_row(str(item.id), item.kind.value, item.label or item.address,
                      item.language.value, item.status.value,
                      ", ".join(item.component_ids) or "all")
    console.print(table)


@app.command("channel-add")
def channel_add(
    url: Annotated[str, typer.Argument(help="An apprise URL: mastodon://, slack://, ...")],
    label: Annotated[str, typer.Option(help="What operators call it, e.g. 'X @exchange'")],
    language: Annotated[Language, typer.Option(help="ja or en")] = Language.JA,
    component: Annotated[
        list[str] | None, typer.Option(help="Only notices about this component (repeat).")
    ] = None,
) -> None:
    """Add a social or chat channel that posts every notice (or those of --component)."""
    request = ChannelCreate(url=url, label=label, language=language,
                            component_ids=component or [])
    subscriber_id = run(lambda session: service.add_channel(
        session, request, actor=cli_actor(), now=utc_now()).id)
    console.print(f"added channel {subscriber_id} ({label})")


@app.command()
def remove(
    subscriber_id: Annotated[int, typer.Argument(help="From `haltguard notify subscribers`.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")],
) -> None:
    """Stop all notices to a subscriber; queued deliveries to it are skipped."""
    run(lambda session: service.remove_subscriber(
        session, subscriber_id, actor=cli_actor(), reason=reason, now=utc_now()))
    console.print(f"removed subscriber {subscriber_id}")


@app.command()
def notices(limit: Annotated[int, typer.Option(min=1, max=1000)] = 20) -> None:
    """The newest notices and where their deliveries stand."""
    items, total = run(lambda session: service.list_notices(session, limit=limit))
    table = Table("id", "key", "kind", "pending/sending/sent/failed/skipped",
                  title=f"{total} notices")
    for item in items:
        counts = item.deliveries
        table.add_row(str(item.id), item.key, item.kind.value,
                      f"{counts.pending}/{counts.sending}/{counts.sent}/{counts.failed}/"
                      f"{counts.skipped}")
    console.print(table)


@app.command()
def retry(notice_id: Annotated[int, typer.Argument(help="From `haltguard notify notices`.")],
          ) -> None:
    """Queue a notice's failed deliveries again with a fresh set of attempts."""
    queued = run(lambda session: service.retry_failed(
        session, notice_id, actor=cli_actor(), now=utc_now()))
    console.print(f"queued {queued} failed deliveries again")
