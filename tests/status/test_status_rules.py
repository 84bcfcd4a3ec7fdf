"""The status rules alone: market states and incidents to component statuses, overrides and
maintenance, the page indicator, the update cadence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from haltguard.incidents.rules import IncidentStatus, Severity
from haltguard.status.rules import (
    UPDATE_EVERY_MINUTES_DEFAULT,
    ComponentStatus,
    Contribution,
    Impact,
    Indicator,
    cadence_due,
    decide,
    incident_contribution,
    market_contribution,
    page_indicator,
    parse_update_every,
    worst,
)
from haltguard.venue.types import MarketState

NOW = datetime(2025, 1, 6, tzinfo=UTC)
S = ComponentStatus


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (MarketState.OPEN, S.OPERATIONAL),
        (MarketState.POST_ONLY, S.DEGRADED_PERFORMANCE),
        (MarketState.LIMIT_ONLY, S.DEGRADED_PERFORMANCE),
        (MarketState.CANCEL_ONLY, S.PARTIAL_OUTAGE),
        (MarketState.AUCTION, S.PARTIAL_OUTAGE),
        (MarketState.HALTED, S.MAJOR_OUTAGE),
        (MarketState.CLOSED, S.MAJOR_OUTAGE),
    ],
)
def test_each_market_state_maps_to_the_documented_component_status(
    state: MarketState, expected: ComponentStatus
) -> None:
    contribution = market_contribution("BTC-JPY", state)
    assert contribution.status == expected
    assert f"BTC-JPY is {state.value}" in contribution.reason


def test_an_open_incident_counts_by_severity_and_at_most_degraded_while_monitoring() -> None:
    investigating = incident_contribution("INC-1", Severity.SEV1, IncidentStatus.INVESTIGATING)
    monitoring = incident_contribution("INC-1", Severity.SEV1, IncidentStatus.MONITORING)
    assert investigating is not None and investigating.status == S.MAJOR_OUTAGE
    assert monitoring is not None and monitoring.status == S.DEGRADED_PERFORMANCE
    assert incident_contribution("INC-1", Severity.SEV1, IncidentStatus.RESOLVED) is None
    sev4 = incident_contribution("INC-2", Severity.SEV4, IncidentStatus.DETECTED)
    assert sev4 is not None and sev4.status == S.OPERATIONAL


def test_the_worst_contribution_wins_and_its_reason_is_kept() -> None:
    decision = decide([
        Contribution(S.DEGRADED_PERFORMANCE, "INC-1 names it"),
        Contribution(S.MAJOR_OUTAGE, "market BTC-JPY is halted"),
        Contribution(S.OPERATIONAL, "fine"),
    ])
    assert decision.status == S.MAJOR_OUTAGE
    assert decision.reasons == ("INC-1 names it", "market BTC-JPY is halted")


def test_maintenance_in_progress_shows_under_maintenance_over_an_outage() -> None:
    decision = decide([Contribution(S.MAJOR_OUTAGE, "halted")], maintenance="MNT-1")
    assert decision.status == S.UNDER_MAINTENANCE
    assert "MNT-1" in decision.reasons[0]


def test_an_override_beats_the_rules_and_keeps_what_the_rules_say() -> None:
    decision = decide([Contribution(S.MAJOR_OUTAGE, "halted")], override=S.PARTIAL_OUTAGE,
                      override_note="cancels work")
    assert decision.status == S.PARTIAL_OUTAGE
    assert decision.automatic == S.MAJOR_OUTAGE
    assert decision.reasons[0] == "override -> partial_outage: cancels work"


def test_worst_ranks_outages_above_maintenance_and_maintenance_above_operational() -> None:
    assert worst([S.OPERATIONAL, S.UNDER_MAINTENANCE]) == S.UNDER_MAINTENANCE
    assert worst([S.UNDER_MAINTENANCE, S.DEGRADED_PERFORMANCE]) == S.DEGRADED_PERFORMANCE
    assert worst([]) == S.OPERATIONAL


@pytest.mark.parametrize(
    ("statuses", "impacts", "expected"),
    [
        ([S.OPERATIONAL], [], Indicator.NONE),
        ([S.DEGRADED_PERFORMANCE], [], Indicator.MINOR),
        ([S.PARTIAL_OUTAGE, S.DEGRADED_PERFORMANCE], [], Indicator.MAJOR),
        ([S.MAJOR_OUTAGE], [Impact.MINOR], Indicator.CRITICAL),
        ([S.OPERATIONAL], [Impact.CRITICAL], Indicator.CRITICAL),
        ([S.UNDER_MAINTENANCE], [Impact.MAINTENANCE], Indicator.MAINTENANCE),
        ([S.UNDER_MAINTENANCE, S.DEGRADED_PERFORMANCE], [], Indicator.MINOR),
    ],
)
def test_page_indicator_is_the_worst_of_components_and_unresolved_incidents(
    statuses: list[ComponentStatus], impacts: list[Impact], expected: Indicator
) -> None:
    assert page_indicator(statuses, impacts) == expected


def test_update_cadence_is_read_per_severity_and_off_can_be_chosen() -> None:
    chosen = parse_update_every("SEV1=10, sev3=off")
    assert chosen[Severity.SEV1] == 10
    assert chosen[Severity.SEV3] is None
    assert chosen[Severity.SEV2] == UPDATE_EVERY_MINUTES_DEFAULT[Severity.SEV2]


@pytest.mark.parametrize(
    ("text", "message"),
    [("SEV9=10", "not a severity"), ("SEV1", "needs a value"), ("SEV1=0", "whole minutes"),
     ("SEV2=ten", "whole minutes")],
)
def test_a_bad_cadence_setting_says_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_update_every(text)


def test_the_next_update_is_due_after_the_last_one_or_after_detection() -> None:
    every = {Severity.SEV1: 15, Severity.SEV4: None}
    first = cadence_due(Severity.SEV1, detected_at=NOW, last_published_at=None,
                        every_minutes=every)
    assert first is not None and first.due_at == NOW + timedelta(minutes=15)
    later = cadence_due(Severity.SEV1, detected_at=NOW,
                        last_published_at=NOW + timedelta(minutes=40), every_minutes=every)
    assert later is not None and later.due_at == NOW + timedelta(minutes=55)
    assert not later.overdue(NOW + timedelta(minutes=55))
    assert later.overdue(NOW + timedelta(minutes=55, seconds=1))
    assert cadence_due(Severity.SEV4, detected_at=NOW, last_published_at=None,
                       every_minutes=every) is None
