"""The HTTP adapter against the other venue when things go wrong: the engine answers 500,
stalls past the timeout, confirms a halt late or never, refuses a bad signature, or is not
there at all. A brake is never assumed: it is confirmed, or reported and retried."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from adapter_support import other_spec, other_venue
from othervenue import SUSPENDED, TRADING

from haltguard.adapters.control import AdapterReport, AdapterVenueControl
from haltguard.adapters.errors import AdapterUnreachableError, BrakeUnconfirmedError
from haltguard.venue.control import VenueControlError
from haltguard.venue.events import MarketStateChanged
from haltguard.venue.types import MarketState


def _halt(control: AdapterVenueControl) -> list[object]:
    return list(control.set_market_state("BTC-JPY", MarketState.HALTED, actor="test",
                                         reason="failure case", incident_id="INC-1"))


def test_a_halt_is_sent_in_the_venues_words_and_answered_in_the_contracts() -> None:
    with other_venue() as (venue, control):
        events = _halt(control)
        assert venue.status["BTCJPY"] == SUSPENDED
        assert events == [MarketStateChanged("BTC-JPY", MarketState.OPEN, MarketState.HALTED,
                                             "test", "failure case", "INC-1", True, 0)]
        assert control.market_states()["BTC-JPY"] is MarketState.HALTED


def test_answers_of_500_are_retried_with_the_same_key_and_the_halt_applies_once() -> None:
    with other_venue() as (venue, control):
        venue.faults.fail_next = 2
        _halt(control)
        assert venue.faults.fail_next == 0
        assert venue.faults.status_changes_applied == 1


def test_an_engine_that_keeps_answering_500_is_an_error_and_a_report_not_silence() -> None:
    reports: list[AdapterReport] = []
    with other_venue(on_report=reports.append) as (venue, control):
        venue.faults.fail_next = 100
        with pytest.raises(VenueControlError, match=r"answered 500.*tried 3 times"):
            _halt(control)
        assert [r.kind for r in reports] == ["unreachable"]
        assert venue.status["BTCJPY"] == TRADING
        venue.faults.fail_next = 0
        _halt(control)
        assert [r.kind for r in reports] == ["unreachable", "reachable"]


def test_an_engine_that_stalls_past_the_timeout_is_reported_unreachable() -> None:
    reports: list[AdapterReport] = []
    with other_venue(on_report=reports.append, request_s=0.2) as (venue, control):
        venue.faults.delay_s = control.spec.request_s + 0.3
        with pytest.raises(VenueControlError, match="ReadTimeout"):
            _halt(control)
        assert reports and reports[0].kind == "unreachable"


def test_a_halt_confirmed_late_but_within_the_confirm_time_succeeds() -> None:
    with other_venue() as (venue, control):
        venue.faults.apply_status_after_s = control.spec.confirm_s / 3
        began = time.monotonic()
        _halt(control)
        assert time.monotonic() - began >= control.spec.confirm_s / 3
        assert venue.status["BTCJPY"] == SUSPENDED


def test_a_halt_never_shown_is_unconfirmed_then_retried_until_it_shows() -> None:
    reports: list[AdapterReport] = []
    with other_venue(on_report=reports.append) as (venue, control):
        venue.faults.ignore_status_changes = True
        with pytest.raises(BrakeUnconfirmedError, match="NOT assumed applied"):
            _halt(control)
        assert control.unconfirmed() == [("set_market_state", "BTC-JPY")]
        assert [r.kind for r in reports] == ["brake_unconfirmed"]
        venue.faults.ignore_status_changes = False  # the engine comes right
        deadline = time.monotonic() + 5
        while control.unconfirmed() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert control.unconfirmed() == []
        assert [r.kind for r in reports] == ["brake_unconfirmed", "brake_confirmed"]
        assert venue.status["BTCJPY"] == SUSPENDED


def test_a_wrong_signing_secret_is_refused_by_the_venue_and_not_retried() -> None:
    with other_venue(signing_secret="not-the-secret") as (venue, control):
        with pytest.raises(VenueControlError, match=r"refused .* 401"):
            _halt(control)
        assert venue.faults.status_changes_applied == 0


def test_an_unreachable_venue_at_start_names_the_line_of_its_url(tmp_path: Path) -> None:
    spec = other_spec("http://127.0.0.1:9")
    with AdapterVenueControl(spec) as control, pytest.raises(AdapterUnreachableError) as gone:
        control.check_reachable()
    assert "othervenue.yaml:" in gone.value.message
    assert "(operations.health.url)" in gone.value.message
    assert "cannot reach the venue at http://127.0.0.1:9/ops/ping" in gone.value.message


def test_a_repeated_idempotency_key_is_not_applied_twice() -> None:
    with other_venue() as (venue, control):
        fields = {"market": "BTCJPY", "state": "SUSPENDED", "actor": "t", "reason": "r",
                  "incident_id": "", "cancels_allowed": True, "auction_seconds": 0.0,
                  "auction_ms": 0}
        control.call("set_market_state", fields, key="same-key")
        control.call("set_market_state", fields, key="same-key")
        assert venue.faults.status_changes_applied == 1
