"""Reads other domains make of incidents through the service: the first incident of a
category detected since a moment (how a drill finds the incident its fault caused)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from incident_helpers import START, open_incident
from sqlalchemy.orm import Session

from haltguard.incidents import service
from haltguard.incidents.errors import IncidentError
from haltguard.incidents.rules import Category
from haltguard.responders.service import ManualClock


def test_first_detected_since_finds_the_first_incident_of_the_category_from_that_moment(
    session: Session, clock: ManualClock
) -> None:
    before = open_incident(session, clock, category=Category.SOFTWARE_BUG)
    clock.advance(timedelta(minutes=1))
    open_incident(session, clock, category=Category.DDOS)
    first = open_incident(session, clock, category=Category.SOFTWARE_BUG)
    open_incident(session, clock, category=Category.SOFTWARE_BUG)
    since = START + timedelta(seconds=30)
    assert service.first_detected_since(session, Category.SOFTWARE_BUG, since) == first.id
    assert service.first_detected_since(session, Category.SOFTWARE_BUG, START) == before.id
    assert service.first_detected_since(session, Category.DATABASE, START) is None


def test_first_detected_since_refuses_a_moment_without_a_time_zone(session: Session) -> None:
    with pytest.raises(IncidentError, match="needs a time zone"):
        service.first_detected_since(session, Category.DDOS, datetime(2026, 1, 1))
