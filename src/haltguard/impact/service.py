"""Impact for an incident, its CSV lists, and the figures the reports fill in.

Plain functions: the incident's record comes through ``incidents.service``, the journal
through :mod:`haltguard.impact.analysis`. An incident's window runs from when it started
(or was detected) to when it was resolved, or to the journal's end while it is not; a start
before the retained journal is moved to its first record (the report says which range it
read).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Final, TextIO

from sqlalchemy.orm import Session

from haltguard.impact.analysis import analyse
from haltguard.impact.errors import ImpactError, UnknownNameError
from haltguard.impact.models import (
    AffectedAccount,
    CaughtOrder,
    ImpactFigures,
    ImpactReport,
    ImpactWindow,
    RefusedOrder,
    RefusedWithdrawal,
    UncancellableOrder,
    iso_utc,
    to_ns,
)
from haltguard.impact.state import journal_range
from haltguard.incidents import service as incidents
from haltguard.incidents.models import Incident

LIST_NAMES: Final = (
    "accounts", "refused_orders", "uncancellable_orders", "refused_withdrawals", "caught_orders",
)
"""The lists a report exports as CSV."""


def incident_window(
    data_dir: Path, incident: Incident, markets: frozenset[str] = frozenset()
) -> ImpactWindow:
    """The journal window of ``incident`` (see the module), within the retained journal."""
    rng = journal_range(data_dir)
    start = to_ns(incident.started_at or incident.detected_at)
    end = to_ns(incident.resolved_at) if incident.resolved_at is not None else None
    return ImpactWindow(from_ts_ns=min(max(start, rng.first_ts_ns), rng.last_ts_ns),
                        to_ts_ns=end, markets=markets)


def analyse_incident(
    session: Session, data_dir: Path, incident_id: int, markets: frozenset[str] = frozenset()
) -> ImpactReport:
    incident = incidents.get(session, incident_id)
    report = analyse(data_dir, incident_window(data_dir, incident, markets))
    return replace(report, incident_ref=incident.ref)


def figures_for_incident(
    session: Session, data_dir: Path, incident: Incident
) -> ImpactFigures | None:
    """The counts the incident page and the reports show, or ``None`` where the journal
    cannot answer (no journal in ``data_dir``: the venue runs elsewhere)."""
    try:
        report = analyse(data_dir, incident_window(data_dir, incident))
    except ImpactError:
        return None
    counts = report.counts
    return ImpactFigures(
        affected_accounts=counts.affected_accounts,
        orders_refused=counts.orders_refused,
        cancels_refused=counts.cancels_refused,
        withdrawals_refused=counts.withdrawals_refused,
        journal=report.journal,
        csv_path=f"/api/incidents/{incident.id}/impact.csv?list=accounts",
    )


def shortened(report: ImpactReport, items_max: int) -> ImpactReport:
    """``report`` with each list cut to ``items_max`` items (the counts stay totals)."""
    return replace(
        report,
        affected=report.affected[:items_max],
        refused_orders=report.refused_orders[:items_max],
        uncancellable_orders=report.uncancellable_orders[:items_max],
        refused_withdrawals=report.refused_withdrawals[:items_max],
        caught_orders=report.caught_orders[:items_max],
    )


def csv_rows(report: ImpactReport, list_name: str) -> Iterator[list[str]]:
    """A header, then one row per item of the named list; a ``ts_ns`` column is followed by
    its ``time_utc``, an account's reasons are joined with ``;``."""
    items: list[object]
    if list_name == "accounts":
        items = list(report.affected)
    elif list_name in LIST_NAMES:
        items = list(getattr(report, _LIST_FIELDS[list_name]))
    else:
        raise UnknownNameError(
            f"no list {list_name!r}; choose one of {', '.join(LIST_NAMES)}",
            message_ja=f"一覧 {list_name} はありません({', '.join(LIST_NAMES)} から選択)",
        )
    kind = _LIST_TYPES[list_name]
    names = [item.name for item in fields(kind)]
    header: list[str] = []
    for name in names:
        header.append(name)
        if name == "ts_ns":
            header.append("time_utc")
    yield header
    for item in items:
        row: list[str] = []
        for name in names:
            value = getattr(item, name)
            if isinstance(value, tuple):
                row.append(";".join(str(part) for part in value))
            else:
                row.append(str(value))
            if name == "ts_ns":
                row.append(iso_utc(value))
        yield row


def write_csv(report: ImpactReport, list_name: str, out: TextIO) -> int:
    """Write the named list as CSV to ``out``; return the rows written (header excluded)."""
    writer = csv.writer(out, lineterminator="\n")
    rows = -1
    for row in csv_rows(report, list_name):
        writer.writerow(row)
        rows += 1
    return rows


def csv_text(report: ImpactReport, list_name: str) -> str:
    out = io.StringIO()
    write_csv(report, list_name, out)
    return out.getvalue()


_LIST_TYPES: Final[dict[str, type]] = {
    "accounts": AffectedAccount,
    "refused_orders": RefusedOrder,
    "uncancellable_orders": UncancellableOrder,
    "refused_withdrawals": RefusedWithdrawal,
    "caught_orders": CaughtOrder,
}
_LIST_FIELDS: Final = {
    "accounts": "affected",
    "refused_orders": "refused_orders",
    "uncancellable_orders": "uncancellable_orders",
    "refused_withdrawals": "refused_withdrawals",
    "caught_orders": "caught_orders",
}
