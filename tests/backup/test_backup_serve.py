"""`serve` with a backup target takes a backup by itself, records it, and shows the age of
the last good backup on /metrics."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from haltguard.app.config import load_config
from haltguard.app.system import start_system
from haltguard.backup import service
from haltguard.backup.flows import complete_backups
from haltguard.backup.targets import open_target

FIRST_BACKUP_S_MAX = 30.0


def test_serve_takes_a_scheduled_backup_and_shows_its_age_on_metrics(tmp_path: Path) -> None:
    target = (tmp_path / "backups").as_uri()
    config = load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path / "data"), "venue.process": False,
        "backup.target_url": target, "backup.interval_s": 3600})
    system = start_system(config, demo=True)
    try:
        deadline = time.monotonic() + FIRST_BACKUP_S_MAX
        while True:
            with system.session_factory() as session:
                good = service.last_good_backup(session)
            if good is not None:
                break
            assert time.monotonic() < deadline, "no scheduled backup was taken"
            time.sleep(0.2)
        with TestClient(system.asgi_app()) as client:
            metrics = client.get("/metrics").text
    finally:
        system.stop()
    assert good.scheduled and good.venue_seq > 0
    assert complete_backups(open_target(target)) == [good.backup_id]
    age = next(line for line in metrics.splitlines()
               if line.startswith("haltguard_backup_last_good_age_seconds "))
    assert float(age.split()[1]) < FIRST_BACKUP_S_MAX
