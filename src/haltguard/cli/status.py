"""``haltguard status ...``: the public status page.

Publishing goes through the operations API (``--url`` / ``HALTGUARD_URL``; ``HALTGUARD_TOKEN``,
``--token-file`` or the saved login, as for ``haltguard incident``), so permissions, the
timeline and the audit chain apply: ``components``, ``override``, ``clear-override``,
``draft``, ``drafts``, ``edit``, ``publish``, ``discard``, ``maintenance``, ``cadence``.

Keeping the page up while the exchange is down works on the database and files directly:
``export DIR`` writes the whole page (both languages, JSON API, feeds) as static files, once
or on every change (``--watch``); ``serve DIR`` serves such a directory by itself; ``run``
keeps the page current and pages the incident commander when a public update is overdue.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from haltguard.cli.client import (
    TOKEN_ENV,
    UNSAFE_FLAG,
    URL_ENV,
    Api,
    TokenFileOption,
    fail,
    token_from,
)
from haltguard.cli.settings import environment_config, local_engine
from haltguard.cli.timefmt import due_in, line_time
from haltguard.common.clock import SystemClock
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_session_factory
from haltguard.gateway.control import HttpVenueControl
from haltguard.incidents.rules import incident_ref
from haltguard.status import flows
from haltguard.status.publisher import DirectoryExporter, StatusPublisher
from haltguard.status.server import serve_directory
from haltguard.status.site import export_site
from haltguard.venue.control import VenueControl

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="The public status page: components, updates, maintenance, export.")
console = Console(markup=False, highlight=False)

UrlOption = Annotated[str | None, typer.Option("--url", envvar=URL_ENV,
                                               help="The operations API.")]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar=TOKEN_ENV, show_default=False,
                 help=f"An API token (else the saved login). {UNSAFE_FLAG} Prefer {TOKEN_ENV} "
                      "or --token-file."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
VenueUrlOption = Annotated[
    str | None,
    typer.Option("--venue-url", envvar="HALTGUARD_VENUE_URL",
                 help="The venue's API, for the market states (else the last known ones)."),
]


def _print(api: Api, data: Any, lines: list[str]) -> None:
    if api.as_json:
        console.print_json(json.dumps(data, ensure_ascii=False))
        return
    for line in lines:
        console.print(line)


def _show_update(api: Api, data: dict[str, Any]) -> None:
    _print(api, data, [
        f"update {data['id']} ({data['state']}, {data['status']})"
        + (f" of {incident_ref(data['incident_id'])}" if data["incident_id"] else "")
        + (f" of MNT-{data['maintenance_id']}" if data["maintenance_id"] else ""),
        *( [f"title ja: {data['name_ja']}", f"title en: {data['name_en']}"]
           if data.get("name_ja") else []),
        "--- ja ---", data["body_ja"], "--- en ---", data["body_en"],
        *([f"publish it with: haltguard status publish {data['id']}"]
          if data["state"] == "draft" else []),
    ])


# --- through the operations API --------------------------------------------------------------


@app.command()
def components(url: UrlOption = None, token: TokenOption = None,
               token_file: TokenFileOption = None, as_json: JsonOption = False) -> None:
    """Every component: shown status, the rules' status, override and why."""
    api = Api(url, token_from(token, token_file), as_json=as_json)
    data = api.json("GET", "/api/status/components", params={"limit": 200})
    if api.as_json:
        _print(api, data, [])
        return
    table = Table(title="Status page components")
    for column in ("key", "shown", "automatic", "override", "why"):
        table.add_column(column, overflow="fold")
    for item in data["items"]:
        override = f"{item['override_status']} by {item['override_by']}" \
            if item["override_status"] else ""
        table.add_row(item["key"], item["status"], item["automatic_status"], override,
                      item["reason"])
    console.print(table)


@app.command()
def override(
    key: str, status: str, *, reason: Annotated[str, typer.Option(help="Why (audited).")],
    url: UrlOption = None, token: TokenOption = None,
    token_file: TokenFileOption = None, as_json: JsonOption = False,
) -> None:
    """Show STATUS on component KEY whatever the rules say, until cleared."""
    api = Api(url, token_from(token, token_file), as_json=as_json)
    data = api.json("POST", f"/api/status/components/{key}/override",
                    body={"status": status, "reason": reason})
    _print(api, data, [f"{key} now shows {data['status']} (the rules say "
                       f"{data['automatic_status']})"])


