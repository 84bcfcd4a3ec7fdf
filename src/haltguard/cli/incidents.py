"""``haltguard incident ...``: every incident action of the operations API, from a terminal.

The CLI is a client of the operations service's HTTP API, never of its database: the
service checks the operator's permissions, keeps the timeline and the audit chain, and holds
the connection to the venue, so a command does exactly what the same API call does.
Connecting and authenticating are ``cli/client.py``'s; ``login`` here saves the session it
uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from haltguard.cli.client import (
    UNSAFE_FLAG,
    Api,
    api_of,
    config_dir,
    connect,
    credentials_file,
    fail,
    read_secret_file,
    saved_session,
)
from haltguard.cli.timefmt import due_time, line_time, table_time
from haltguard.common.clock import utc_now
from haltguard.incidents.rules import incident_ref
from haltguard.security.config import SESSION_COOKIE_NAME

PASSWORD_ENV = "HALTGUARD_PASSWORD"
LIST_LIMIT_DEFAULT = 50

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Incidents over the operations API: open, run, act on the venue, report.",
)
# Server text may contain [brackets]; never read it as rich markup.
console = Console(markup=False, highlight=False)
app.callback()(connect)


# --- output ---------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, ensure_ascii=False))


WRAPPING_COLUMNS = frozenset({"title", "task", "message", "summary", "reason", "note",
                              "detail"})
"""Free text, wrapped at word boundaries; every other column keeps its words whole."""


def _table(title: str, columns: list[str], rows: list[list[Any]], page: Any = None) -> None:
    table = Table(title=title)
    for column in columns:
        if column in WRAPPING_COLUMNS:
            table.add_column(column, overflow="fold", ratio=1, min_width=12)
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)
    if page is not None and page.get("next_offset") is not None:
        console.print(f"{len(rows)} of {page['total']}; next page: --offset {page['next_offset']}")


def _show_incident(data: dict[str, Any]) -> None:
    progress = data.get("progress", {})
    lines = [
        f"{data['ref']} {data['title']}",
        f"status {data['status']}  severity {data['severity']} (peak {data['peak_severity']})  "
        f"category {data['category']}",
        f"commander {data['incident_commander'] or '-'}  "
        f"detected {line_time(data['detected_at'])}",
        f"markets {', '.join(data['affected_markets']) or '-'}  "
        f"components {', '.join(data['affected_components']) or '-'}",
    ]
    if progress:
        lines.append(
            f"tasks {progress['done']}/{progress['total']} done, {progress['overdue']} overdue"
        )
    if data.get("cause"):
        lines.append(f"cause {data['cause']}")
    console.print("\n".join(lines))


def _emit(api: Api, data: Any, show: Any) -> None:
    if api.as_json:
        _print_json(data)
    else:
        show(data)


def _show_outcome(data: dict[str, Any]) -> None:
    for result in data.get("results", []):
        mark = "ok" if result["ok"] else "refused"
        console.print(f"{mark} {result['target']}: {result['detail']}",
                      style="green" if result["ok"] else "red")
    approval = data.get("approval")
    if approval:
        console.print(
            f"approval #{approval['id']} {approval['status']} ({approval['action']})"
            + (
                f" - a second operator must run: haltguard incident approve {approval['id']}"
                if approval["status"] == "pending"
                else ""
            )
        )


# --- login ----------------------------------------------------------------------------------


@app.command()
def login(
    ctx: typer.Context,
    *,
    username: Annotated[str, typer.Option("--username", "-u", prompt=True)],
    password_file: Annotated[Path | None, typer.Option(
        "--password-file", show_default=False,
        help="Read the password from this file ('-': standard input).")] = None,
    password: Annotated[str | None, typer.Option(
        "--password", envvar=PASSWORD_ENV, show_default=False,
        help=f"{UNSAFE_FLAG} Prefer the prompt, --password-file or {PASSWORD_ENV}.")] = None,
    totp_code: Annotated[str, typer.Option(
        "--totp", prompt="TOTP code",
        help="Asked for when not given; a code is spent by its first use.")],
) -> None:
    """Log in with password and TOTP code; the session is saved for the next commands.

    The password is asked for (hidden) on a terminal; otherwise give it with
    --password-file or HALTGUARD_PASSWORD.
    """
    password = _login_password(password, password_file)
    api = api_of(ctx)
    response = api.call(
        "POST",
        "/api/auth/login",
        body={
            "username": username,
            "password": password,
            "totp_code": totp_code,
        },
    )
    session = response.cookies.get(SESSION_COOKIE_NAME)
    if not session:
        fail("the service answered without a session cookie; is --url the operations API?")
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = credentials_file()
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps({"url": api.url, "session": session}), encoding="utf-8")
    data = response.json()
    console.print(
        f"logged in as {data['operator']['username']} "
        f"({data['operator']['role']}) until {line_time(data['session_expires_at'])}"
    )


def _login_password(password: str | None, password_file: Path | None) -> str:
    if password_file is not None:
        return read_secret_file(password_file, "password")
    if password:
        return password
    if not sys.stdin.isatty():
        fail(f"no password: give it with --password-file FILE (or '-' for standard input) or "
             f"{PASSWORD_ENV}, or run the command on a terminal to be asked")
    answer: str = typer.prompt("Password", hide_input=True)
    return answer


@app.command()
def logout(ctx: typer.Context) -> None:
    """End the saved session."""
    api = api_of(ctx)
    if saved_session().get("session"):
        api.call("POST", "/api/auth/logout")
    credentials_file().unlink(missing_ok=True)
    console.print("logged out")


# --- incidents ------------------------------------------------------------------------------


@app.command("open")
def open_incident(
    ctx: typer.Context,
    title: str,
    *,
    category: Annotated[str, typer.Option(help="server_down, network, database, ...")],
    severity: Annotated[str, typer.Option(help="SEV1 (worst) .. SEV4")],
    summary: str = "",
    market: Annotated[list[str] | None, typer.Option(help="Affected market (repeat).")] = None,
    component: Annotated[list[str] | None, typer.Option(help="Affected component.")] = None,
    customers: Annotated[int | None, typer.Option(help="Estimated customers affected.")] = None,
    commander: Annotated[str | None, typer.Option(help="Incident commander.")] = None,
    started_at: Annotated[str | None, typer.Option(help="When impact began (ISO 8601).")] = None,
) -> None:
    """Open an incident; its runbook becomes tasks and SEV1/SEV2 page the on-call."""
    api = api_of(ctx)
    data = api.json(
        "POST",
        "/api/incidents",
        body={
            "title": title,
            "summary": summary,
            "category": category,
            "severity": severity.upper(),
            "affected_markets": market or [],
            "affected_components": component or [],
            "estimated_affected_customers": customers,
            "incident_commander": commander,
            "started_at": started_at,
        },
    )
    _emit(api, data, _show_incident)


@app.command("list")
def list_incidents(
    ctx: typer.Context,
    *,
    status: str | None = None,
    severity: str | None = None,
    category: str | None = None,
    open_only: Annotated[bool, typer.Option("--open")] = False,
    limit: int = LIST_LIMIT_DEFAULT,
    offset: int = 0,
) -> None:
    """Incidents, newest first."""
    api = api_of(ctx)
    page = api.json(
        "GET",
        "/api/incidents",
        params={
            "status": status,
            "severity": severity,
            "category": category,
            "open_only": open_only or None,
            "limit": limit,
            "offset": offset,
        },
    )
    _emit(
        api,
        page,
        lambda data: _table(
            "Incidents",
            ["ref", "sev", "status", "title", "detected"],
            [
                [i["ref"], i["severity"], i["status"], f"{i['title']}\n({i['category']})",
                 table_time(i["detected_at"])]
                for i in data["items"]
            ],
            data,
        ),
    )


@app.command()
def show(ctx: typer.Context, incident_id: int) -> None:
    """One incident with its task progress."""
    api = api_of(ctx)
    _emit(api, api.json("GET", f"/api/incidents/{incident_id}"), _show_incident)


@app.command()
def update(
    ctx: typer.Context,
    incident_id: int,
    *,
    title: str | None = None,
    summary: str | None = None,
    severity: str | None = None,
    cause: str | None = None,
    customers: int | None = None,
    orders_rejected: int | None = None,
    market: Annotated[list[str] | None, typer.Option(help="Replace affected markets.")] = None,
    component: Annotated[list[str] | None, typer.Option(help="Replace components.")] = None,
) -> None:
    """Correct fields; raising the severity to SEV1/SEV2 pages the on-call."""
    api = api_of(ctx)
    body: dict[str, Any] = {
        "title": title,
        "summary": summary,
        "severity": severity.upper() if severity else None,
        "cause": cause,
        "estimated_affected_customers": customers,
        "orders_rejected": orders_rejected,
        "affected_markets": market,
        "affected_components": component,
    }
    body = {key: value for key, value in body.items() if value is not None}
    if not body:
        fail("nothing to change; give at least one option (see --help)")
    _emit(api, api.json("PATCH", f"/api/incidents/{incident_id}", body=body), _show_incident)


@app.command()
def transition(ctx: typer.Context, incident_id: int, status: str, *, note: str = "") -> None:
    """Move along detected > investigating > identified > mitigating > monitoring >
    resolved > closed."""
    api = api_of(ctx)
    data = api.json(
        "POST", f"/api/incidents/{incident_id}/transition", body={"status": status, "note": note}
    )
    _emit(api, data, _show_incident)


@app.command()
def commander(ctx: typer.Context, incident_id: int, username: str) -> None:
    """Name the incident commander."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/incidents/{incident_id}/commander", body={"username": username})
    _emit(api, data, _show_incident)


