"""Protective actions through the real in-process venue, on SQLite and PostgreSQL: each one
reaches the venue with the incident's ref and lands in the timeline and the audit chain."""

from __future__ import annotations

from datetime import timedelta

import pytest
from incident_helpers import open_incident
from sqlalchemy.orm import Session

from haltguard.gateway.control import InProcessVenueControl
from haltguard.incidents import flows, service
from haltguard.incidents.errors import IncidentError
from haltguard.incidents.models import (
    ApprovalStatus,
    HaltRequest,
    HoldKind,
    KillSwitchRequest,
    MarketStateRequest,
    ResumePhaseSpec,
    ResumeRequest,
    TimelineKind,
    WithdrawalsRequest,
)
from haltguard.incidents.rules import IncidentStatus, Severity
from haltguard.responders.service import ManualClock
from haltguard.security import audit
from haltguard.venue.types import MarketState

OPEN, HALTED = MarketState.OPEN, MarketState.HALTED


def _halt(session: Session, venue: InProcessVenueControl, incident: object, *markets: str,
          clock: ManualClock, actor: str = "alice") -> None:
    outcome = flows.halt_markets(
        session, venue, incident, HaltRequest(markets=list(markets), reason="DB unreachable"),  # type: ignore[arg-type]
        actor=actor, now=clock.now(),
    )
    assert all(result.ok for result in outcome.results), outcome
    session.commit()


def _resume_now(*markets: str) -> ResumeRequest:
    """The usual plan with an opening auction of zero seconds, so tests need not wait."""
    return ResumeRequest(markets=list(markets), reason="fixed", auction_seconds=0)


def _resolve(session: Session, venue: InProcessVenueControl, incident: object,
             clock: ManualClock) -> None:
    service.transition(session, incident, IncidentStatus.RESOLVED, actor="alice",  # type: ignore[arg-type]
                       now=clock.now(), market_states=venue.market_states())


def test_halting_a_market_stops_it_at_the_venue_and_records_it_everywhere(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock)
    _halt(session, venue, incident, "BTC-JPY", clock=clock)
    assert venue.market_states()["BTC-JPY"] == HALTED
    assert venue.market_states()["ETH-JPY"] == OPEN
    entry = service.timeline(session, incident.id)[-1]
    assert entry.kind == TimelineKind.MARKET_ACTION
    assert entry.message == "halt BTC-JPY: BTC-JPY open -> halted"
    assert entry.details["reason"] == "DB unreachable"
    assert [(h.kind, h.target) for h in service.active_holds(session, incident.id)] == [
        (HoldKind.MARKET, "BTC-JPY")
    ]
    assert [link.event_type for link in service.venue_events(session, incident.id)] == [
        "market_state_changed"
    ]
    entries, _ = audit.list_entries(session, action="market.halt")
    assert [(e.actor, e.target) for e in entries] == [("operator:alice", incident.ref)]
    assert audit.verify(session).ok


def test_an_unknown_market_is_refused_before_anything_happens(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock)
    with pytest.raises(IncidentError, match="no market DOGE-JPY; it lists: BTC-JPY") as caught:
        flows.halt_markets(session, venue, incident,
                           HaltRequest(markets=["BTC-JPY", "DOGE-JPY"], reason="x"),
                           actor="alice", now=clock.now())
    assert caught.value.code == "unknown_market"
    assert venue.market_states()["BTC-JPY"] == OPEN


def test_cancel_only_tightens_an_open_market_but_cannot_loosen_a_halted_one(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock)
    flows.set_market_state(session, venue, incident, MarketStateRequest(
        markets=["ETH-JPY"], state=MarketState.CANCEL_ONLY, reason="spike"),
        actor="carol", now=clock.now())
    assert venue.market_states()["ETH-JPY"] == MarketState.CANCEL_ONLY
    _halt(session, venue, incident, "BTC-JPY", clock=clock)
    with pytest.raises(IncidentError, match="BTC-JPY take no orders now") as caught:
        flows.set_market_state(session, venue, incident, MarketStateRequest(
            markets=["BTC-JPY"], state=MarketState.POST_ONLY, reason="reopen quietly"),
            actor="carol", now=clock.now())
    assert caught.value.code == "use_resume"
    with pytest.raises(IncidentError, match="not a protective state"):
        flows.set_market_state(session, venue, incident, MarketStateRequest(
            markets=["ETH-JPY"], state=OPEN, reason="x"), actor="carol", now=clock.now())
    assert venue.market_states()["BTC-JPY"] == HALTED