@app.command("clear-override")
def clear_override(
    key: str, *, reason: Annotated[str, typer.Option(help="Why (audited).")],
    url: UrlOption = None, token: TokenOption = None,
    token_file: TokenFileOption = None, as_json: JsonOption = False,
) -> None:
    """Let the rules choose component KEY's status again."""
    api = Api(url, token_from(token, token_file), as_json=as_json)
    data = api.json("POST", f"/api/status/components/{key}/clear-override",
                    body={"reason": reason})
    _print(api, data, [f"{key} shows {data['status']} again: {data['reason']}"])


@app.command()
def draft(
    incident_id: int,
    *,
    status: Annotated[str, typer.Option(help="investigating, identified, monitoring, "
                                             "resolved or postmortem.")],
    cause_ja: Annotated[str | None, typer.Option(help="The cause, in Japanese.")] = None,
    cause_en: Annotated[str | None, typer.Option(help="The cause, in English.")] = None,
    expected_recovery: Annotated[str | None, typer.Option(
        help="When service should be back, e.g. 2025-01-06T12:00+09:00.")] = None,
    url: UrlOption = None, token: TokenOption = None,
    token_file: TokenFileOption = None, as_json: JsonOption = False,
) -> None:
    """Draft a public update of an incident from the template; read it, edit, publish."""
    api = Api(url, token_from(token, token_file), as_json=as_json)
    body: dict[str, Any] = {"status": status}
    if cause_ja or cause_en:
        body |= {"cause_ja": cause_ja, "cause_en": cause_en}
    if expected_recovery:
        body["expected_recovery_at"] = expected_recovery
    _show_update(api, api.json("POST", f"/api/status/incidents/{incident_id}/drafts", body=body))


@app.command()
def drafts(url: UrlOption = None, token: TokenOption = None,
           token_file: TokenFileOption = None, as_json: JsonOption = False) -> None:
    """Drafts waiting to be published, newest first."""
    api = Api(url, token_from(token, token_file), as_json=as_json)
    data = api.json("GET", "/api/status/updates", params={"state": "draft", "limit": 200})
    _print(api, data, [
        f"{item['id']}: {item['status']} "
        + (incident_ref(item["incident_id"]) if item["incident_id"] else
           f"MNT-{item['maintenance_id']}")
        + f" by {item['created_by']} at {line_time(item['created_at'])}"
        for item in data["items"]
    ] or ["no drafts"])


@app.command()
def edit(
    update_id: int,
    *,
    ja_file: Annotated[Path | None, typer.Option(help="The Japanese text, from a file.")] = None,
    en_file: Annotated[Path | None, typer.Option(help="The English text, from a file.")] = None,
    status: Annotated[str | None, typer.Option(help="A different status.")] = None,
    url: UrlOption = None, token: TokenOption = None,
    token_file: TokenFileOption = None, as_json: JsonOption = False,
) -> None:
    """Replace a draft's text (from files you edited) or its status."""
    api = Api(url, token_from(token, token_file), as_json=as_json)
    body: dict[str, Any] = {}
    for name, path in (("body_ja", ja_file), ("body_en", en_file)):
        if path is not None:
            try:
                body[name] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                fail(f"cannot read {path}: {exc}")
    if status:
        body["status"] = status
    if not body:
        fail("nothing to change: give --ja-file, --en-file or --status")
    _show_update(api, api.json("PATCH", f"/api/status/updates/{update_id}", body=body))


@app.command()
def publish(update_id: int, url: UrlOption = None, token: TokenOption = None,
            token_file: TokenFileOption = None, as_json: JsonOption = False) -> None:
    """Publish a draft: on the page, in the incident's timeline, to subscribers."""
    api = Api(url, token_from(token, token_file), as_json=as_json)
    data = api.json("POST", f"/api/status/updates/{update_id}/publish")
    _print(api, data, [f"update {data['id']} published at {line_time(data['published_at'])}"])


@app.command()
def discard(update_id: int, url: UrlOption = None, token: TokenOption = None,
            token_file: TokenFileOption = None, as_json: JsonOption = False) -> None:
    """Throw a draft away."""
    api = Api(url, token_from(token, token_file), as_json=as_json)
    data = api.json("POST", f"/api/status/updates/{update_id}/discard")
    _print(api, data, [f"update {data['id']} discarded"])


