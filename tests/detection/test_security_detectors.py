"""Security detectors (chapter 1.2): each fires on its attack pattern, stays quiet on a normal
day, and is fed from the real sources: the login route and its audit chain, the venue's
journal, the request limiter and the operations API."""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.config import load_config
from haltguard.app.operations import create_app
from haltguard.app.venue_app import create_venue_app
from haltguard.common.network import parse_networks
from haltguard.common.units import NS_PER_S
from haltguard.detection import service as detection
from haltguard.detection.decisions import ActionKind
from haltguard.detection.monitors import MonitorScheduler
from haltguard.detection.policies import PolicyEngine
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, load_rules_file, load_rules_text
from haltguard.detection.security_detectors import (
    AuditSecurityFeed,
    FailedLoginDetector,
    LoginBlockEnforcer,
    LoginSettings,
    OperatorNetworkDetector,
    RequestFloodDetector,
    WithdrawalDetector,
    WithdrawalFeed,
    WithdrawalSettings,
    add_security_feeds,
)
from haltguard.detection.service import DetectionService
from haltguard.detection.signals import Signal
from haltguard.gateway.context import venue_context_of
from haltguard.gateway.limits import FloodSettings, SheddingSettings
from haltguard.gateway.runtime import VenueRuntime
from haltguard.security import totp
from haltguard.security.dependencies import login_throttle_of
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.venue.commands import Deposit, Withdraw
from haltguard.venue.workload import setup_commands
from haltguard.web.settings import Settings

T0 = 1_767_225_600 * NS_PER_S
MINUTE = 60 * NS_PER_S
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW_NS = int(NOW.timestamp()) * NS_PER_S
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
NETWORKS = parse_networks("10.20.0.0/16")


class FixedClock:
    def now(self) -> datetime:
        return NOW


def names(signals: list[Signal]) -> list[tuple[str, bool]]:
    return [(s.name, s.resolved) for s in signals]


# --- failed logins -------------------------------------------------------------------


def test_a_burst_of_failed_logins_on_one_account_fires_once_then_resolves() -> None:
    detector = FailedLoginDetector(LoginSettings(window_s=300, account_failures_max=5))
    fired = [s for i in range(8)
             for s in detector.login_failed("alice", f"198.51.100.{i}", T0 + i * NS_PER_S)]
    assert names(fired) == [("security.failed_logins", False)]
    assert fired[0].labels == {"account": "alice"} and fired[0].value == 5
    assert detector.expire(T0 + 4 * MINUTE) == []  # still 5+ in the window
    resolved = detector.expire(T0 + 6 * MINUTE)
    assert names(resolved) == [("security.failed_logins", True)]


def test_many_accounts_from_one_address_is_credential_stuffing() -> None:
    detector = FailedLoginDetector(LoginSettings(address_accounts_max=5,
                                                 address_failures_max=50))
    fired = [s for i in range(6)
             for s in detector.login_failed(f"user{i}", "203.0.113.9", T0 + i * NS_PER_S)]
    assert names(fired) == [("security.credential_stuffing", False)]
    assert fired[0].labels == {"source_address": "203.0.113.9", "client": "address:203.0.113.9"}
    assert fired[0].value == 5
    assert fired[0].details["accounts"] == "user0,user1,user2,user3,user4"


def test_many_failures_from_one_address_fire_per_address() -> None:
    detector = FailedLoginDetector(LoginSettings(address_failures_max=20, account_failures_max=50,
                                                 address_accounts_max=50))
    fired = [s for i in range(25)
             for s in detector.login_failed(f"u{i % 3}", "192.0.2.7", T0 + i * NS_PER_S)]
    assert names(fired) == [("security.failed_logins", False)]
    assert fired[0].labels["source_address"] == "192.0.2.7"


@pytest.fixture
def operations(engine: Engine) -> FastAPI:
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     clock=FixedClock(), security_settings=fast_test_settings(),
                     escalation_interval_s=None)
    return app


def fail_login(app: FastAPI, username: str, address: str) -> int:
    with TestClient(app, client=(address, 40_000)) as client:
        response = client.post("/api/auth/login", json={
            "username": username, "password": "not the password", "totp_code": "000000"})
    return int(response.status_code)