def test_resolving_waits_until_every_market_it_halted_is_open_again(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock, severity=Severity.SEV3)
    _halt(session, venue, incident, "BTC-JPY", "XRP-JPY", clock=clock)
    with pytest.raises(IncidentError, match=r"market BTC-JPY is halted.*market XRP-JPY") as caught:
        _resolve(session, venue, incident, clock)
    assert caught.value.code == "holds_outstanding"
    outcome = flows.resume_markets(session, venue, incident,
                                   _resume_now("BTC-JPY", "XRP-JPY"),
                                   actor="carol", now=clock.now())
    assert outcome.approval is None and all(result.ok for result in outcome.results)
    assert venue.market_states()["BTC-JPY"] == OPEN
    _resolve(session, venue, incident, clock)
    session.commit()
    assert incident.status == IncidentStatus.RESOLVED
    assert service.active_holds(session, incident.id) == []


def test_after_a_sev1_resuming_needs_a_different_operator_to_approve(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock, severity=Severity.SEV1)
    _halt(session, venue, incident, "BTC-JPY", clock=clock)
    outcome = flows.resume_markets(session, venue, incident,
                                   _resume_now("BTC-JPY"),
                                   actor="alice", now=clock.now())
    session.commit()
    assert outcome.approval is not None and outcome.approval.status == ApprovalStatus.PENDING
    assert outcome.results == []
    assert venue.market_states()["BTC-JPY"] == HALTED
    approval = flows.get_approval(session, outcome.approval.id)
    with pytest.raises(IncidentError, match="a different operator must approve") as caught:
        flows.approve(session, venue, approval, approver="alice", now=clock.now())
    assert caught.value.code == "second_operator_required"
    clock.advance(timedelta(minutes=2))
    done = flows.approve(session, venue, approval, approver="bob", now=clock.now())
    session.commit()
    assert [result.ok for result in done.results] == [True]
    assert venue.market_states()["BTC-JPY"] == OPEN
    assert (approval.status, approval.decided_by) == (ApprovalStatus.EXECUTED, "bob")
    kinds = [entry.kind for entry in service.timeline(session, incident.id)]
    assert kinds[-3:] == [TimelineKind.APPROVAL_REQUESTED, TimelineKind.RESUME,
                          TimelineKind.APPROVAL_DECIDED]
    resume_entry = service.timeline(session, incident.id)[-2]
    assert resume_entry.actor == "bob"
    with pytest.raises(IncidentError, match="already executed"):
        flows.approve(session, venue, approval, approver="carol", now=clock.now())


def test_a_downgraded_sev1_still_needs_four_eyes_to_resume(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock, severity=Severity.SEV1)
    incident.severity = Severity.SEV3
    _halt(session, venue, incident, "ETH-JPY", clock=clock)
    outcome = flows.resume_markets(session, venue, incident,
                                   ResumeRequest(markets=["ETH-JPY"], reason="fixed"),
                                   actor="alice", now=clock.now())
    assert outcome.approval is not None


def test_releasing_the_kill_switch_always_needs_a_second_operator(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock, severity=Severity.SEV3)
    flows.engage_kill_switch(session, venue, incident, KillSwitchRequest(reason="intrusion"),
                             actor="alice", now=clock.now())
    session.commit()
    assert set(venue.market_states().values()) == {HALTED}
    held = {(hold.kind, hold.target) for hold in service.active_holds(session, incident.id)}
    assert (HoldKind.KILL_SWITCH, "") in held and (HoldKind.MARKET, "XRP-JPY") in held
    request = flows.release_kill_switch(session, incident, KillSwitchRequest(reason="contained"),
                                        actor="alice", now=clock.now())
    assert request.approval is not None
    approval = flows.get_approval(session, request.approval.id)
    flows.approve(session, venue, approval, approver="bob", now=clock.now())
    session.commit()
    # Releasing reopens nothing: each market waits for a person to resume it.
    assert set(venue.market_states().values()) == {HALTED}
    assert (HoldKind.KILL_SWITCH, "") not in {
        (hold.kind, hold.target) for hold in service.active_holds(session, incident.id)
    }


