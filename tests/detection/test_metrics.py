"""Prometheus metrics at ``/metrics`` on the venue API and the operations API: present,
correct, and named by Prometheus conventions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import Engine

from haltguard.app.operations import create_app
from haltguard.app.venue_app import create_venue_app
from haltguard.gateway.limits import FloodSettings, SheddingSettings
from haltguard.gateway.runtime import VenueRuntime
from haltguard.venue.workload import WORKLOAD_MARKET, setup_commands
from haltguard.web.settings import Settings

ORDERS = f"/v1/markets/{WORKLOAD_MARKET}/orders"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
# Families the client library adds itself (process, platform, GC), named by its conventions.
STANDARD_PREFIXES = ("process_", "python_")
FORBIDDEN_LABELS = {"account", "path", "address", "client", "api_key"}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[VenueRuntime]:
    runtime = VenueRuntime(tmp_path / "venue").start()
    for command in setup_commands(accounts=3):
        runtime.submit_and_wait(command)
    yield runtime
    runtime.stop()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def test_venue_metrics_report_the_runtime_and_each_route(runtime: VenueRuntime) -> None:
    with TestClient(create_venue_app(runtime, "token")) as client:
        for n in range(3):
            assert client.post(ORDERS, json={"account": 1, "side": "buy", "qty": "1",
                                             "price": "99000", "client_order_id": f"m{n}"}
                               ).status_code == 201
        client.get(f"/v1/markets/{WORKLOAD_MARKET}")
        client.get("/nowhere/1")
        client.get("/nowhere/2")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    status = runtime.status()
    assert value(found, "haltguard_venue_commands_total") == status.commands
    assert value(found, "haltguard_venue_last_seq") == status.last_seq
    assert value(found, "haltguard_venue_up") == 1
    assert value(found, "haltguard_venue_queue_depth_max") == status.queue_depth_max
    assert value(found, "haltguard_venue_orders_admitted_total") == 3
    assert value(found, "haltguard_http_requests_total", method="POST",
                 route="/v1/markets/{symbol}/orders", status="201") == 3
    assert value(found, "haltguard_http_requests_total", method="GET",
                 route="/v1/markets/{symbol}", status="200") == 1
    assert value(found, "haltguard_http_requests_total", method="GET", route="unmatched",
                 status="404") == 2
    assert value(found, "haltguard_http_request_duration_seconds_count", method="POST",
                 route="/v1/markets/{symbol}/orders") == 3
    assert value(found, "haltguard_venue_order_ack_duration_seconds_count") == 3


def test_shed_requests_are_counted_by_reason(runtime: VenueRuntime) -> None:
    settings = SheddingSettings(flood=FloodSettings(rate_per_s=1, burst=2))
    with TestClient(create_venue_app(runtime, "token", load_shedding=settings)) as client:
        codes = [client.get("/v1/markets").status_code for _ in range(5)]
        found = samples(client.get("/metrics").text)
    assert codes.count(429) == 3
    assert value(found, "haltguard_venue_requests_shed_total", reason="rate_limited") == 3
    assert value(found, "haltguard_http_requests_total", method="GET", route="unmatched",
                 status="429") == 3


def test_the_venue_also_serves_metrics_under_its_prefix_for_the_shared_port(
    runtime: VenueRuntime,
) -> None:
    with TestClient(create_venue_app(runtime, "token")) as client:
        assert "haltguard_venue_up 1.0" in client.get("/venue/metrics").text


@SQLITE_ONLY
def test_operations_metrics_are_served_without_login(engine: Engine) -> None:
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     escalation_interval_s=None)
    with TestClient(app) as client:
        client.get("/api/incidents")  # refused: not logged in, still counted
        found = samples(client.get("/metrics").text)
    assert value(found, "haltguard_http_requests_total", method="GET", route="/api/incidents",
                 status="401") == 1
    assert ("haltguard_alerts_received_total", frozenset()) not in found  # labelled only


def _check_names(family_name: str, family_type: str, family_samples: list[Sample]) -> None:
    if family_name.startswith(STANDARD_PREFIXES):
        return
    assert re.fullmatch(r"haltguard_[a-z][a-z0-9_]*", family_name), family_name
    for sample in family_samples:
        assert not set(sample.labels) & FORBIDDEN_LABELS, (sample.name, sample.labels)
        if family_type == "counter" and not sample.name.endswith("_created"):
            assert sample.name.endswith("_total"), sample.name
    if family_type == "histogram":
        assert family_name.endswith(("_seconds", "_bytes")), family_name
    if family_type == "gauge":
        assert not family_name.endswith("_total"), family_name


@SQLITE_ONLY
def test_every_metric_follows_prometheus_naming(runtime: VenueRuntime, engine: Engine) -> None:
    operations = create_app(Settings(database_url="unused", migrate_on_start=False),
                            engine=engine, escalation_interval_s=None)
    texts = []
    for app in (create_venue_app(runtime, "token"), operations):
        with TestClient(app) as client:
            client.get("/v1/health")
            texts.append(client.get("/metrics").text)
    families = [f for text in texts for f in text_string_to_metric_families(text)]
    ours = [f for f in families if f.name.startswith("haltguard_")]
    assert len(ours) >= 15
    for family in families:
        _check_names(family.name, family.type, family.samples)