@app.command()
def comment(ctx: typer.Context, incident_id: int, text: str) -> None:
    """Add a comment to the timeline."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/incidents/{incident_id}/comments", body={"text": text})
    _emit(api, data, lambda entry: console.print(f"#{entry['id']} {entry['message']}"))


@app.command("public-update")
def public_update(
    ctx: typer.Context,
    incident_id: int,
    *,
    ja: Annotated[str, typer.Option(help="What customers are told, in Japanese.")],
    en: Annotated[str, typer.Option(help="The same in English.")],
    channel: Annotated[list[str] | None, typer.Option(help="website, sns, email ...")] = None,
) -> None:
    """Record what customers were told."""
    api = api_of(ctx)
    data = api.json(
        "POST",
        f"/api/incidents/{incident_id}/public-updates",
        body={"message_ja": ja, "message_en": en, "channels": channel or ["website"]},
    )
    _emit(api, data, lambda entry: console.print(f"#{entry['id']} recorded"))


@app.command()
def timeline(ctx: typer.Context, incident_id: int, *, limit: int = 200, offset: int = 0) -> None:
    """The timeline, oldest first."""
    api = api_of(ctx)
    page = api.json(
        "GET", f"/api/incidents/{incident_id}/timeline", params={"limit": limit, "offset": offset}
    )
    _emit(
        api,
        page,
        lambda data: _table(
            f"Timeline of {incident_ref(incident_id)}",
            ["at", "who", "what", "detail"],
            [[table_time(e["at"]), e["actor"], e["kind"], e["message"]]
             for e in data["items"]],
            data,
        ),
    )


@app.command()
def tasks(
    ctx: typer.Context,
    incident_id: int,
    *,
    overdue: bool = False,
    limit: int = 200,
    offset: int = 0,
) -> None:
    """The runbook tasks, in order, with owners and due times."""
    api = api_of(ctx)
    page = api.json(
        "GET",
        f"/api/incidents/{incident_id}/tasks",
        params={"overdue_only": overdue or None, "limit": limit, "offset": offset},
    )
    _emit(
        api,
        page,
        lambda data: _table(
            f"Tasks of {incident_ref(incident_id)}",
            ["step", "owner", "due", "task"],
            [
                [
                    f"{t['step_key']}\n({t['phase']})",
                    t["owner_role"],
                    (
                        f"done by {t['done_by']}\n{table_time(t['done_at'])}"
                        if t["done_at"]
                        else due_time(t["due_at"], utc_now())
                    ),
                    t["title_en"],
                ]
                for t in data["items"]
            ],
            data,
        ),
    )


@app.command("task-done")
def task_done(ctx: typer.Context, incident_id: int, task: str, *, note: str = "") -> None:
    """Mark a task done (by id or step key, e.g. assess_situation)."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/incidents/{incident_id}/tasks/{task}/done", body={"note": note})
    _emit(api, data, lambda t: console.print(f"done: {t['step_key']} by {t['done_by']}"))


