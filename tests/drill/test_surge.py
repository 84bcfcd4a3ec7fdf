"""The surge drill at a reduced scale on the supervised venue (the default path: this process
forwarding to the venue process): load-generator processes offer three times a capacity set
low (60 orders/s) so the test is quick; the gateway sheds the excess with Retry-After,
admitted orders are acknowledged within the load detector's bound as the customers measured
it, nothing acknowledged is lost, and the load detector opens an incident."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from haltguard.app.config import load_config
from haltguard.app.drill_system import own_system
from haltguard.drill.load import AcknowledgedOrder
from haltguard.drill.runner import run_scenario
from haltguard.drill.scenario import DrillResult, Measurements, Scale
from haltguard.drill.scenarios.surge import (
    CLIENTS,
    SCENARIO,
    OrderGrid,
    SurgeRecord,
    admitted_per_s_max,
    generator_plans,
    merge_outputs,
    percentile,
)
from haltguard.drill.surface import database
from haltguard.gateway.limits import SheddingSettings
from haltguard.incidents import service as incidents

CAPACITY_PER_S = 60
REDUCED = Scale(orders=150, load_multiple=3.0, burst=20, timeout_s=15.0)


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drilled]:
    base = tmp_path_factory.mktemp("surge")
    config = load_config(None, environ={}, overrides={
        "data_dir": str(base / "data"), "venue.admin_token": "drill-test-admin-token-0123",
        "venue.process": True, "drill.enabled": True,
        "venue.order_capacity_per_s": CAPACITY_PER_S})
    lines: list[str] = []
    with own_system(config, lines.append) as system:
        result = run_scenario(system, SCENARIO, scale=REDUCED, progress=lines.append,
                              report_dir=None)
        category = ""
        if result.incident_id is not None:
            with database(system) as session:
                category = incidents.get(session, result.incident_id).category.value
        again = run_scenario(system, SCENARIO, scale=REDUCED, progress=lines.append,
                             report_dir=None)
        yield result, category, again


Drilled = tuple[DrillResult, str, DrillResult]


def test_the_surge_is_offered_from_outside_and_its_excess_shed_with_retry_after(
    drill: Drilled,
) -> None:
    result, _, _ = drill
    extra = result.measurements.extra
    assert int(extra["offered_per_s"]) >= CAPACITY_PER_S * REDUCED.load_multiple * 0.9
    assert int(extra["shed_429"]) + int(extra["shed_503"]) > 0
    checks = {check.name: check for check in result.checks}
    assert checks["surge offered"].passed, checks["surge offered"].seen
    assert checks["load shed with Retry-After"].passed, checks["load shed with Retry-After"].seen
    assert checks["no failure other than shedding"].passed, checks[
        "no failure other than shedding"].seen


def test_admitted_orders_stay_near_capacity_and_are_acknowledged_within_the_bound(
    drill: Drilled,
) -> None:
    result, _, _ = drill
    extra = result.measurements.extra
    most = admitted_per_s_max(SheddingSettings(), CAPACITY_PER_S, float(extra["surge_seconds"]))
    assert CAPACITY_PER_S * 0.8 <= int(extra["admitted_per_s"]) <= most * 1.1
    assert float(extra["ack_p99_ms"]) <= 500
    checks = {check.name: check for check in result.checks}
    assert checks["admitted orders acknowledged in bounded time"].passed
    assert checks["admitted rate at capacity"].passed


def test_nothing_acknowledged_is_lost_and_the_load_rule_opens_an_incident(
    drill: Drilled,
) -> None:
    result, category, _ = drill
    assert int(result.measurements.extra["orders_acknowledged"]) > 0
    assert result.measurements.acknowledged_orders_lost == 0
    assert result.measurements.ledger_invariant_ok
    assert category == "server_down"
    assert result.passed, result.failures()


def test_a_second_surge_while_the_load_rule_rests_is_refused_saying_until_when(
    drill: Drilled,
) -> None:
    _, _, again = drill
    assert not again.passed
    reasons = " ".join(again.failures())
    assert "rule order-rate-over-capacity fired recently and rests until" in reasons
    assert "--own-system" in reasons


def test_a_host_that_admits_less_than_the_configured_capacity_fails_the_drill_saying_so(
) -> None:
    record = SurgeRecord(sent=4_000, send_span_s=5.0)
    record.shed[429] = 3_500
    record.acknowledged = [AcknowledgedOrder(seq=n, order_id=n, client_order_id=f"c-{n}",
                                             market="BTC-JPY", account=11)
                           for n in range(1, 501)]
    record.ack_latencies_ms = [20.0] * 500
    record.ack_sent_s = [n / 100 for n in range(500)]
    result = DrillResult("surge", None, Measurements(), [])
    SCENARIO._measure(result, settings=SheddingSettings(), capacity=200, wanted_per_s=800.0,
                      seconds=5.0, record=record)
    checks = {check.name: check for check in result.checks}
    assert checks["surge offered"].passed
    at_capacity = checks["admitted rate at capacity"]
    assert not at_capacity.passed
    assert "venue.order_capacity_per_s" in at_capacity.expected
    assert at_capacity.seen == "100 orders/s"


def test_slow_acknowledgements_or_a_weak_offer_fail_the_drill() -> None:
    record = SurgeRecord(sent=1_000, send_span_s=5.0)
    record.shed[429] = 0
    record.ack_latencies_ms = [900.0] * 1_000
    record.ack_sent_s = [n / 200 for n in range(1_000)]
    result = DrillResult("surge", None, Measurements(), [])
    SCENARIO._measure(result, settings=SheddingSettings(), capacity=200, wanted_per_s=800.0,
                      seconds=5.0, record=record)
    failed = {check.name for check in result.checks if not check.passed}
    assert {"surge offered", "load shed with Retry-After",
            "admitted orders acknowledged in bounded time"} <= failed


def test_generators_share_the_customers_and_together_offer_the_wanted_rate() -> None:
    grid = OrderGrid(Decimal(1), "0.0001", "14700000")
    plans = generator_plans("http://127.0.0.1:8000", "BTC-JPY", grid, 800.0, 5.0,
                            stamp="t")
    customers = [c for plan in plans for c in plan["customers"]]
    assert len(customers) == CLIENTS
    assert len({c["account"] for c in customers}) == CLIENTS
    assert sum(c["rate_per_s"] for c in customers) == pytest.approx(800.0)
    assert all(plan["path"] == "/v1/markets/BTC-JPY/orders" for plan in plans)
    assert all(c["connections"] >= 100 * 0.5 for c in customers)


def test_generator_answers_are_merged_into_what_the_customers_saw() -> None:
    output = {"elapsed_s": 5.2, "send_span_s": 4.99, "late_sends": 1, "orders": [
        ["c-0", 11, 201, 12_000, 41, 7, False, "", 1_250],
        ["c-1", 11, 429, 900, 0, 0, True, "", 1_300],
        ["c-2", 12, 503, 800, 0, 0, False, "", 1_400],
        ["c-3", 12, 0, 0, 0, 0, False, "ConnectionResetError", 1_500],
        ["c-4", 12, 500, 3_000, 0, 0, False, "", 1_600],
    ]}
    record = merge_outputs([output], "BTC-JPY")
    assert record.sent == 5
    assert [(o.seq, o.order_id, o.client_order_id, o.account) for o in record.acknowledged] \
        == [(41, 7, "c-0", 11)]
    assert record.ack_latencies_ms == [12.0]
    assert record.ack_sent_s == [1.25]
    assert record.shed == {429: 1, 503: 1}
    assert record.shed_without_retry_after == 1
    assert record.other == {"ConnectionResetError": 1, "HTTP 500": 1}
    assert record.late_sends == 1


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None
