"""The primary's replicated journal: each batch is one stream message, acknowledged only
once the stream holds it; a fenced or deposed primary acknowledges nothing more."""

from __future__ import annotations

from pathlib import Path

import pytest

from haltguard.gateway.runtime import VenueRuntime, VenueUnavailableError
from haltguard.replication.link import StreamLink
from haltguard.replication.models import KIND_TAKEOVER, ReplicationSettings
from haltguard.replication.publisher import BatchPublisher, batch_headers, encode_batch
from haltguard.replication.server import NatsServer
from haltguard.replication.standby import decode_batch, read_header
from haltguard.venue.commands import CancelOrder, Heartbeat

from .support import folder, open_link, order, set_up_markets


def test_a_batch_message_decodes_by_itself_with_every_kind_of_record() -> None:
    stamped = [(41, 1_000, order(1), None), (42, 1_001, Heartbeat(), None),
               (43, 1_002, CancelOrder("XRP-JPY", 2, order_id=7), None),
               (44, 1_003, order(2), None)]
    payload = encode_batch(stamped)
    header = read_header(batch_headers("batch", 41, 44, 1_003, 1))
    assert decode_batch(payload, header) == [(seq, ts, c) for seq, ts, c, _ in stamped]


def test_commands_are_acknowledged_only_once_the_stream_holds_their_batch(
    tmp_path: Path, nats_server: NatsServer, settings: ReplicationSettings,
    links: list[StreamLink],
) -> None:
    link = open_link(links, settings, nats_server.url)
    publisher = BatchPublisher(link, expected_last=0, term=1)
    with VenueRuntime(folder(tmp_path, "primary"), replicator=publisher) as runtime:
        set_up_markets(runtime)
        for number in range(30):
            result = runtime.submit(order(number)).result(10)
            _, _, stream_last_command = link.call(link.stream_end())
            assert stream_last_command >= result.seq
        assert publisher.batches == link.call(link.stream_end())[1]


def test_a_fenced_primary_acknowledges_nothing_more_and_stops(
    tmp_path: Path, nats_server: NatsServer, settings: ReplicationSettings,
    links: list[StreamLink],
) -> None:
    link = open_link(links, settings, nats_server.url, "old")
    publisher = BatchPublisher(link, expected_last=0, term=1)
    with VenueRuntime(folder(tmp_path, "primary"), replicator=publisher) as runtime:
        set_up_markets(runtime)
        held = link.call(link.stream_end())
        other = open_link(links, settings, nats_server.url, "new")
        other.call(other.publish(b"", batch_headers(KIND_TAKEOVER, held[2] + 1, held[2], 0, 2),
                                 held[1]))
        pending = [runtime.submit(order(number)) for number in range(5)]
        for future in pending:
            with pytest.raises(VenueUnavailableError, match="replicated journal"):
                future.result(10)
        with pytest.raises(VenueUnavailableError):
            runtime.submit(order(99))
        assert publisher.refused.is_set()
        assert "another venue" in publisher.refusal
        assert link.call(link.stream_end())[2] == held[2]


def test_a_primary_that_lost_its_lease_refuses_the_next_batch_without_publishing_it(
    tmp_path: Path, nats_server: NatsServer, settings: ReplicationSettings,
    links: list[StreamLink],
) -> None:
    link = open_link(links, settings, nats_server.url)
    publisher = BatchPublisher(link, expected_last=0, term=1)
    with VenueRuntime(folder(tmp_path, "primary"), replicator=publisher) as runtime:
        set_up_markets(runtime)
        before = link.call(link.stream_end())
        publisher.refuse("another venue took the primary's lease")
        with pytest.raises(VenueUnavailableError, match="lease"):
            runtime.submit(order(1)).result(10)
        assert link.call(link.stream_end()) == before
