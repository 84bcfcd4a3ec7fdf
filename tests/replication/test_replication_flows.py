"""Failover between real venue processes on one nats-server: a killed primary is replaced
by the standby with no acknowledged order lost, and a paused primary that comes back
acknowledges nothing the new primary does not have."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.replicas import PRIMARY_URL, FollowingForwarder, ReplicaSet
from haltguard.common.clock import utc_now
from haltguard.gateway.control import HttpVenueControl
from haltguard.incidents.models import Incident, TimelineEntry
from haltguard.replication.checks import (
    Customers,
    failover_s,
    hashes_at_common_seq,
    journal_orders,
    lost,
)
from haltguard.replication.failover import FailoverRecorder
from haltguard.replication.flows import serving
from haltguard.replication.models import Replication, ReplicationSettings
from haltguard.replication.processes import NodeProcess, PrimaryWatch
from haltguard.replication.server import NatsServer, free_port
from haltguard.status.settings import StatusSettings

from .nodes import TOKEN, log_text, node, replication_status

pytestmark = pytest.mark.slow

LEASE_TTL_MS = 600


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, nats_server: NatsServer
          ) -> Iterator[list[NodeProcess]]:
    """Two nodes on one stream for the module: whichever takes the lease first serves, the
    other follows; each test finds which is which (the previous test swapped them)."""
    base = tmp_path_factory.mktemp("nodes")
    first = node("a", base, nats_server.url, "FAILOVER", LEASE_TTL_MS).start()
    second = node("b", base, nats_server.url, "FAILOVER", LEASE_TTL_MS).start()
    try:
        deadline = time.monotonic() + 60
        while sorted(node.health() for node in (first, second)) != [200, 503]:
            assert time.monotonic() < deadline, log_text(first) + log_text(second)
            time.sleep(0.05)
        yield [first, second]
    finally:
        second.stop()
        first.stop()


def _roles(nodes: list[NodeProcess]) -> tuple[NodeProcess, NodeProcess]:
    primary = next(node for node in nodes if node.health() == 200)
    return primary, next(node for node in nodes if node is not primary)


def _wait_caught_up(standby: NodeProcess, primary: NodeProcess, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        progress = replication_status(standby)["progress"]
        assert isinstance(progress, dict)
        if progress["applied_seq"] == _last_seq(primary):
            return
        time.sleep(0.05)
    raise AssertionError(f"{standby.name} did not catch up")


def _wait_for_acks(customers: Customers, node: NodeProcess, count: int = 20,
                   timeout_s: float = 15) -> None:
    """Until ``node`` acknowledged ``count`` more orders (a loaded machine is slow)."""
    before = sum(1 for ack in customers.acks if ack.node == node.name)
    deadline = time.monotonic() + timeout_s
    while sum(1 for ack in customers.acks if ack.node == node.name) < before + count:
        assert time.monotonic() < deadline, f"{node.name} acknowledged too few orders"
        time.sleep(0.05)


def _last_seq(node: NodeProcess) -> int:
    import httpx

    return int(httpx.get(f"{node.url}/v1/health", timeout=2).json()["last_seq"])


def test_a_killed_primary_is_replaced_with_no_acknowledged_order_lost(
    nodes: list[NodeProcess],
) -> None:
    first, second = _roles(nodes)
    customers = Customers(nodes).start()
    try:
        _wait_for_acks(customers, first)
        first.signal(signal.SIGKILL)
        second.wait_until("primary", timeout_s=10)
        _wait_for_acks(customers, second)
        first.start()  # the old primary comes back as a standby
        first.wait_until("standby")
        time.sleep(0.3)
    finally:
        customers.stop()
    _wait_caught_up(first, second)
    from_first = [ack for ack in customers.acks if ack.node == first.name]
    from_second = [ack for ack in customers.acks if ack.node == second.name]
    assert from_first and from_second
    took_s = failover_s(customers.acks, first.name, second.name)
    assert took_s is not None and took_s < 5.0
    assert lost(customers.acks, second.data_dir) == []  # the old primary's acks included
    assert len(hashes_at_common_seq(first.data_dir, second.data_dir)) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_killed_primary_becomes_a_server_down_incident_with_the_failovers_figures(
    nodes: list[NodeProcess], session_factory: sessionmaker[Session],
) -> None:
    first, second = _roles(nodes)
    recorder = FailoverRecorder(session_factory, StatusSettings(), utc_now)
    watch = PrimaryWatch(nodes, on_change=recorder).start()
    try:
        time.sleep(0.3)  # a few polls: the watch has seen the primary's seq
        first.signal(signal.SIGKILL)
        second.wait_until("primary", timeout_s=10)
        deadline = time.monotonic() + 5
        while len(recorder.written) < 2:
            assert time.monotonic() < deadline, watch.changes
            time.sleep(0.05)
    finally:
        watch.stop()
        recorder.close()
        first.start()  # back as a standby for the next test
        first.wait_until("standby")
    for written in recorder.written:
        written.result()
    with session_factory() as session:
        (incident,) = session.scalars(select(Incident)).all()
        figures = [entry.details for entry in session.scalars(select(TimelineEntry).where(
            TimelineEntry.incident_id == incident.id)) if "failover_ms" in entry.details]
    assert incident.category == "server_down" and len(figures) == 1
    (figure,) = figures
    assert (figure["old_node"], figure["new_node"]) == (first.name, second.name)
    assert 0 < figure["time_to_detect_ms"] <= figure["failover_ms"] < 10_000
    seqs = figure["last_seq_by_node"]
    assert seqs[second.name] >= seqs[first.name] > 0  # the new primary has all it was seen ack


def test_a_paused_primary_that_comes_back_refuses_its_pending_orders_and_follows(
    nodes: list[NodeProcess],
) -> None:
    first, second = _roles(nodes)
    customers = Customers(nodes).start()
    try:
        _wait_for_acks(customers, first)
        first.signal(signal.SIGSTOP)
        paused_at = time.monotonic()
        second.wait_until("primary", timeout_s=10)
        time.sleep(0.5)
        first.signal(signal.SIGCONT)
        first.wait_until("standby", timeout_s=15)
        time.sleep(0.5)
    finally:
        customers.stop()
    refused_after_pause = [r for r in customers.refusals
                           if r[0] == first.name and r[2] > paused_at]
    # Pending at the paused primary: refused (503), or cut off as it stops serving; never 201
    # unless the new primary has the order at that seq (checked below, order by order).
    assert refused_after_pause, customers.refusals
    assert {status for _, status, _ in refused_after_pause} <= {0, 503}, refused_after_pause
    assert replication_status(first)["fenced"]
    _wait_caught_up(first, second)
    assert lost(customers.acks, second.data_dir) == []  # the old primary's acks included
    assert len(hashes_at_common_seq(first.data_dir, second.data_dir)) == 1


def test_a_node_counts_as_serving_only_while_its_health_answers_200(
    nodes: list[NodeProcess],
) -> None:
    primary, standby = _roles(nodes)
    assert serving(primary.host, primary.port)
    assert not serving(standby.host, standby.port)  # 503: a standby
    assert not serving(primary.host, free_port())  # nothing listens there


def test_serves_forwarder_and_venue_client_follow_the_node_that_serves(
    nodes: list[NodeProcess], nats_server: NatsServer,
) -> None:
    primary, _ = _roles(nodes)
    settings = ReplicationSettings(replication=Replication.JETSTREAM, stream="FAILOVER")
    watch = PrimaryWatch(nodes).start()
    try:
        replicas = ReplicaSet(settings, nats_server.url, nodes, watch=watch)
        assert replicas.primary() is primary and replicas.url == primary.url
        control = HttpVenueControl(PRIMARY_URL, TOKEN, transport=replicas.transport())
        assert "XRP-JPY" in control.market_states()
        forwarder = FollowingForwarder(replicas, receive_s_max=5.0)

        async def place() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=forwarder),
                                         base_url="http://serve") as client:
                try:
                    return await client.post("/v1/markets/XRP-JPY/orders", json={
                        "account": 3, "side": "buy", "qty": "10", "price": "80",
                        "client_order_id": "through-the-forwarder"})
                finally:
                    await forwarder.aclose()

        answer = asyncio.run(place())
        assert answer.status_code == 201, answer.text
        assert journal_orders(primary.data_dir).get(int(answer.json()["seq"])) == \
            "through-the-forwarder"
    finally:
        watch.stop()