@SQLITE_ONLY
def test_the_audit_feed_sees_real_failed_logins_and_credential_stuffing(
    operations: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    for name in ("alice", "bob"):
        provision_operator(session_factory, Role.RESPONDER, username=name, now=NOW)
    fail_login(operations, "alice", "10.20.1.5")  # history before the feed starts: ignored
    signals: list[Signal] = []
    feed = AuditSecurityFeed(
        session_factory, signals.append,
        logins=FailedLoginDetector(LoginSettings(account_failures_max=3,
                                                 address_accounts_max=4)),
        clock=lambda: NOW_NS,
    ).start_at_end()
    statuses = [fail_login(operations, "bob", "10.20.1.6") for _ in range(3)]
    statuses += [fail_login(operations, f"guess{i}", "203.0.113.50") for i in range(4)]
    result = feed.poll()
    assert set(statuses) == {401}
    assert result.ok and "read 7 audit entries" in result.detail
    assert [(s.name, s.labels) for s in signals] == [
        ("security.failed_logins", {"account": "bob"}),
        ("security.credential_stuffing",
         {"source_address": "203.0.113.50", "client": "address:203.0.113.50"}),
    ]
    assert feed.poll().detail.startswith("read 0 audit entries")


@SQLITE_ONLY
def test_the_audit_feed_reports_operators_refused_by_the_network_allow_list(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     clock=FixedClock(), escalation_interval_s=None,
                     security_settings=fast_test_settings(allowed_networks=NETWORKS))
    signals: list[Signal] = []
    feed = AuditSecurityFeed(session_factory, signals.append,
                             clock=lambda: NOW_NS).start_at_end()
    assert fail_login(app, "alice", "198.51.100.23") == 403
    feed.poll()
    [signal] = signals
    assert signal.name == "security.operator_outside_network"
    assert signal.labels["source_address"] == "198.51.100.23"
    assert (signal.details["refused"], signal.details["action"]) == ("true", "auth.login")


# --- operators outside the allowed networks ------------------------------------------


def test_operator_actions_outside_the_allow_list_are_reported_once_per_period() -> None:
    detector = OperatorNetworkDetector(NETWORKS, repeat_after_s=600)
    assert detector.operator_action("operator:alice", "10.20.3.4", "POST /halt", T0) is None
    first = detector.operator_action("operator:alice", "198.51.100.7", "POST /halt", T0)
    again = detector.operator_action("operator:alice", "198.51.100.7", "GET /x", T0 + MINUTE)
    later = detector.operator_action("operator:alice", "198.51.100.7", "GET /x", T0 + 11 * MINUTE)
    assert first is not None and first.labels == {"actor": "operator:alice",
                                                  "source_address": "198.51.100.7"}
    assert again is None and later is not None
    assert OperatorNetworkDetector(()).operator_action("operator:a", "1.2.3.4", "x", T0) is None


def test_the_detection_allow_list_comes_from_its_own_setting_or_the_security_one() -> None:
    own = load_config(None, environ={"HALTGUARD_DETECTION_OPERATOR_NETWORKS": "10.1.0.0/16",
                                     "HALTGUARD_OPERATOR_NETWORKS": "10.0.0.0/8"})
    assert own.detection_allowed_networks == (ipaddress.ip_network("10.1.0.0/16"),)
    assert load_config(None, environ={"HALTGUARD_OPERATOR_NETWORKS": "10.0.0.0/8"}
                       ).detection_allowed_networks == (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(ValueError, match=r"HALTGUARD_DETECTION_OPERATOR_NETWORKS.*'ten' is not"):
        load_config(None, environ={"HALTGUARD_DETECTION_OPERATOR_NETWORKS": "ten"})


WATCH_RULES = """
version: 1
rules:
  - id: operator-off-network
    signal: security.operator_outside_network
    when: ">= 1"
    classification: unauthorized_access
    severity: SEV2
    title: "{actor} acted from {source_address}"
    group_by: [actor, source_address]
    actions: [open_or_update_incident]
"""


@pytest.fixture
def installed_detection() -> Iterator[DetectionService]:
    service = DetectionService(rules=load_rules_text(WATCH_RULES, "watch.yaml"))
    detection.install(service)
    yield service
    detection.uninstall()


@SQLITE_ONLY
def test_an_operator_acting_from_outside_the_detection_allow_list_is_reported(
    engine: Engine, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
    installed_detection: DetectionService,
) -> None:
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     clock=FixedClock(), escalation_interval_s=None,
                     security_settings=fast_test_settings(),
                     operator_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    operator = provision_operator(session_factory, Role.RESPONDER, username="carol", now=NOW)
    with TestClient(app, client=("10.20.9.9", 1)) as inside:
        assert inside.get("/api/incidents", headers=operator.headers).status_code == 200
    with TestClient(app, client=("198.51.100.80", 1)) as outside:
        assert outside.get("/api/incidents", headers=operator.headers).status_code == 200
        outside.get("/api/incidents", headers=operator.headers)
    deadline = time.monotonic() + 5
    while not installed_detection.recent_decisions():  # delivered by the outbox's thread
        assert time.monotonic() < deadline
        time.sleep(0.01)
    [decision] = installed_detection.recent_decisions()
    assert decision.title == "operator:carol acted from 198.51.100.80"
    assert decision.signal.details["action"] == "GET /api/incidents"


# --- request floods ------------------------------------------------------------------


def test_a_flooding_address_is_limited_then_blocked_and_the_block_expires() -> None:
    flood = RequestFloodDetector(FloodSettings(rate_per_s=10, burst=10, refusals_to_block=5,
                                               window_s=10, block_s=30, exempt_networks=()))
    verdicts = [flood.check("address:198.51.100.1", "198.51.100.1", T0) for _ in range(16)]
    codes = [v.admission.code for v in verdicts]
    assert codes == [""] * 10 + ["rate_limited"] * 5 + ["client_blocked"]
    blocked = [v.signal for v in verdicts if v.signal is not None]
    assert [(s.name, s.resolved) for s in blocked] == [("security.request_flood", False)]
    assert verdicts[-1].admission.retry_after_s == 30
    assert flood.expire(T0 + 29 * NS_PER_S) == []
    assert names(flood.expire(T0 + 30 * NS_PER_S)) == [("security.request_flood", True)]
    after = flood.check("address:198.51.100.1", "198.51.100.1", T0 + 30 * NS_PER_S)
    assert after.admission.admitted


def test_the_gateway_address_is_exempt_but_api_keys_behind_it_are_not() -> None:
    flood = RequestFloodDetector(FloodSettings(rate_per_s=1, burst=1))
    assert all(flood.check("address:10.0.0.2", "10.0.0.2", T0).admission.admitted
               for _ in range(100))
    assert not all(flood.check("api_key:abc", "10.0.0.2", T0).admission.admitted
                   for _ in range(3))


FLOOD_BLOCK_RULES = """
version: 1
rules:
  - id: stuffing-block
    signal: security.credential_stuffing
    when: ">= 5"
    classification: unauthorized_access
    severity: SEV3
    title: "credential stuffing from {source_address}"
    group_by: [source_address, client]
    actions:
      - block_client: {client: "{client}", duration_s: 600}
"""


def test_a_rule_blocks_a_stuffing_address_at_the_venue_gateway(tmp_path: Path) -> None:
    runtime = VenueRuntime(tmp_path / "venue").start()
    try:
        app = create_venue_app(runtime, "token", load_shedding=SheddingSettings())
        service = DetectionService(rules=load_rules_text(FLOOD_BLOCK_RULES, "block.yaml"))
        venue_context_of(app).load_guard.attach(service)
        logins = FailedLoginDetector()
        for i in range(5):
            for signal in logins.login_failed(f"user{i}", "testclient", T0 + i):
                service.submit(signal)
        with TestClient(app) as client:
            refused = client.get("/v1/markets")
            health = client.get("/v1/health")
    finally:
        runtime.stop()
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "client_blocked"
    assert "rule stuffing-block" in refused.json()["error"]["message"]
    assert health.status_code == 200


# --- withdrawals ---------------------------------------------------------------------


def test_an_amount_far_above_the_accounts_history_is_unusual() -> None:
    detector = WithdrawalDetector(WithdrawalSettings(history_min=5, amount_multiple_max=10))
    for i in range(5):
        assert detector.withdrawn(7, "BTC", 1_000_000 + i, "bc1home", T0 + i * 3_600 * NS_PER_S) \
            == []
    assert detector.withdrawn(7, "BTC", 10_000_000, "bc1home", T0 + 6 * 3_600 * NS_PER_S) == []
    [signal] = detector.withdrawn(7, "BTC", 50_000_000, "bc1home", T0 + 7 * 3_600 * NS_PER_S)
    assert signal.name == "security.withdrawal_unusual_amount"
    assert signal.labels == {"account": "7", "asset": "BTC"}
    assert signal.details["median_minor"] == "1000002"


def test_a_destination_the_account_never_used_is_reported() -> None:
    detector = WithdrawalDetector()
    assert detector.withdrawn(3, "ETH", 100, "0xfirst", T0) == []  # no history: nothing known
    assert detector.withdrawn(3, "ETH", 100, "0xfirst", T0 + 3_600 * NS_PER_S) == []
    [signal] = detector.withdrawn(3, "ETH", 100, "0xattacker", T0 + 7_200 * NS_PER_S)
    assert signal.name == "security.withdrawal_new_destination"
    assert signal.details["destination"] == "0xattacker"


def test_many_withdrawals_in_a_short_time_fire_once() -> None:
    detector = WithdrawalDetector(WithdrawalSettings(burst_max=3, burst_window_s=600))
    fired = [s for i in range(6)
             for s in detector.withdrawn(9, "JPY", 1_000, "bank", T0 + i * NS_PER_S)
             if s.name == "security.withdrawal_burst"]
    assert [s.value for s in fired] == [4]


def test_hot_wallet_outflow_above_its_rate_fires_and_resolves() -> None:
    detector = WithdrawalDetector(WithdrawalSettings(hot_wallet_outflow_max=(("BTC", 100),),
                                                     hot_wallet_window_s=3_600))
    outflow = [s for account in range(1, 8)
               for s in detector.withdrawn(account, "BTC", 20, "d", T0 + account * NS_PER_S)]
    assert [(s.name, int(s.value)) for s in outflow] == [("security.hot_wallet_outflow", 120)]
    assert detector.expire(T0 + 3_600 * NS_PER_S) == []
    assert names(detector.expire(T0 + 3_604 * NS_PER_S)) == [("security.hot_wallet_outflow",
                                                              True)]


def test_the_withdrawal_feed_reads_real_withdrawn_events_from_the_journal(tmp_path: Path) -> None:
    runtime = VenueRuntime(tmp_path / "venue").start()
    try:
        for command in setup_commands(accounts=3):
            runtime.submit_and_wait(command)
        for n in range(3):
            runtime.submit_and_wait(Withdraw(1, "JPY", 1_000 + n, "bank-a", f"w{n}"))
        learned_through = runtime.status().last_seq
        signals: list[Signal] = []
        feed = WithdrawalFeed(tmp_path / "venue", signals.append,
                              detector=WithdrawalDetector(WithdrawalSettings(history_min=3)),
                              learn_through_seq=learned_through)
        assert feed.poll().ok and signals == []
        runtime.submit_and_wait(Deposit(1, "JPY", 10**9))
        runtime.submit_and_wait(Withdraw(1, "JPY", 900_000, "bank-b", "big"))
        result = feed.poll()
        feed.close()
    finally:
        runtime.stop()
    assert "1 withdrawals" in result.detail
    assert sorted(s.name for s in signals) == ["security.withdrawal_new_destination",
                                               "security.withdrawal_unusual_amount"]


@SQLITE_ONLY
def test_the_security_feeds_run_as_monitors_and_report_a_suspicious_withdrawal(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    runtime = VenueRuntime(tmp_path / "venue").start()
    try:
        for command in setup_commands(accounts=2):
            runtime.submit_and_wait(command)
        runtime.submit_and_wait(Withdraw(2, "JPY", 500, "bank-home", "usual"))
        signals: list[Signal] = []
        scheduler = MonitorScheduler(signals.append)
        monitors = add_security_feeds(
            scheduler, signals.append, session_factory=session_factory,
            venue_data_dir=tmp_path / "venue", venue_last_seq=runtime.status().last_seq,
            interval_ms=20,
        )
        with scheduler:
            wait_for_runs = time.monotonic() + 5
            while not all(m.runs >= 2 for m in monitors):
                assert time.monotonic() < wait_for_runs
                time.sleep(0.01)
            runtime.submit_and_wait(Withdraw(2, "JPY", 500, "bank-elsewhere", "odd"))
            deadline = time.monotonic() + 5
            while not signals:
                assert time.monotonic() < deadline
                time.sleep(0.01)
    finally:
        runtime.stop()
    assert [m.name for m in monitors] == ["audit_feed", "withdrawal_feed"]
    assert all(m.healthy for m in monitors)
    assert [(s.name, s.labels) for s in signals] == [
        ("security.withdrawal_new_destination", {"account": "2", "asset": "JPY"})]


# --- a normal day --------------------------------------------------------------------


def test_a_normal_day_raises_no_security_signal() -> None:
    """A day of ordinary activity: operators mistyping now and then, customers withdrawing
    their usual amounts to their usual addresses, API clients under their limits."""
    rng = random.Random(7)
    logins = FailedLoginDetector()
    withdrawals = WithdrawalDetector(WithdrawalSettings(
        hot_wallet_outflow_max=(("BTC", 2 * 10**9), ("JPY", 2 * 10**9))))
    flood = RequestFloodDetector(FloodSettings(exempt_networks=()))
    signals: list[Signal] = []
    day_ns = 24 * 3_600 * NS_PER_S
    history, today = [], []
    for account in range(1, 201):
        asset = "BTC" if account % 2 else "JPY"
        usual = rng.randint(10_000, 10_000_000)
        homes = [f"dest-{account}-{k}" for k in range(rng.randint(1, 2))]
        for n in range(30):  # the month before: learnt, not judged
            history.append((T0 - (30 - n) * day_ns + account, account, asset,
                            int(usual * rng.uniform(0.5, 2.0)), homes[n % len(homes)]))
        for n in range(8):
            today.append((T0 + n * day_ns // 8 + rng.randint(0, day_ns // 16), account, asset,
                          int(usual * rng.uniform(0.5, 2.0)), homes[n % len(homes)]))
    for moment, account, asset, amount, destination in sorted(history):
        withdrawals.withdrawn(account, asset, amount, destination, moment, learn_only=True)
    for moment, account, asset, amount, destination in sorted(today):
        signals += withdrawals.withdrawn(account, asset, amount, destination, moment)
    for operator in range(40):
        address = f"10.20.{operator // 10}.{operator}"
        for typo in range(rng.randint(0, 2)):
            signals += logins.login_failed(f"op{operator}", address,
                                           T0 + rng.randint(0, day_ns) + typo)
    for second in range(600):
        for key in range(20):
            signals += [v.signal for v in [flood.check(f"api_key:k{key}", "198.51.100.9",
                                                       T0 + second * NS_PER_S + key)]
                        if v.signal is not None]
    signals += logins.expire(T0 + day_ns) + withdrawals.expire(T0 + day_ns)
    assert signals == []


# --- the shipped rules against what the detectors emit -------------------------------


def shipped_rules() -> PolicyEngine:
    return PolicyEngine(load_rules_file(DEFAULT_RULES_PATH))


def test_the_shipped_stuffing_rule_blocks_the_client_the_login_detector_names() -> None:
    engine = shipped_rules()
    logins = FailedLoginDetector(LoginSettings(address_accounts_max=5))
    decisions = []
    for i in range(5):
        for signal in logins.login_failed(f"guess{i}", "203.0.113.9", T0 + i):
            decisions += engine.evaluate(signal)
    [fired] = [d for d in decisions if d.rule_id == "credential-stuffing"]
    assert fired.title == "credential stuffing from address:203.0.113.9"
    [block] = [a for a in fired.actions if a.kind is ActionKind.BLOCK_LOGIN]
    assert (block.target, block.params["duration_s"]) == ("address:203.0.113.9", "3600")
    assert not [a for a in fired.actions if a.kind is ActionKind.BLOCK_CLIENT], (
        "failed operator logins must never block customers' trading")


@SQLITE_ONLY
def test_credential_stuffing_blocks_the_login_route_and_leaves_trading_alone(
    tmp_path: Path, engine: Engine, session_factory: sessionmaker[Session],
) -> None:
    runtime = VenueRuntime(tmp_path / "venue").start()
    try:
        venue = create_venue_app(runtime, "token", load_shedding=SheddingSettings())
        operations = create_app(Settings(database_url="unused", migrate_on_start=False),
                                engine=engine, security_settings=fast_test_settings(),
                                escalation_interval_s=None)
        service = DetectionService(rules=load_rules_file(DEFAULT_RULES_PATH))
        venue_context_of(venue).load_guard.attach(service)
        LoginBlockEnforcer(login_throttle_of(operations)).attach(service)
        logins = FailedLoginDetector()
        for i in range(5):
            for signal in logins.login_failed(f"user{i}", "203.0.113.9", T0 + i):
                service.submit(signal)
        with TestClient(venue, client=("203.0.113.9", 50000)) as customer:
            trading = customer.get("/v1/markets")
        with TestClient(operations, base_url="https://testserver",
                        client=("203.0.113.9", 50000)) as attacker:
            login = attacker.post("/api/auth/login", json={
                "username": "user9", "password": "Winter2026!", "totp_code": "000000"})
        with TestClient(operations, base_url="https://testserver",
                        client=("198.51.100.20", 50000)) as elsewhere:
            other = elsewhere.post("/api/auth/login", json={
                "username": "user9", "password": "Winter2026!", "totp_code": "000000"})
    finally:
        runtime.stop()
    assert trading.status_code == 200
    assert login.status_code == 429 and login.json()["error"]["code"] == "login_throttled"
    assert "blocked" in login.json()["error"]["message"]
    assert other.status_code == 401


def test_the_shipped_rules_freeze_an_asset_after_three_withdrawals_to_new_destinations() -> None:
    engine = shipped_rules()
    detector = WithdrawalDetector()
    decisions = []
    for account in (11, 12, 13):
        detector.withdrawn(account, "BTC", 10_000, f"home-{account}", T0, learn_only=True)
    for n, account in enumerate((11, 12, 13)):
        for signal in detector.withdrawn(account, "BTC", 10_000, "bc1-stranger",
                                         T0 + (n + 1) * MINUTE):
            decisions += engine.evaluate(signal)
        assert bool(decisions) == (n == 2)
    [fired] = decisions
    assert (fired.rule_id, fired.classification) == (
        "withdrawals-to-new-destinations", "unauthorized_access")
    assert [(a.kind, a.target) for a in fired.actions if a.kind is ActionKind.FREEZE_WITHDRAWALS] \
        == [(ActionKind.FREEZE_WITHDRAWALS, "BTC")]


def test_the_shipped_rules_open_one_ddos_incident_for_a_flood_from_many_clients() -> None:
    engine = shipped_rules()
    flood = RequestFloodDetector(FloodSettings(rate_per_s=1, burst=1, refusals_to_block=2,
                                               exempt_networks=()))
    decisions = []
    for address in ("198.51.100.1", "198.51.100.2"):
        for _ in range(4):
            verdict = flood.check(f"address:{address}", address, T0)
            if verdict.signal is not None:
                decisions += engine.evaluate(verdict.signal)
    [fired] = decisions
    assert (fired.rule_id, fired.classification, fired.severity) == (
        "request-flood", "ddos", "SEV2")
    assert "2 requests over the rate limit" in fired.signal.details["reason"]


# --- blocks and exemptions -----------------------------------------------------------


def test_a_blocked_address_is_refused_even_inside_the_exempt_networks() -> None:
    flood = RequestFloodDetector(FloodSettings(rate_per_s=1, burst=1))
    flood.block("address:127.0.0.9", 60, "rule credential-stuffing", T0)
    refused = flood.check("address:127.0.0.9", "127.0.0.9", T0 + 1).admission
    other = flood.check("address:127.0.0.8", "127.0.0.8", T0 + 1).admission
    assert (refused.status, refused.code) == (429, "client_blocked")
    assert other.admitted


def test_exempt_networks_can_be_narrowed_for_a_while_and_put_back() -> None:
    flood = RequestFloodDetector(FloodSettings(rate_per_s=1, burst=1))
    previous = flood.set_exempt_networks(parse_networks("10.0.0.0/8"))
    limited = [flood.check("address:127.0.0.70", "127.0.0.70", T0).admission.admitted
               for _ in range(3)]
    flood.set_exempt_networks(previous)
    exempt = [flood.check("address:127.0.0.71", "127.0.0.71", T0).admission.admitted
              for _ in range(3)]
    assert limited == [True, False, False]
    assert exempt == [True, True, True]


@SQLITE_ONLY
def test_the_security_feeds_take_the_operator_networks_as_a_parameter(
    operations: FastAPI, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HALTGUARD_DETECTION_OPERATOR_NETWORKS", raising=False)
    monkeypatch.delenv("HALTGUARD_OPERATOR_NETWORKS", raising=False)
    operator = provision_operator(session_factory, Role.RESPONDER, username="dave", now=NOW)
    signals: list[Signal] = []
    scheduler = MonitorScheduler(signals.append)
    [audit_monitor] = add_security_feeds(scheduler, signals.append,
                                         session_factory=session_factory,
                                         operator_networks=NETWORKS, interval_ms=20)
    with scheduler:
        deadline = time.monotonic() + 5
        while audit_monitor.runs < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with TestClient(operations, client=("198.51.100.44", 1)) as outside:
            response = outside.post("/api/auth/login", json={
                "username": "dave", "password": operator.password,
                "totp_code": totp.code_at(operator.totp_secret, NOW)})
        assert response.status_code == 200, response.text
        while not signals:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    [signal] = signals
    assert signal.name == "security.operator_outside_network"
    assert signal.labels == {"actor": "operator:dave", "source_address": "198.51.100.44"}
    assert signal.details["allowed_networks"] == "10.20.0.0/16"
