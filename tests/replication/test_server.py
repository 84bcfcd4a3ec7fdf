"""nats-servers from the wheel: a three-node cluster keeps the replicated journal going when
the node holding the stream's leadership is killed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from haltguard.gateway.runtime import VenueRuntime
from haltguard.replication.link import StreamLink
from haltguard.replication.models import Replication, ReplicationSettings
from haltguard.replication.publisher import BatchPublisher
from haltguard.replication.server import NatsServer, nats_server_binary, start_cluster
from haltguard.replication.standby import Follower

from .support import folder, open_link, order, runtime_hash, set_up_markets, state_hash


def test_the_server_binary_is_the_one_the_wheel_installed() -> None:
    binary = nats_server_binary()
    assert binary.exists() and binary.name == "nats-server"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NatsServer]]:
    servers = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.mark.slow
def test_a_three_node_cluster_keeps_acknowledging_after_its_stream_leader_is_killed(
    tmp_path: Path, cluster: list[NatsServer],
) -> None:
    settings = ReplicationSettings(replication=Replication.JETSTREAM, stream="CLUSTERED",
                                   replicas=3, publish_timeout_ms=20_000)
    url = ",".join(server.url for server in cluster)
    links: list[StreamLink] = []
    try:
        link = open_link(links, settings, url, "primary")
        publisher = BatchPublisher(link, expected_last=0, term=1)
        with VenueRuntime(folder(tmp_path, "primary"), replicator=publisher) as runtime:
            set_up_markets(runtime)
            for number in range(20):
                runtime.submit(order(number)).result(10)
            info = link.call(link.js.stream_info(settings.stream))
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2
            leader = next(s for s in cluster if s.name == info.cluster.leader)
            leader.kill()
            for number in range(20, 60):
                runtime.submit(order(number)).result(20)
            survivor = next(s for s in cluster if s is not leader)
            follower = Follower(folder(tmp_path, "standby"),
                                open_link(links, settings, survivor.url, "standby")).start()
            try:
                assert follower.catch_up(20)
                assert state_hash(follower.venue) == runtime_hash(runtime)
            finally:
                follower.stop()
    finally:
        for each in links:
            each.close()
