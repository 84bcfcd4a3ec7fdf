"""The NATS link against a real nats-server: the journal stream, publishing with the
expected last sequence (fencing), the lease's compare-and-set, and clear errors for a
configuration that cannot work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from haltguard.replication.errors import FencedError, ReplicationConfigError
from haltguard.replication.link import StreamLink
from haltguard.replication.models import LeaseRecord, Replication, ReplicationSettings
from haltguard.replication.server import NatsServer, free_port

from .support import open_link


def test_a_publish_with_a_stale_expected_sequence_is_refused_and_changes_nothing(
    nats_server: NatsServer, settings: ReplicationSettings, links: list[StreamLink]
) -> None:
    link = open_link(links, settings, nats_server.url)
    assert link.call(link.publish(b"a", {"Hg-Last-Seq": "3"}, 0)) == 1
    with pytest.raises(FencedError) as refused:
        link.call(link.publish(b"b", {"Hg-Last-Seq": "9"}, 0))
    assert refused.value.code == "replication_fenced"
    assert refused.value.message_ja
    assert link.call(link.stream_end()) == (1, 1, 3)


def test_the_lease_changes_only_by_compare_and_set_on_its_revision(
    nats_server: NatsServer, settings: ReplicationSettings, links: list[StreamLink]
) -> None:
    link = open_link(links, settings, nats_server.url)
    now = time.time_ns()
    first = link.call(link.write_lease(LeaseRecord("a", 1, now, 600), 0))
    assert first is not None
    assert link.call(link.write_lease(LeaseRecord("b", 1, now, 600), 0)) is None
    assert link.call(link.write_lease(LeaseRecord("b", 2, now, 600), first - 1)) is None
    second = link.call(link.write_lease(LeaseRecord("b", 2, now, 600), first))
    record, revision = link.call(link.read_lease())
    assert (record, revision) == (LeaseRecord("b", 2, now, 600), second)


def test_the_batch_holding_a_command_is_found_by_its_seq(
    nats_server: NatsServer, settings: ReplicationSettings, links: list[StreamLink]
) -> None:
    link = open_link(links, settings, nats_server.url)
    for index, (first, last) in enumerate([(1, 4), (5, 5), (6, 10)]):
        link.call(link.publish(f"m{index}".encode(),
                               {"Hg-First-Seq": str(first), "Hg-Last-Seq": str(last)}, index))
    found = link.call(link.find_batch(7))
    assert found is not None and found[1] == b"m2"
    assert link.call(link.find_batch(11)) is None


def test_an_unreachable_nats_is_a_clear_error_at_start(settings: ReplicationSettings) -> None:
    link = StreamLink(settings, f"nats://127.0.0.1:{free_port()}", name="test")
    try:
        with pytest.raises(ReplicationConfigError, match="cannot reach NATS") as refused:
            link.connect()
        assert "continuity.nats_url" in (refused.value.next_step or "")
    finally:
        link.close()


def test_more_replicas_than_the_cluster_has_servers_is_a_clear_error_at_start(
    nats_server: NatsServer, links: list[StreamLink]
) -> None:
    three = ReplicationSettings(replication=Replication.JETSTREAM, stream="THREE", replicas=3)
    link = StreamLink(three, nats_server.url, name="test")
    links.append(link)
    with pytest.raises(ReplicationConfigError, match="3 replicas") as refused:
        link.connect()
    assert "must not exceed" in (refused.value.next_step or "")


def test_a_server_that_cannot_start_says_why(tmp_path: Path, nats_server: NatsServer) -> None:
    with pytest.raises(ReplicationConfigError, match="the port is in use"):
        NatsServer(tmp_path / "busy", port=nats_server.port).start()