def test_a_rejected_approval_does_nothing(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock, severity=Severity.SEV1)
    _halt(session, venue, incident, "BTC-JPY", clock=clock)
    outcome = flows.resume_markets(session, venue, incident,
                                   ResumeRequest(markets=["BTC-JPY"], reason="fixed?"),
                                   actor="alice", now=clock.now())
    assert outcome.approval is not None
    approval = flows.get_approval(session, outcome.approval.id)
    flows.reject(session, approval, approver="bob", now=clock.now(), note="not yet")
    session.commit()
    assert approval.status == ApprovalStatus.REJECTED
    assert venue.market_states()["BTC-JPY"] == HALTED
    with pytest.raises(IncidentError, match="already rejected"):
        flows.approve(session, venue, approval, approver="carol", now=clock.now())


def test_frozen_withdrawals_block_resolution_until_unfrozen(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock)
    request = WithdrawalsRequest(asset="btc", reason="hot wallet suspicious")
    flows.freeze_withdrawals(session, venue, incident, request, actor="alice", now=clock.now())
    with pytest.raises(IncidentError, match="withdrawals of BTC are frozen"):
        _resolve(session, venue, incident, clock)
    flows.freeze_withdrawals(session, venue, incident, request, actor="carol", now=clock.now(),
                             frozen=False)
    _resolve(session, venue, incident, clock)
    assert incident.status == IncidentStatus.RESOLVED


def test_a_market_handed_to_another_incident_stops_blocking_the_first(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    first = open_incident(session, clock)
    second = open_incident(session, clock)
    _halt(session, venue, first, "BTC-JPY", clock=clock)
    service.hand_off(session, first, "BTC-JPY", second, actor="alice", now=clock.now(),
                     note="the network incident owns the halt now")
    _resolve(session, venue, first, clock)
    assert first.status == IncidentStatus.RESOLVED
    with pytest.raises(IncidentError, match="market BTC-JPY is halted"):
        _resolve(session, venue, second, clock)
    assert [e.kind for e in service.timeline(session, second.id)][-1] == TimelineKind.HANDOFF


def test_a_resume_plan_reopens_through_its_phases(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock)
    _halt(session, venue, incident, "ETH-JPY", clock=clock)
    plan = ResumeRequest(markets=["ETH-JPY"], reason="staged reopening", phases=[
        ResumePhaseSpec(state=MarketState.CANCEL_ONLY, min_seconds=600),
        ResumePhaseSpec(state=MarketState.AUCTION, min_seconds=0),
        ResumePhaseSpec(state=OPEN, min_seconds=0),
    ])
    outcome = flows.resume_markets(session, venue, incident, plan, actor="carol",
                                   now=clock.now())
    assert outcome.results[0].ok, outcome
    expected = "resume plan started for ETH-JPY: cancel_only -> auction -> open"
    assert expected in outcome.results[0].detail
    assert venue.market_states()["ETH-JPY"] == MarketState.CANCEL_ONLY
    with pytest.raises(IncidentError, match="ETH-JPY is cancel_only"):
        _resolve(session, venue, incident, clock)


def test_a_venue_refusal_is_kept_in_the_timeline_and_reported(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock)
    outcome = flows.freeze_withdrawals(session, venue, incident,
                                       WithdrawalsRequest(asset="DOGE", reason="x"),
                                       actor="alice", now=clock.now())
    session.commit()
    assert [result.ok for result in outcome.results] == [False]
    entry = service.timeline(session, incident.id)[-1]
    assert "refused by the venue" in entry.message
    assert entry.details["ok"] is False
    assert service.active_holds(session, incident.id) == []


def test_protective_actions_need_an_active_incident(
    session: Session, clock: ManualClock, venue: InProcessVenueControl
) -> None:
    incident = open_incident(session, clock)
    _resolve(session, venue, incident, clock)
    with pytest.raises(IncidentError, match="protective actions need an active incident"):
        flows.halt_markets(session, venue, incident, HaltRequest(markets=["BTC-JPY"], reason="x"),
                           actor="alice", now=clock.now())