@app.command("page-overdue")
def page_overdue(ctx: typer.Context, incident_id: int) -> None:
    """Page the on-call about overdue tasks (each task once)."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/incidents/{incident_id}/tasks/page-overdue")
    _emit(api, data, lambda d: console.print(f"{d['tasks_paged']} overdue task(s) paged"))


@app.command("link-event")
def link_event(
    ctx: typer.Context,
    incident_id: int,
    *,
    event_type: Annotated[str, typer.Option("--type")],
    summary: Annotated[str, typer.Option()],
    seq: int | None = None,
) -> None:
    """Link a venue event (journal seq, type, summary) to the incident."""
    api = api_of(ctx)
    data = api.json(
        "POST",
        f"/api/incidents/{incident_id}/venue-events",
        body={"seq": seq, "event_type": event_type, "summary": summary},
    )
    _emit(api, data, lambda link: console.print(f"linked #{link['id']}"))


@app.command()
def holds(ctx: typer.Context, incident_id: int) -> None:
    """What the incident holds on the venue (halted markets, kill switch, frozen assets)."""
    api = api_of(ctx)
    page = api.json("GET", f"/api/incidents/{incident_id}/holds", params={"limit": 200})
    _emit(
        api,
        page,
        lambda data: _table(
            f"Holds of {incident_ref(incident_id)}",
            ["kind", "target", "placed", "released", "handed to"],
            [
                [
                    h["kind"],
                    h["target"],
                    f"{h['placed_by']}\n{table_time(h['placed_at'])}",
                    table_time(h["released_at"], missing=""),
                    h["handed_to_incident_id"] or "",
                ]
                for h in data["items"]
            ],
            data,
        ),
    )


@app.command()
def handoff(
    ctx: typer.Context,
    incident_id: int,
    target: str,
    *,
    to: Annotated[int, typer.Option(help="The incident taking it over.")],
    note: str = "",
) -> None:
    """Hand a hold (a market, kill_switch, or withdrawals:ASSET) to another incident."""
    api = api_of(ctx)
    data = api.json(
        "POST",
        f"/api/incidents/{incident_id}/handoffs",
        body={"market": target, "to_incident_id": to, "note": note},
    )
    _emit(api, data, _show_incident)


# --- protective actions ---------------------------------------------------------------------


def _action(ctx: typer.Context, incident_id: int, path: str, body: dict[str, Any]) -> None:
    api = api_of(ctx)
    data = api.json("POST", f"/api/incidents/{incident_id}/actions/{path}", body=body)
    _emit(api, data, _show_outcome)


@app.command()
def halt(
    ctx: typer.Context,
    incident_id: int,
    markets: list[str],
    *,
    reason: Annotated[str, typer.Option(help="Why; kept in the timeline and the venue journal.")],
    refuse_cancels: bool = False,
) -> None:
    """Halt markets (new orders refused; cancels allowed unless --refuse-cancels)."""
    _action(
        ctx,
        incident_id,
        "halt",
        {"markets": markets, "reason": reason, "cancels_allowed": not refuse_cancels},
    )


@app.command("set-state")
def set_state(
    ctx: typer.Context,
    incident_id: int,
    markets: list[str],
    *,
    state: Annotated[
        str, typer.Option(help="cancel_only, post_only, limit_only, auction or halted")
    ],
    reason: Annotated[str, typer.Option(help="Why; kept in the timeline and the venue journal.")],
    auction_seconds: int = 0,
) -> None:
    """Tighten markets to cancel-only, post-only, limit-only or an auction."""
    _action(
        ctx,
        incident_id,
        "market-state",
        {"markets": markets, "state": state, "reason": reason, "auction_seconds": auction_seconds},
    )


def _phase(text: str) -> dict[str, Any]:
    state, _, seconds = text.partition(":")
    if not seconds.isdigit():
        fail(f"phase {text!r} must be STATE:SECONDS, e.g. cancel_only:300")
    return {"state": state, "min_seconds": int(seconds)}


@app.command()
def resume(
    ctx: typer.Context,
    incident_id: int,
    markets: list[str],
    *,
    reason: Annotated[str, typer.Option(help="Why; kept in the timeline and the venue journal.")],
    auction_seconds: int = 180,
    phase: Annotated[
        list[str] | None,
        typer.Option(
            help="A resume plan phase STATE:SECONDS (repeat), e.g. cancel_only:300 "
            "auction:180 open:0"
        ),
    ] = None,
) -> None:
    """Reopen markets through an opening auction (or the plan given); after a SEV1 a second
    operator must approve."""
    _action(
        ctx,
        incident_id,
        "resume",
        {
            "markets": markets,
            "reason": reason,
            "auction_seconds": auction_seconds,
            "phases": [_phase(text) for text in phase or []],
        },
    )


@app.command("kill-switch")
def kill_switch(
    ctx: typer.Context,
    incident_id: int,
    *,
    reason: Annotated[str, typer.Option(help="Why; kept in the timeline and the venue journal.")],
) -> None:
    """Halt every market at once."""
    _action(ctx, incident_id, "kill-switch", {"reason": reason})


@app.command("release-kill-switch")
def release_kill_switch(
    ctx: typer.Context,
    incident_id: int,
    *,
    reason: Annotated[str, typer.Option(help="Why; kept in the timeline and the venue journal.")],
) -> None:
    """Ask to release the kill switch; a second operator must approve. Markets stay halted."""
    _action(ctx, incident_id, "kill-switch/release", {"reason": reason})


@app.command()
def freeze(
    ctx: typer.Context,
    incident_id: int,
    asset: str,
    *,
    reason: Annotated[str, typer.Option(help="Why; kept in the timeline and the venue journal.")],
) -> None:
    """Freeze withdrawals of an asset."""
    _action(ctx, incident_id, "withdrawals/freeze", {"asset": asset, "reason": reason})


@app.command()
def unfreeze(
    ctx: typer.Context,
    incident_id: int,
    asset: str,
    *,
    reason: Annotated[str, typer.Option(help="Why; kept in the timeline and the venue journal.")],
) -> None:
    """Unfreeze withdrawals of an asset."""
    _action(ctx, incident_id, "withdrawals/unfreeze", {"asset": asset, "reason": reason})


# --- approvals ------------------------------------------------------------------------------


@app.command()
def approvals(
    ctx: typer.Context,
    *,
    status: str | None = "pending",
    incident: int | None = None,
    limit: int = LIST_LIMIT_DEFAULT,
    offset: int = 0,
) -> None:
    """Four-eyes requests (pending ones by default)."""
    api = api_of(ctx)
    page = api.json(
        "GET",
        "/api/approvals",
        params={"status": status, "incident_id": incident, "limit": limit, "offset": offset},
    )
    _emit(
        api,
        page,
        lambda data: _table(
            "Approvals",
            ["id", "incident", "action", "status", "requested by", "reason"],
            [
                [
                    a["id"],
                    incident_ref(a["incident_id"]),
                    a["action"],
                    a["status"],
                    a["requested_by"],
                    a["reason"],
                ]
                for a in data["items"]
            ],
            data,
        ),
    )


@app.command()
def approve(ctx: typer.Context, approval_id: int, *, note: str = "") -> None:
    """Approve as the second operator; the action runs at once."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/approvals/{approval_id}/approve", body={"note": note})
    _emit(api, data, _show_outcome)


