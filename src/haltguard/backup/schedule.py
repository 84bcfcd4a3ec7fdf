"""Backups inside ``serve``: the schedule, retention, ``/metrics``, and the signals detection
turns into incidents.

Every ``tick_s`` the scheduler (one thread) reads the newest backup records (so a backup an
operator took with the CLI counts too), takes a backup when ``backup.interval_s`` has passed
since the last attempt (sooner after a failure), prunes by retention, and says what it found:

- ``/metrics``: ``haltguard_backup_last_good_age_seconds`` (the real RPO if the disk were
  lost now; +Inf before the first good backup), ``haltguard_backup_last_good_timestamp_seconds``
  and ``haltguard_backup_failures_consecutive``;
- signals: ``backup.failed`` (value: failures in a row, labels: target) after each failure,
  and ``backup.too_old`` (value: the age in seconds) while the last good backup is older than
  ``backup.age_alert_s``; each is sent ``resolved`` once the condition ends. The shipped rules
  ``backup-failed`` and ``backup-too-old`` open an incident from them.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.orm import Session, sessionmaker

from haltguard.backup import flows, service
from haltguard.backup.errors import BackupError
from haltguard.backup.settings import BackupSettings, BackupSources
from haltguard.backup.targets import open_target
from haltguard.common.clock import Clock
from haltguard.detection.signals import Signal

log = logging.getLogger(__name__)

TICK_S_DEFAULT: Final = 30.0
RETRY_S_MIN: Final = 60.0
"""After a failure the next attempt comes after a quarter of the interval, at least this."""
SIGNAL_SOURCE: Final = "backup"
FAILED_SIGNAL: Final = "backup.failed"
TOO_OLD_SIGNAL: Final = "backup.too_old"

SignalSink = Callable[[Signal], object]


class BackupMetrics:
    """The backup gauges, computed when ``/metrics`` is read (the age grows between ticks)."""

    def __init__(self, registry: CollectorRegistry, clock: Clock) -> None:
        self.clock = clock
        self.last_good_at: datetime | None = None
        self.failures_consecutive = 0
        registry.register(self)

    def age_s(self) -> float:
        if self.last_good_at is None:
            return math.inf
        return max(0.0, (self.clock.now() - self.last_good_at).total_seconds())

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "haltguard_backup_last_good_age_seconds",
            "Seconds since the last good backup finished (+Inf: none yet).", value=self.age_s())
        yield GaugeMetricFamily(
            "haltguard_backup_last_good_timestamp_seconds",
            "When the last good backup finished (Unix time; 0: none yet).",
            value=self.last_good_at.timestamp() if self.last_good_at else 0.0)
        yield GaugeMetricFamily(
            "haltguard_backup_failures_consecutive",
            "Backups that failed since the last good one.", value=self.failures_consecutive)


class BackupScheduler:
    """The loop described in the module doc; :meth:`tick` is one pass (tests call it)."""

    def __init__(  # noqa: PLR0917  (what one loop needs, each named)
        self, settings: BackupSettings, sources: BackupSources,
        session_factory: sessionmaker[Session], clock: Clock, sink: SignalSink,
        metrics: BackupMetrics, *, tick_s: float = TICK_S_DEFAULT,
    ) -> None:
        open_target(settings.target_url, settings.s3)  # a bad URL stops the start
        self.settings = settings
        self.sources = sources
        self.session_factory = session_factory
        self.clock = clock
        self.sink = sink
        self.metrics = metrics
        self.tick_s = tick_s
        self.last_attempt_at: datetime | None = None
        self.last_failed = False
        self._too_old_open = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backup-scheduler", daemon=True)

    def start(self) -> BackupScheduler:
        self._thread.start()
        return self

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        flows.run_in_background()
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must outlive any one failure; the next tick retries
                log.exception("backup scheduler tick failed")
            self._stop.wait(self.tick_s)

    def tick(self) -> None:
        self._refresh()
        if self._due():
            self._take()
            self._refresh()
        self._signal_age()

    def _refresh(self) -> None:
        with self.session_factory() as session:
            good = service.last_good_backup(session)
            newest = service.list_backups(session, limit=1)
        self.metrics.last_good_at = good.finished_at if good else None
        if newest and self.last_attempt_at is None:
            self.last_attempt_at = newest[0].finished_at

    def _due(self) -> bool:
        interval_s = self.settings.interval_s
        if interval_s <= 0:
            return False
        if self.last_attempt_at is None:
            return True
        wait_s = max(RETRY_S_MIN, interval_s / 4) if self.last_failed else interval_s
        return (self.clock.now() - self.last_attempt_at).total_seconds() >= wait_s

    def _take(self) -> None:
        started = self.clock.now()
        self.last_attempt_at = started
        target_url = open_target(self.settings.target_url, self.settings.s3).url
        try:
            manifest = flows.create_backup(self.settings, self.sources, now=started)
        except (BackupError, OSError) as exc:
            message = exc.describe() if isinstance(exc, BackupError) else str(exc)
            log.error("scheduled backup failed: %s", message)
            with self.session_factory() as session:
                service.record_backup_failure(session, target_url, message, started_at=started,
                                              finished_at=self.clock.now(), scheduled=True)
                session.commit()
            self.last_failed = True
            self.metrics.failures_consecutive += 1
            self._emit(FAILED_SIGNAL, self.metrics.failures_consecutive,
                       {"error": message[:500]}, resolved=False)
            return
        with self.session_factory() as session:
            service.record_backup(session, manifest, target_url, started_at=started,
                                  finished_at=self.clock.now(), scheduled=True)
            session.commit()
        if self.last_failed:
            self._emit(FAILED_SIGNAL, 0, {}, resolved=True)
        self.last_failed = False
        self.metrics.failures_consecutive = 0
        try:
            removed = flows.prune_backups(self.settings, now=self.clock.now())
        except BackupError as exc:
            log.warning("pruning old backups failed: %s", exc)
        else:
            if removed:
                log.info("retention removed %d backup(s): %s", len(removed), ", ".join(removed))

    def _signal_age(self) -> None:
        age_s = self.metrics.age_s()
        too_old = age_s > self.settings.age_alert_s
        if too_old:
            shown = "none yet" if math.isinf(age_s) else f"{age_s:.0f}"
            self._emit(TOO_OLD_SIGNAL, int(min(age_s, 10**12)), {
                "age_s": shown, "age_alert_s": f"{self.settings.age_alert_s:g}"}, resolved=False)
        elif self._too_old_open:
            self._emit(TOO_OLD_SIGNAL, int(age_s), {}, resolved=True)
        self._too_old_open = too_old

    def _emit(self, name: str, value: int, details: dict[str, str], *, resolved: bool) -> None:
        target = open_target(self.settings.target_url, self.settings.s3).url
        signal = Signal(source=SIGNAL_SOURCE, name=name, value=Decimal(value),
                        ts_ns=int(self.clock.now().timestamp() * 1e9),
                        labels={"component": "backup", "target": target}, details=details,
                        resolved=resolved)
        try:
            self.sink(signal)
        except Exception:  # detection down must not stop backups
            log.exception("could not hand %s to detection", name)
