"""``serve`` with the replicated journal refuses a configuration that cannot work before it
starts any venue, and leaves nothing running."""

from __future__ import annotations

from pathlib import Path

import pytest

from haltguard.app.replicas import NATS_DIR, start_replica_set
from haltguard.replication.errors import ReplicationConfigError
from haltguard.replication.models import Replication, ReplicationSettings
from haltguard.replication.server import free_port


def _settings(**changes: object) -> ReplicationSettings:
    return ReplicationSettings(replication=Replication.JETSTREAM, **changes)  # type: ignore[arg-type]


def test_serve_refuses_to_start_when_no_nats_is_reachable(tmp_path: Path) -> None:
    settings = _settings(nats_url=f"nats://127.0.0.1:{free_port()}")
    with pytest.raises(ReplicationConfigError, match="cannot reach NATS"):
        start_replica_set(settings, tmp_path, "token", demo_rate_per_s=0.0, drills=False,
                          checkpoint_every=1_000)
    assert not (tmp_path / "standby").exists()  # no venue node was started


def test_serve_refuses_more_replicas_than_its_local_nats_has_servers(tmp_path: Path) -> None:
    with pytest.raises(ReplicationConfigError, match="3 replicas") as refused:
        start_replica_set(_settings(replicas=3), tmp_path, "token", demo_rate_per_s=0.0,
                          drills=False, checkpoint_every=1_000)
    assert "continuity.replicas" in (refused.value.next_step or "")
    assert (tmp_path / NATS_DIR).exists() and not (tmp_path / "standby").exists()
