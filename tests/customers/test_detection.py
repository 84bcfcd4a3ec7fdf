"""Attacks on customers' accounts reach the shipped security rules, which freeze that one
account's withdrawals at the venue (issue 19)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import ManualClock
from haltguard.common.units import NS_PER_S
from haltguard.customers.detectors import CustomerDetectors, distance_km
from haltguard.customers.settings import CustomerSettings
from haltguard.detection.actions import ActionExecutor
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, load_rules_file
from haltguard.detection.service import DetectionService
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.runtime import VenueRuntime

T0 = 1_765_000_000 * NS_PER_S
TOKYO, LONDON = (35.68, 139.76), (51.51, -0.13)
SETTINGS = CustomerSettings(signature_failures_max=3, burst_accounts_min=3)


def test_refused_signatures_of_one_account_raise_one_signal_naming_it() -> None:
    detectors = CustomerDetectors(SETTINGS)
    raised = [detectors.signature_refused(7, "signature_mismatch", T0 + i * NS_PER_S)
              for i in range(6)]
    assert [len(signals) for signals in raised] == [0, 0, 0, 1, 0, 0]
    [signal] = raised[3]
    assert signal.name == "security.customer_signature_failures"
    assert signal.labels == {"account": "7"}
    assert detectors.signature_refused(8, "signature_mismatch", T0) == []


def test_tokyo_then_london_within_an_hour_is_impossible_travel() -> None:
    assert 9_000 < distance_km(TOKYO, LONDON) < 10_000
    detectors = CustomerDetectors(SETTINGS)
    assert detectors.seen_at(7, *TOKYO, T0) == []
    [signal] = detectors.seen_at(7, *LONDON, T0 + 3_600 * NS_PER_S)
    assert signal.name == "security.customer_impossible_travel"
    assert signal.labels == {"account": "7"}
    assert detectors.seen_at(8, *TOKYO, T0) == []
    assert detectors.seen_at(8, *LONDON, T0 + 20 * 3_600 * NS_PER_S) == []  # a flight


def test_new_keys_across_many_accounts_are_a_burst_but_one_account_is_not() -> None:
    detectors = CustomerDetectors(SETTINGS)
    assert all(detectors.key_created(7, T0 + i) == [] for i in range(10))
    assert detectors.key_created(8, T0 + 11) == []
    [burst] = detectors.key_created(9, T0 + 12)
    assert burst.name == "security.customer_key_burst" and burst.value == 3
    assert detectors.address_added(9, T0) == []


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[VenueRuntime]:
    venue_runtime = VenueRuntime(tmp_path / "venue").start()
    set_up_demo(venue_runtime)
    yield venue_runtime
    venue_runtime.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_shipped_rules_freeze_only_the_attacked_accounts_withdrawals(
        runtime: VenueRuntime, session_factory: sessionmaker[Session]) -> None:
    detection = DetectionService(rules=load_rules_file(DEFAULT_RULES_PATH))
    detection.set_executor(ActionExecutor(
        session_factory=session_factory, venue=InProcessVenueControl(runtime),
        clock=ManualClock(datetime(2026, 12, 8, tzinfo=UTC))))
    detection.start(tick_interval_s=0)
    try:
        detectors = CustomerDetectors(SETTINGS)
        for i in range(4):
            for signal in detectors.signature_refused(7, "signature_mismatch", T0 + i):
                detection.submit(signal)
        assert detection.flush(30)
    finally:
        detection.stop()
    assert runtime.read(lambda venue: venue.frozen_accounts) == frozenset({7})
    assert runtime.read(lambda venue: venue.frozen_assets) == frozenset()
