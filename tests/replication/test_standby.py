"""The standby: it follows the stream into its own journal and venue, reaches the primary's
state, and refuses to continue (so never serves) a history with a gap."""

from __future__ import annotations

from pathlib import Path

import pytest

from haltguard.gateway.runtime import VenueRuntime, VenueUnavailableError
from haltguard.journal import recover
from haltguard.journal.snapshots import list_snapshots
from haltguard.replication.link import StreamLink
from haltguard.replication.models import KIND_TAKEOVER, ReplicationSettings
from haltguard.replication.publisher import BatchPublisher, batch_headers
from haltguard.replication.server import NatsServer
from haltguard.replication.standby import Follower, set_aside_if_diverged
from haltguard.replication.views import metrics_text

from .support import folder, open_link, order, runtime_hash, set_up_markets, state_hash


def _primary(tmp_path: Path, link: StreamLink) -> VenueRuntime:
    runtime = VenueRuntime(folder(tmp_path, "primary"),
                           replicator=BatchPublisher(link, expected_last=0, term=1)).start()
    set_up_markets(runtime)
    return runtime


def test_a_standby_applies_every_batch_and_reaches_the_primarys_state(
    tmp_path: Path, nats_server: NatsServer, settings: ReplicationSettings,
    links: list[StreamLink],
) -> None:
    primary_link = open_link(links, settings, nats_server.url, "primary")
    standby_link = open_link(links, settings, nats_server.url, "standby")
    with _primary(tmp_path, primary_link) as runtime:
        follower = Follower(folder(tmp_path, "standby"), standby_link, snapshot_every=100)
        follower.start()
        try:
            for round_ in range(6):
                for future in [runtime.submit(order(round_ * 50 + n)) for n in range(50)]:
                    future.result(10)
            assert follower.catch_up(10)
            assert state_hash(follower.venue) == runtime_hash(runtime)
            progress = follower.progress
            assert progress.applied_seq == runtime.status().last_seq
            assert progress.lag_commands == 0
            assert progress.snapshots >= 2  # every 100 commands, at a commit
            assert len(list_snapshots(tmp_path / "standby")) >= 1
            assert "haltguard_standby_lag_ms" in metrics_text(progress, "standby")
        finally:
            follower.stop()
    recovered, _ = recover(tmp_path / "standby")
    assert state_hash(recovered) == state_hash(recover(tmp_path / "primary")[0])


def test_a_restarted_standby_continues_where_it_stopped(
    tmp_path: Path, nats_server: NatsServer, settings: ReplicationSettings,
    links: list[StreamLink],
) -> None:
    link = open_link(links, settings, nats_server.url, "primary")
    standby_link = open_link(links, settings, nats_server.url, "standby")
    with _primary(tmp_path, link) as runtime:
        first = Follower(folder(tmp_path, "standby"), standby_link).start()
        assert first.catch_up(10)
        first.stop()
        for future in [runtime.submit(order(n)) for n in range(50)]:
            future.result(10)
        again = Follower(tmp_path / "standby", standby_link).start()
        try:
            assert again.progress.stream_seq == first.progress.stream_seq
            assert again.catch_up(10)
            assert state_hash(again.venue) == runtime_hash(runtime)
        finally:
            again.stop()


def test_a_standby_missing_history_the_stream_no_longer_holds_says_so_and_stops(
    tmp_path: Path, nats_server: NatsServer, settings: ReplicationSettings,
    links: list[StreamLink],
) -> None:
    link = open_link(links, settings, nats_server.url, "primary")
    with _primary(tmp_path, link) as runtime:
        for number in range(20):
            runtime.submit(order(number)).result(10)
        link.call(link.js.purge_stream(settings.stream, keep=3))  # retention dropped the rest
        follower = Follower(folder(tmp_path, "late"), link).start()
        try:
            assert not follower.catch_up(5)
            assert "no longer retains" in follower.progress.problem
            assert follower.venue.last_seq == 0
            assert "haltguard_standby_healthy 0" in metrics_text(follower.progress, "standby")
        finally:
            follower.stop()


def test_a_tail_the_stream_never_took_is_set_aside_and_the_node_rebuilds_from_the_stream(
    tmp_path: Path, nats_server: NatsServer, settings: ReplicationSettings,
    links: list[StreamLink],
) -> None:
    link = open_link(links, settings, nats_server.url, "old")
    runtime = _primary(tmp_path, link)
    held = link.call(link.stream_end())
    other = open_link(links, settings, nats_server.url, "new")
    other.call(other.publish(b"", batch_headers(KIND_TAKEOVER, held[2] + 1, held[2], 0, 2),
                             held[1]))
    with pytest.raises(VenueUnavailableError):
        runtime.submit(order(1)).result(10)  # journaled and fsynced here, refused by the stream
    runtime.stop()
    assert recover(tmp_path / "primary")[0].last_seq == held[2] + 1
    kept = set_aside_if_diverged(tmp_path / "primary", other)
    assert kept is not None and kept.exists()
    follower = Follower(tmp_path / "primary", other).start()
    try:
        assert follower.catch_up(10)
        assert follower.venue.last_seq == held[2]
    finally:
        follower.stop()
    assert set_aside_if_diverged(tmp_path / "primary", other) is None
