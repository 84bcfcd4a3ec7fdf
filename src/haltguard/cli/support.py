"""``haltguard support ...``: the support desk from the command line.

``staffing`` with ``--arrivals-per-hour`` computes Erlang C locally (no service needed: a
planning tool for the desk lead); with ``--incident`` it asks the service, which forecasts the
arrivals from the incident's own tickets or past incidents of its category. Everything else
goes through the operations API (``--url``/``HALTGUARD_URL``, ``HALTGUARD_TOKEN`` or the saved
login), so the permission table and the audit chain apply as for any other client.
A walk-through is in ``docs/support.md``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from haltguard.cli.client import Api, api_of, connect, fail
from haltguard.support import erlang
from haltguard.support.settings import ANSWER_WITHIN_S_DEFAULT, SERVICE_LEVEL_DEFAULT

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="The support desk: tickets, bulk replies, FAQ, staffing, reports.")
console = Console(markup=False, highlight=False, soft_wrap=True)
app.callback()(connect)

HANDLE_S_DEFAULT = 300.0


def _print_json(api: Api, data: Any) -> bool:
    if api.as_json:
        console.print_json(data=data)
    return api.as_json


def _seconds(value: float | None) -> str:
    return "never" if value is None or value == float("inf") else f"{value:.1f} s"


def _show_staffing(data: dict[str, Any]) -> None:
    console.print(
        f"Offered load: {data['arrivals_per_hour']:.1f} contacts/h x {data['handle_s']:.0f} s"
        f" = {data['load_erlangs']:.2f} erlangs")
    console.print(f"Target: {data['service_level_target']:.0%} answered within "
                  f"{data['answer_within_s']:.0f} s")
    table = Table("agents", "P(wait)", "service level", "avg speed of answer", "occupancy",
                  title="Erlang C")
    for row in data["rows"]:
        table.add_row(str(row["agents"]), f"{row['probability_wait']:.4f}",
                      f"{row['service_level']:.1%}",
                      _seconds(row["average_speed_of_answer_s"]), f"{row['occupancy']:.1%}")
    console.print(table)
    answer = data["answer"]
    console.print(f"Agents needed: {data['agents']} (service level "
                  f"{answer['service_level']:.1%}, average wait "
                  f"{_seconds(answer['average_speed_of_answer_s'])})")
    forecast = data.get("forecast") or {}
    if forecast.get("source") and forecast["source"] != "given":
        console.print(f"Arrivals from: {forecast['source']} {forecast}")


@app.command("staffing")
def staffing_command(
    ctx: typer.Context,
    *,
    arrivals_per_hour: Annotated[float | None, typer.Option(
        "--arrivals-per-hour", help="Forecast contacts an hour (calls, chats, tickets).")] = None,
    incident: Annotated[int | None, typer.Option(
        "--incident", help="Forecast from this incident's own arrivals (asks the service).")
    ] = None,
    handle_s: Annotated[float, typer.Option(
        "--handle-s", help="Average handling time of one contact, seconds.")] = HANDLE_S_DEFAULT,
    answer_within_s: Annotated[float, typer.Option(
        "--answer-within-s", help="Service level: answered within this many seconds ...")
    ] = ANSWER_WITHIN_S_DEFAULT,
    service_level: Annotated[float, typer.Option(
        "--service-level", help="... for this share of contacts (0.8 is 80%).")
    ] = SERVICE_LEVEL_DEFAULT,
) -> None:
    """Agents needed for the service level (Erlang C), with the calculation shown."""
    api = api_of(ctx)
    if (arrivals_per_hour is None) == (incident is None):
        fail("give one of --arrivals-per-hour N or --incident ID")
    if arrivals_per_hour is not None:
        try:
            answer = erlang.staffing(arrivals_per_hour, handle_s,
                                     answer_within_s=answer_within_s,
                                     service_level_target=service_level)
        except erlang.ErlangInputError as exc:
            fail(f"{exc}; check the options")
        rows = [{"agents": r.agents, "probability_wait": r.probability_wait,
                 "service_level": r.service_level,
                 "average_speed_of_answer_s": None if r.average_speed_of_answer_s == float(
                     "inf") else r.average_speed_of_answer_s, "occupancy": r.occupancy}
                for r in answer.rows]
        data: dict[str, Any] = {
            "arrivals_per_hour": arrivals_per_hour, "handle_s": handle_s,
            "answer_within_s": answer_within_s, "service_level_target": service_level,
            "load_erlangs": answer.load_erlangs, "agents": answer.agents, "answer": rows[-1],
            "rows": rows, "forecast": {"source": "given"}}
    else:
        data = api.json("GET", "/api/support/staffing", params={
            "incident_id": incident, "handle_s": handle_s, "answer_within_s": answer_within_s,
            "service_level": service_level})
    if not _print_json(api, data):
        _show_staffing(data)


@app.command("tickets")
def tickets_command(
    ctx: typer.Context,
    *,
    incident: Annotated[int | None, typer.Option("--incident")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200)] = 50,
) -> None:
    """Tickets, newest first, with their SLA timers."""
    api = api_of(ctx)
    data = api.json("GET", "/api/support/tickets", params={
        "incident_id": incident, "status": status, "limit": limit})
    if _print_json(api, data):
        return
    table = Table("ref", "channel", "category", "status", "incident", "first response",
                  "subject", title=f"{data['total']} tickets")
    for item in data["items"]:
        table.add_row(item["ref"], item["channel"], item["category"], item["status"],
                      f"INC-{item['incident_id']}" if item["incident_id"] else "-",
                      item["sla"]["first_response"], item["subject"][:40])
    console.print(table)


@app.command("bulk-reply")
def bulk_reply_command(
    ctx: typer.Context,
    incident: Annotated[int, typer.Argument(help="The incident whose tickets to answer.")],
    *,
    update: Annotated[int | None, typer.Option(
        "--update", help="The public update's timeline entry id (default: the latest).")
    ] = None,
    macro: Annotated[str, typer.Option("--macro", help="Reply template.")] = "",
) -> None:
    """Answer every ticket of the incident with its public update: one mail per customer,
    never twice for the same update."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/support/incidents/{incident}/bulk-reply",
                    body={"update_entry_id": update, "macro": macro})
    if _print_json(api, data):
        return
    said = "answered" if data["created"] else "had already been answered (nothing sent again)"
    console.print(f"INC-{incident} update {data['update_entry_id']} {said}: "
                  f"{data['tickets_answered']} tickets, {data['mails_queued']} mails queued, "
                  f"{data['customers_without_address']} customers without an address")


