"""``serve`` with ``continuity.replication = "jetstream"``: a local nats-server (unless
``continuity.nats_url`` names one), two venue nodes on the replicated journal, and a front
that follows whichever serves.

Node ``a`` keeps the venue's journal where the rest of ``serve`` reads it (``data_dir``:
detection follows it, compensation reads it); node ``b`` keeps its own under
``data_dir/standby``. Whichever is standby follows the stream into its own journal, so
``data_dir``'s journal stays whole in either role. The forwarder has one request channel
per node and sends each request through the primary's; the operations side's HTTP calls
(brakes, status) go to the primary through :class:`PrimaryTransport`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.types import Receive, Scope, Send

from haltguard.app.config import venue_process_environment
from haltguard.app.forwarding import VenueForwarder
from haltguard.gateway.channel import ChannelClient
from haltguard.replication.link import StreamLink
from haltguard.replication.models import ReplicationSettings
from haltguard.replication.processes import (
    NODE_HOST,
    NodeProcess,
    PrimaryChange,
    PrimaryTransport,
    PrimaryWatch,
)
from haltguard.replication.server import NatsServer

log = logging.getLogger(__name__)

PRIMARY_URL = "http://venue-primary"
"""The base URL the operations side's venue client uses; the transport sends it on to the
node serving now."""
NATS_DIR = "nats"
STANDBY_DIR = "standby"
NODES_LOG = "venue-node-{name}.log"
FIRST_PRIMARY_S_MAX = 60.0


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind((NODE_HOST, 0))
            ports.add(probe.getsockname()[1])
    return sorted(ports)


@dataclass
class ReplicaSet:
    """The nats-server (when local), the venue nodes and the watch on them."""

    settings: ReplicationSettings
    nats_url: str
    nodes: list[NodeProcess]
    nats: NatsServer | None = None
    watch: PrimaryWatch | None = None
    on_change: list[Callable[[PrimaryChange], None]] = field(default_factory=list)

    def primary(self) -> NodeProcess | None:
        return self.watch.primary() if self.watch is not None else None

    def down_reason(self) -> str:
        return self.watch.down_reason() if self.watch is not None else "not started"

    @property
    def url(self) -> str:
        """The serving node's URL now (the first node's while none serves)."""
        primary = self.primary()
        return (primary or self.nodes[0]).url

    def transport(self) -> PrimaryTransport:
        assert self.watch is not None
        return PrimaryTransport(self.watch)

    def _changed(self, change: PrimaryChange) -> None:
        for listener in self.on_change:
            try:
                listener(change)
            except Exception:
                log.exception("a listener of the venue primary's change failed")

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        for node in reversed(self.nodes):  # the standby first: the primary gives up its lease
            node.stop()
        if self.nats is not None:
            self.nats.stop()


def start_replica_set(settings: ReplicationSettings, data_dir: Path, token: str, *,
                      demo_rate_per_s: float, drills: bool, checkpoint_every: int
                      ) -> ReplicaSet:
    """Start NATS (when local), check the stream can be held (a clear error otherwise,
    nothing left running), then the two nodes; return once one of them serves."""
    nats: NatsServer | None = None
    nats_url = settings.nats_url
    nodes: list[NodeProcess] = []
    try:
        if not nats_url:
            nats = NatsServer(data_dir / NATS_DIR, name="haltguard").start()
            nats_url = nats.url
        check = StreamLink(settings, nats_url, name="serve-check")
        try:
            check.connect()
        finally:
            check.close()
        ports = _free_ports(4)
        for index, (name, directory) in enumerate([("a", data_dir),
                                                   ("b", data_dir / STANDBY_DIR)]):
            nodes.append(NodeProcess(
                name, directory, ports[index * 2], nats_url, settings,
                channel_port=ports[index * 2 + 1], env=venue_process_environment(token),
                demo_rate_per_s=demo_rate_per_s,
                allow_fault_injection=drills, checkpoint_every=checkpoint_every,
                log_path=data_dir / NODES_LOG.format(name=name)))
        replicas = ReplicaSet(settings, nats_url, nodes, nats)
        nodes[0].start(watch=True)
        nodes[0].wait_until("primary", FIRST_PRIMARY_S_MAX)
        nodes[1].start(watch=True)
        nodes[1].wait_until("standby", FIRST_PRIMARY_S_MAX)
    except BaseException:
        for node in nodes:
            node.stop()
        if nats is not None:
            nats.stop()
        raise
    replicas.watch = PrimaryWatch(nodes, on_change=replicas._changed).start()
    return replicas


class FollowingForwarder:
    """The venue forwarder of whichever node serves now (one request channel per node)."""

    def __init__(self, replicas: ReplicaSet, *, receive_s_max: float) -> None:
        self.replicas = replicas
        self._forwarders = {
            node.name: VenueForwarder(node.host, node.channel_port,
                                      self._down_reason_for(node), receive_s_max=receive_s_max)
            for node in replicas.nodes
        }

    def _down_reason_for(self, node: NodeProcess) -> Callable[[], str]:
        def down_reason() -> str:
            primary = self.replicas.primary()
            if primary is node:
                return ""
            return self.replicas.down_reason() or "this venue node is a standby"

        return down_reason

    def current(self) -> VenueForwarder:
        primary = self.replicas.primary() or self.replicas.nodes[0]
        return self._forwarders[primary.name]

    def channel(self) -> ChannelClient:
        return self.current().channel()

    @property
    def forwarded(self) -> int:
        return sum(forwarder.forwarded for forwarder in self._forwarders.values())

    async def aclose(self) -> None:
        for forwarder in self._forwarders.values():
            await forwarder.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.current()(scope, receive, send)
