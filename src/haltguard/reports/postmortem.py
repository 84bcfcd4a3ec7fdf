"""The postmortem: what happened, what it cost, why, and what we will change.

Built from the incident's timeline and its written postmortem (cause, what went well and
badly, action items); sections not written yet say so, so a draft can be shared early.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from haltguard.impact.models import ImpactFigures
from haltguard.incidents import service
from haltguard.incidents.models import Incident
from haltguard.incidents.rules import CATEGORIES
from haltguard.reports import document
from haltguard.reports.document import Bullets, Document, Paragraph, Section, Table
from haltguard.reports.facts import IncidentFacts, gather
from haltguard.reports.timefmt import duration_text, jst_utc

NOT_WRITTEN = "(not written yet)"


def build(
    session: Session, incident: Incident, figures: ImpactFigures | None = None
) -> Document:
    return compose(gather(session, incident, figures))


def _impact(facts: IncidentFacts) -> Section:
    impact = facts.impact
    markets = ", ".join(impact.markets_halted) or "none"
    if impact.all_markets_halted:
        markets = f"all markets (kill switch); {markets}"
    rows: tuple[tuple[str, str], ...] = (
        ("Started", jst_utc(impact.started_at)),
        ("Resolved", jst_utc(impact.ended_at, missing="not yet")),
        ("Duration", duration_text(impact.duration_s)),
        ("Markets halted or restricted", markets),
        ("Withdrawals frozen", ", ".join(impact.withdrawals_frozen) or "none"),
        ("Orders rejected", _count(impact.orders_rejected)),
        ("Customers affected (estimate)", _count(impact.customers_affected)),
    )
    figures = facts.figures
    if figures is not None:
        rows += (
            ("Customers affected (from the journal)", f"{figures.affected_accounts:,}"),
            ("Orders refused (from the journal)", f"{figures.orders_refused:,}"),
            ("Cancels refused (from the journal)", f"{figures.cancels_refused:,}"),
            ("Withdrawals refused (from the journal)", f"{figures.withdrawals_refused:,}"),
            ("Counted from", f"journal {figures.journal.describe()}"),
            ("Affected customers (CSV)", figures.csv_path),
        )
    return Section("Impact", (Table(("", ""), rows),))


def _count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def _metrics(facts: IncidentFacts) -> Section:
    metrics = service.metrics(facts.incident)
    rows = (
        ("Time to detect", duration_text(metrics.time_to_detect_s, missing="unknown")),
        ("Time to acknowledge", duration_text(metrics.time_to_acknowledge_s, missing="-")),
        ("Time to mitigate", duration_text(metrics.time_to_mitigate_s, missing="-")),
        ("Time to resolve", duration_text(metrics.time_to_resolve_s, missing="-")),
    )
    return Section("Response times", (Table(("", ""), rows),))


def compose(facts: IncidentFacts) -> Document:
    incident, written = facts.incident, facts.postmortem
    category = CATEGORIES[incident.category]
    summary = (written.summary if written and written.summary else incident.summary) or NOT_WRITTEN
    cause = (written.cause if written else incident.cause) or NOT_WRITTEN
    timeline_rows = tuple(
        (jst_utc(entry.at), entry.actor, entry.kind.value, entry.message)
        for entry in facts.timeline
    )
    action_rows = tuple(
        (item.get("description", ""), item.get("owner", ""), item.get("due", "") or "-")
        for item in (written.action_items if written else [])
    )
    preamble = (
        Table(("", ""), (
            ("Incident", f"{incident.ref}: {incident.title}"),
            ("Severity", f"{incident.severity} (highest {incident.peak_severity})"),
            ("Category", f"{category.label_en} ({category.group})"),
            ("Status", incident.status.value),
            ("Incident commander", incident.incident_commander or "not named"),
            ("Detected", jst_utc(incident.detected_at)),
            ("Postmortem by", f"{written.written_by}, {jst_utc(written.written_at)}"
             if written else NOT_WRITTEN),
        )),
    )
    sections = (
        Section("Summary", (Paragraph(summary),)),
        _impact(facts),
        Section("Cause", (Paragraph(cause),)),
        _metrics(facts),
        Section("Timeline", (Table(("Time", "Who", "What", "Detail"), timeline_rows),)),
        Section("What went well", (Bullets(tuple(written.went_well) if written else (),
                                           empty=NOT_WRITTEN),)),
        Section("What went badly", (Bullets(tuple(written.went_badly) if written else (),
                                            empty=NOT_WRITTEN),)),
        Section("Action items", (Table(("Action", "Owner", "Due"), action_rows,
                                       empty=NOT_WRITTEN),)),
    )
    return Document(title=f"Postmortem {incident.ref}: {incident.title}", lang="en",
                    sections=sections, preamble=preamble)


def render_markdown(doc: Document) -> str:
    return document.render_markdown(doc)


def render_html(doc: Document) -> str:
    return document.render_html(doc)
