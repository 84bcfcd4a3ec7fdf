"""Detection in the assembled system: the service installed and running with the app, the
monitors reporting on /metrics, load shedding in front of the venue, the alert intake
opening incidents through the shipped rules, and everything stopped with the system."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from haltguard.app.config import ConfigError, load_config
from haltguard.app.system import System, start_system
from haltguard.detection import service as detection
from haltguard.detection.service import DetectionUnavailableError
from haltguard.gateway.context import venue_context_of
from haltguard.gateway.demo import set_up_demo
from haltguard.incidents.models import Incident

INTAKE_TOKEN = "intake-token-for-the-test-0123"
MONITOR_RUN_S_MAX = 5.0
ALERT = {
    "receiver": "haltguard",
    "status": "firing",
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "CustodyNodeLagging", "severity": "warning",
                   "component": "wallet"},
        "annotations": {"summary": "custody node is 40 blocks behind"},
        "startsAt": "2026-03-02T09:00:05Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "0c1d2e3f4a5b6c7d",
    }],
    "groupLabels": {"alertname": "CustodyNodeLagging"},
    "commonLabels": {}, "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093", "version": "4",
    "groupKey": "{}:{alertname=\"CustodyNodeLagging\"}", "truncatedAlerts": 0,
}


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    config = load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path / "data"), "venue.admin_token": "a" * 24,
        "detection.intake_tokens": (INTAKE_TOKEN,), "venue.order_capacity_per_s": 250,
        "venue.process": False,
    })
    started = start_system(config, demo=False)
    yield started
    started.stop()


def test_the_system_runs_detection_and_its_monitors_report_on_metrics(system: System) -> None:
    assert detection.installed() is system.detection
    assert system.monitors is not None
    names = {(m.component, m.name) for m in system.monitors.monitors}
    assert {("venue", "runtime"), ("journal", "fsync_latency"), ("database", "operations"),
            ("detection", "audit_feed"), ("detection", "withdrawal_feed")} <= names
    with TestClient(system.asgi_app(), base_url="https://testserver") as client:
        deadline = time.monotonic() + MONITOR_RUN_S_MAX
        while True:
            metrics = client.get("/metrics").text
            if 'haltguard_health_check_up{check="operations",component="database"} 1.0' in (
                metrics
            ):
                break
            assert time.monotonic() < deadline, metrics
            time.sleep(0.05)
        assert 'haltguard_health_check_up{check="runtime",component="venue"} 1.0' in metrics
        assert system.venue_app is not None
        assert venue_context_of(system.venue_app).load_guard.settings.order_capacity_per_s == 250


def test_the_market_detectors_see_every_command_the_venue_applies(system: System) -> None:
    assert system.market_feed is not None and system.runtime is not None
    seen_before = system.market_feed.commands_seen
    commands = set_up_demo(system.runtime)
    assert commands > 0
    assert system.market_feed.commands_seen - seen_before == commands


def test_an_alertmanager_alert_with_the_intake_token_opens_an_incident(system: System) -> None:
    with TestClient(system.asgi_app(), base_url="https://testserver") as client:
        refused = client.post("/api/detection/alerts/alertmanager", json=ALERT)
        assert refused.status_code == 401
        answer = client.post("/api/detection/alerts/alertmanager", json=ALERT,
                             headers={"Authorization": f"Bearer {INTAKE_TOKEN}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["signals"] == 1 and answer.json()["decisions"] >= 1
    assert system.detection is not None and system.detection.flush(timeout_s=5.0)
    with system.session_factory() as session:
        titles = [incident.title for incident in session.scalars(select(Incident))]
    assert titles == ["CustodyNodeLagging"]


def test_stopping_the_system_stops_detection_and_uninstalls_it(tmp_path: Path) -> None:
    config = load_config(None, environ={}, overrides={"data_dir": str(tmp_path / "data"),
                                                      "venue.process": False})
    system = start_system(config, demo=False)
    assert "monitor-scheduler" in {thread.name for thread in threading.enumerate()}
    system.stop()
    with pytest.raises(DetectionUnavailableError):
        detection.installed()
    running = {thread.name for thread in threading.enumerate()}
    assert "monitor-scheduler" not in running and "detection" not in running


def test_a_rules_file_that_does_not_exist_stops_the_start_naming_it(tmp_path: Path) -> None:
    config = load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path / "data"),
        "detection.rules_file": str(tmp_path / "missing.yaml")})
    with pytest.raises(ConfigError, match=r"detection\.rules_file .*missing\.yaml"):
        start_system(config, demo=False)
    assert "monitor-scheduler" not in {thread.name for thread in threading.enumerate()}


def test_a_short_intake_token_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"detection\.intake_tokens = <hidden>.*16 characters"):
        load_config(None, environ={"HALTGUARD_INTAKE_TOKENS": "short"},
                    overrides={"data_dir": str(tmp_path)})
