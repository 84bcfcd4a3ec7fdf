"""Venue nodes on the replicated journal as real processes (``haltguard venue standby``)
for the tests."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import httpx

from haltguard.replication.models import Replication, ReplicationSettings
from haltguard.replication.processes import NodeProcess
from haltguard.replication.server import free_port

TOKEN = "replication-test-token-0123456789"
_customers = itertools.count(1)


def node(name: str, base_dir: Path, nats_url: str, stream: str,
         lease_ttl_ms: int = 600) -> NodeProcess:
    """A node with the demo's markets (and 5 demo orders a second) once it serves."""
    settings = ReplicationSettings(replication=Replication.JETSTREAM, stream=stream,
                                   lease_ttl_ms=lease_ttl_ms)
    return NodeProcess(name, base_dir / name, free_port(), nats_url, settings,
                       channel_port=free_port(),
                       env={**os.environ, "HALTGUARD_VENUE_TOKEN": TOKEN}, demo_rate_per_s=5.0,
                       log_path=base_dir / f"{name}.log")


def replication_status(node: NodeProcess) -> dict[str, object]:
    """A standby's ``/v1/replication``."""
    answer: dict[str, object] = httpx.get(f"{node.url}/v1/replication", timeout=1.0).json()
    return answer


def log_text(node: NodeProcess) -> str:
    return node.log_file().read_text(errors="replace")
