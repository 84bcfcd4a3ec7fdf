"""Postmortem (Markdown, HTML) and the regulator's system-failure report, checked against
golden files. Regenerate them after an intended change with HALTGUARD_UPDATE_GOLDEN=1 and
read the diff before committing it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from haltguard.gateway.control import InProcessVenueControl
from haltguard.incidents import flows, service
from haltguard.incidents.models import (
    ActionItem,
    HaltRequest,
    Incident,
    IncidentCreate,
    IncidentUpdate,
    PostmortemWrite,
    PublicUpdateCreate,
    ResumeRequest,
)
from haltguard.incidents.rules import IncidentStatus
from haltguard.reports import postmortem, regulatory
from haltguard.reports.document import Document, Figure, Section, render_html, render_markdown
from haltguard.reports.timefmt import duration_text, jst_utc, jst_utc_ja
from haltguard.responders.service import ManualClock

GOLDEN = Path(__file__).parent / "golden"
DETECTED = datetime(2025, 1, 6, 0, 30, tzinfo=UTC)  # 09:30 JST


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("HALTGUARD_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


def _story(session: Session, venue: InProcessVenueControl) -> Incident:
    """A database outage: detected, BTC-JPY and ETH-JPY halted, fixed, reopened, resolved."""
    clock = ManualClock(DETECTED)
    incident = flows.open_incident(session, IncidentCreate(
        title="Order database unreachable",
        summary="The primary order database stopped accepting writes; orders were refused.",
        category="database", severity="SEV3", affected_markets=["BTC-JPY", "ETH-JPY"],
        affected_components=["order-db-primary", "matching gateway"],
        estimated_affected_customers=12_000, incident_commander="carol",
        started_at=DETECTED - timedelta(minutes=4),
    ), actor="alice", clock=clock)

    def step(minutes: int) -> datetime:
        clock.advance(timedelta(minutes=minutes))
        return clock.now()

    service.transition(session, incident, IncidentStatus.INVESTIGATING, actor="carol",
                       now=step(2))
    flows.halt_markets(session, venue, incident, HaltRequest(
        markets=["BTC-JPY", "ETH-JPY"], reason="orders cannot be stored"),
        actor="alice", now=step(1))
    service.post_public_update(session, incident, PublicUpdateCreate(
        message_ja="BTC/JPY と ETH/JPY の取引を一時停止しています。",
        message_en="Trading in BTC/JPY and ETH/JPY is paused."), actor="sam", now=step(4))
    service.complete_task(session, incident, "assess_situation", actor="carol", now=step(3))
    service.update(session, incident, IncidentUpdate(
        cause="A full disk on the primary order database.", orders_rejected=3_456),
        actor="carol", now=step(10))
    service.transition(session, incident, IncidentStatus.IDENTIFIED, actor="carol", now=step(0))
    service.transition(session, incident, IncidentStatus.MITIGATING, actor="carol", now=step(5))
    flows.resume_markets(session, venue, incident, ResumeRequest(
        markets=["BTC-JPY", "ETH-JPY"], reason="disk extended, data verified",
        auction_seconds=0), actor="carol", now=step(40))
    service.transition(session, incident, IncidentStatus.MONITORING, actor="carol", now=step(1))
    service.transition(session, incident, IncidentStatus.RESOLVED, actor="carol", now=step(30),
                       market_states=venue.market_states())
    service.write_postmortem(session, incident, PostmortemWrite(
        summary="Orders in BTC/JPY and ETH/JPY were refused for 62 minutes.",
        cause="The order database's disk filled up; the alert for it was muted.",
        went_well=["Markets were halted 3 minutes after detection."],
        went_badly=["The disk alert had been muted since a migration."],
        recurrence_prevention=["ディスク使用率の監視を復旧し、80%で通知する。"],
        action_items=[ActionItem(description="Unmute and test the disk alert", owner="dave",
                                 due="2025-01-13")],
    ), actor="carol", now=step(60))
    session.commit()
    return incident


def test_postmortem_markdown_matches_its_golden_file(
    session: Session, venue: InProcessVenueControl
) -> None:
    incident = _story(session, venue)
    _check_golden("postmortem.md", postmortem.render_markdown(postmortem.build(session, incident)))


def test_postmortem_html_matches_its_golden_file(
    session: Session, venue: InProcessVenueControl
) -> None:
    incident = _story(session, venue)
    _check_golden("postmortem.html", postmortem.render_html(postmortem.build(session, incident)))


def test_regulatory_report_matches_its_golden_file(
    session: Session, venue: InProcessVenueControl
) -> None:
    incident = _story(session, venue)
    _check_golden("regulatory.ja.md",
                  regulatory.render_markdown(regulatory.build(session, incident)))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_draft_postmortem_says_what_is_not_written_yet(session: Session) -> None:
    clock = ManualClock(DETECTED)
    incident = flows.open_incident(session, IncidentCreate(
        title="Quiet", category="network", severity="SEV4"), actor="alice", clock=clock)
    text = postmortem.render_markdown(postmortem.build(session, incident))
    assert "## Cause\n\n(not written yet)" in text
    assert "| Resolved | not yet |" in text
    report = regulatory.render_markdown(regulatory.build(session, incident))
    assert "## 6. 復旧日時\n\n未復旧(対応中)" in report
    assert "(記入してください)" in report


def test_html_escapes_what_people_typed() -> None:
    from haltguard.reports.document import Document, Paragraph, Section, render_html

    page = render_html(Document("t", "en", (Section("s", (Paragraph("<script>x</script>"),)),)))
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_times_show_japan_time_with_utc_beside_it() -> None:
    moment = datetime(2025, 1, 6, 15, 5, 9, tzinfo=UTC)
    assert jst_utc(moment) == "2025-01-07 00:05:09 JST (2025-01-06 15:05:09 UTC)"
    assert jst_utc_ja(moment) == "2025年01月07日 00時05分09秒(日本時間)/ 2025-01-06 15:05:09 UTC"
    assert duration_text(3720) == "1 h 2 min"


def test_a_figure_is_inlined_in_html_and_linked_from_markdown() -> None:
    doc = Document("T", "ja", (Section("S", (Figure("<svg></svg>", "heat.svg", "Heat"),)),))
    assert "![Heat](heat.svg)" in render_markdown(doc)
    assert "<figure><svg></svg><figcaption>Heat</figcaption></figure>" in render_html(doc)