@app.command()
def maintenance(
    *,
    start: Annotated[str, typer.Option("--from", help="Start, e.g. 2025-01-10T02:00+09:00.")],
    end: Annotated[str, typer.Option("--until", help="End, with its time zone.")],
    component: Annotated[list[str], typer.Option(help="A component key; repeat for more.")],
    details_ja: Annotated[str | None, typer.Option(help="What is done, in Japanese.")] = None,
    details_en: Annotated[str | None, typer.Option(help="What is done, in English.")] = None,
    url: UrlOption = None, token: TokenOption = None,
    token_file: TokenFileOption = None, as_json: JsonOption = False,
) -> None:
    """Schedule a maintenance; its announcement is drafted for you to publish."""
    api = Api(url, token_from(token, token_file), as_json=as_json)
    body: dict[str, Any] = {"scheduled_for": start, "scheduled_until": end,
                            "components": component}
    if details_ja or details_en:
        body |= {"details_ja": details_ja, "details_en": details_en}
    _show_update(api, api.json("POST", "/api/status/maintenances", body=body))


@app.command()
def cadence(url: UrlOption = None, token: TokenOption = None,
            token_file: TokenFileOption = None, as_json: JsonOption = False) -> None:
    """When each open incident's next public update is due."""
    api = Api(url, token_from(token, token_file), as_json=as_json)
    data = api.json("GET", "/api/status/cadence", params={"limit": 200})
    now = datetime.now(UTC)
    _print(api, data, [
        f"{item['ref']} {item['severity']} every {item['every_minutes']} min: due "
        f"{line_time(item['due_at'])}, {due_in(item['due_at'], now)}"
        + (" OVERDUE" if item["overdue"] else "")
        + (f" (paged {line_time(item['paged_at'])})" if item["paged_at"] else "")
        for item in data["items"]
    ] or ["no open incident needs an update"])


# --- on the database and files -------------------------------------------------------------


def _publisher(venue_url: str | None) -> StatusPublisher:
    engine = local_engine()
    upgrade(engine)
    venue: VenueControl | None = None
    if venue_url:
        venue = HttpVenueControl(venue_url, "")
    return StatusPublisher(make_session_factory(engine), SystemClock(),
                           environment_config().status_settings(), venue=venue)


@app.command()
def export(
    directory: Path,
    *,
    watch: Annotated[bool, typer.Option(help="Keep exporting on every change.")] = False,
    interval: Annotated[float, typer.Option(min=0.5, max=300,
                                            help="Seconds between checks with --watch.")] = 2.0,
    venue_url: VenueUrlOption = None,
) -> None:
    """Write the whole page (both languages, JSON API, feeds) as static files to DIRECTORY."""
    publisher = _publisher(venue_url)
    try:
        site = publisher.current()
    except Exception as exc:
        fail(f"cannot build the page from the database: {exc}")
    written = export_site(site, directory)
    console.print(f"exported {len(site.files)} files ({written} changed) to {directory} "
                  f"at revision {site.version}; serve it with: haltguard status serve {directory}")
    if not watch:
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    publisher.add_hook(DirectoryExporter(directory))
    stop = threading.Event()
    console.print(f"exporting every change, checking every {interval} s; Ctrl-C to stop")
    try:
        while not stop.wait(interval):
            try:
                publisher.refresh()
            except Exception as exc:
                console.print(f"refresh failed ({exc}); the exported page stays as it was")
    except KeyboardInterrupt:
        stop.set()


@app.command()
def serve(
    directory: Path,
    *,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Serve an exported page by itself (no database, no exchange needed)."""
    console.print(f"serving {directory} at http://{host}:{port}/ with {workers} worker(s); "
                  "Ctrl-C to stop")
    try:
        serve_directory(directory, host=host, port=port, workers=workers)
    except (FileNotFoundError, ValueError, OSError) as exc:
        fail(str(exc))


@app.command()
def run(
    interval: Annotated[float, typer.Option(min=0.5, max=300,
                                            help="Seconds between ticks.")] = 5.0,
    venue_url: VenueUrlOption = None,
) -> None:
    """Keep the page current (exporting to HALTGUARD_STATUS_EXPORT_DIR) and page the incident
    commander when a public update is overdue, until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    publisher = _publisher(venue_url)
    for directory in publisher.settings.export_dirs:
        publisher.add_hook(DirectoryExporter(directory))
    stop = threading.Event()
    console.print(f"status loop every {interval} s; Ctrl-C to stop")
    try:
        flows.run_status_loop(stop, publisher, interval,
                              responder_settings=environment_config().paging)
    except KeyboardInterrupt:
        stop.set()