@app.command()
def reject(ctx: typer.Context, approval_id: int, *, note: str = "") -> None:
    """Reject a four-eyes request."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/approvals/{approval_id}/reject", body={"note": note})
    _emit(api, data, lambda a: console.print(f"approval #{a['id']} {a['status']}"))


# --- postmortem, reports, metrics -------------------------------------------------------------


@app.command()
def postmortem(ctx: typer.Context, incident_id: int, file: Path) -> None:
    """Write the postmortem from a YAML or JSON file (summary, cause, went_well, went_badly,
    recurrence_prevention, action_items: [{description, owner, due}])."""
    api = api_of(ctx)
    try:
        body = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        fail(f"cannot read {file}: {exc}")
    if not isinstance(body, dict):
        fail(f"{file} must hold a mapping with at least 'cause'")
    data = api.json("PUT", f"/api/incidents/{incident_id}/postmortem", body=body)
    _emit(
        api,
        data,
        lambda d: console.print(
            f"postmortem written by {d['written_by']} ({len(d['action_items'])} action items)"
        ),
    )


@app.command()
def report(
    ctx: typer.Context,
    incident_id: int,
    *,
    kind: Annotated[str, typer.Option(help="postmortem or regulatory")] = "postmortem",
    output_format: Annotated[str, typer.Option("--format", help="markdown or html")] = "markdown",
    output: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
) -> None:
    """A postmortem (Markdown/HTML) or the Japanese regulator report, to review."""
    api = api_of(ctx)
    if kind not in {"postmortem", "regulatory"}:
        fail("--kind is postmortem or regulatory")
    params = {"format": output_format} if kind == "postmortem" else None
    text = api.call("GET", f"/api/incidents/{incident_id}/reports/{kind}", params=params).text
    if output is None:
        console.print(text)
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output}")


@app.command()
def metrics(
    ctx: typer.Context,
    incident_id: Annotated[int | None, typer.Argument()] = None,
    *,
    since: str | None = None,
    until: str | None = None,
) -> None:
    """MTTD, MTTA, MTTM and MTTR of one incident, or their means over --since/--until."""
    api = api_of(ctx)
    if incident_id is not None:
        data = api.json("GET", f"/api/incidents/{incident_id}/metrics")
    else:
        if not since or not until:
            fail("give an incident id, or both --since and --until (ISO 8601 with a zone)")
        data = api.json("GET", "/api/metrics/incidents", params={"since": since, "until": until})
    _emit(
        api,
        data,
        lambda d: _table(
            "Response times (seconds)",
            ["metric", "value"],
            [[key, value] for key, value in d.items()],
        ),
    )


@app.command()
def runbooks(ctx: typer.Context, name: Annotated[str | None, typer.Argument()] = None) -> None:
    """The runbooks, or one runbook's steps."""
    api = api_of(ctx)
    if name is None:
        page = api.json("GET", "/api/runbooks", params={"limit": 200})
        _emit(
            api,
            page,
            lambda data: _table(
                "Runbooks",
                ["name", "version", "steps", "title"],
                [[r["name"], r["version"], len(r["steps"]), r["title_en"]] for r in data["items"]],
            ),
        )
        return
    data = api.json("GET", f"/api/runbooks/{name}")
    _emit(
        api,
        data,
        lambda d: _table(
            f"{d['title_en']} (v{d['version']})",
            ["phase", "step", "owner", "due (min)", "ja", "en"],
            [
                [s["phase"], s["key"], s["owner_role"], s["due_minutes"], s["ja"], s["en"]]
                for s in d["steps"]
            ],
        ),
    )