@app.command("faq-draft")
def faq_draft_command(
    ctx: typer.Context, incident: Annotated[int, typer.Argument(help="The incident.")],
) -> None:
    """Draft the incident's FAQ entries from its facts (unpublished until reviewed)."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/support/incidents/{incident}/faq")
    if not _print_json(api, data):
        for article in data:
            console.print(f"{article['slug']}: {article['title_en']} "
                          f"({'published' if article['published'] else 'draft'})")


@app.command("send-mail")
def send_mail_command(ctx: typer.Context) -> None:
    """Send the queued replies now, batch after batch, until none is left."""
    api = api_of(ctx)
    sent = failed = 0
    while True:
        data = api.json("POST", "/api/support/mail/send")
        sent, failed = sent + data["sent"], failed + data["failed"]
        if not data["more_queued"] or not data["sent"]:
            break
    if not _print_json(api, {"sent": sent, "failed": failed}):
        console.print(f"sent {sent}, failed {failed}")


@app.command("report")
def report_command(
    ctx: typer.Context,
    *,
    incident: Annotated[int | None, typer.Option("--incident")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 with a zone.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 with a zone.")] = None,
) -> None:
    """Contacts per hour by channel and category, backlog, SLA attainment."""
    api = api_of(ctx)
    data = api.json("GET", "/api/support/report", params={
        "incident_id": incident, "since": since, "until": until})
    if _print_json(api, data):
        return
    table = Table("hour (UTC)", "total", "by channel", "by category", title="Contacts")
    for hour in data["per_hour"]:
        table.add_row(hour["hour"][:16], str(hour["total"]),
                      ", ".join(f"{k} {v}" for k, v in sorted(hour["by_channel"].items())),
                      ", ".join(f"{k} {v}" for k, v in sorted(hour["by_category"].items())))
    console.print(table)
    console.print(f"tickets {data['tickets']}, backlog {data['backlog']}; first response "
                  f"met {data['first_response_met']}, breached "
                  f"{data['first_response_breached']}; resolution met "
                  f"{data['resolution_met']}, breached {data['resolution_breached']}")
