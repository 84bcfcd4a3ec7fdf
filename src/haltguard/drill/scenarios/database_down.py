"""``database-down``: the operations database becomes unreachable (manual 1.1, データベース
障害), in this process, for a few seconds.

Every new connection and every checkout from the pool fails with the driver's own
``OperationalError`` (SQLAlchemy engine events) and the pool is emptied, as when the server
goes away; then the events are removed and connections succeed again.

Policy: the venue keeps its own journal and needs no operations database, and no setting
asks for a halt when that database is away, so the venue keeps trading; the drill checks it
does (orders are still acknowledged during the outage) and that nothing is lost. During the
outage the drill raises a detection signal (a failing health check, as a monitor would);
the decision it causes must become an incident once the database is back: detection must
not lose what it accepted. Time to detect is the database monitor's own (its first decision
after the outage began), not the drill's signal; a short outage it does not see is "n/a".
If detection loses the decision, the check says so and the drill opens the incident itself
(as the incident commander would) so the rest of the response is still rehearsed.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DisconnectionError

from haltguard.common.clock import utc_now
from haltguard.detection import service as detection
from haltguard.detection.signals import Signal
from haltguard.drill.checks import ledger_check, lost_orders, public_update_check, timeline_check
from haltguard.drill.load import OrderLoad, background_rate_per_s, venue_api_url
from haltguard.drill.observe import count_pages, decisions_seen, incident_for, timeline_times
from haltguard.drill.play import (
    ensure_public_update,
    finish_incident,
    open_incident_by_hand,
    take_incident,
)
from haltguard.drill.scenario import (
    Check,
    DrillContext,
    DrillResult,
    Measurements,
    Scale,
)
from haltguard.drill.waiting import DrillError, seconds_between, wait_for
from haltguard.incidents.rules import Category, Severity, incident_ref

OUTAGE_S_FULL = 20.0  # long enough for the database monitor (3 failures at 5 s) to see it
OUTAGE_S_REDUCED = 3.0
PROGRESS_EVERY_S = 5.0
PROBE_COMPONENT = "operations-database"
DRILL_RULE = "component-down"
CAUSE_EN = "The operations database was unreachable (connections refused by the drill)."
CAUSE_JA = "運用データベースに接続できなかった(訓練により接続を拒否)。"


class DatabaseOutage:
    """Makes ``engine`` unreachable until :meth:`end`: connects and checkouts fail."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.refused = 0
        self.active = False
        self._lock = threading.Lock()
        dbapi: Any = engine.dialect.loaded_dbapi
        self._error_type: type[Exception] = dbapi.OperationalError

    def _count(self) -> None:
        with self._lock:
            self.refused += 1

    def _refuse_connect(self, *_args: object) -> None:
        self._count()
        raise self._error_type("the database is unreachable (haltguard drill database-down)")

    def _refuse_checkout(self, *_args: object) -> None:
        self._count()
        raise DisconnectionError("the database is unreachable (haltguard drill database-down)")

    def begin(self) -> DatabaseOutage:
        self.engine.dispose()
        event.listen(self.engine, "do_connect", self._refuse_connect)
        event.listen(self.engine, "checkout", self._refuse_checkout)
        self.active = True
        self.engine.dispose()
        return self

    def end(self) -> None:
        """Connections succeed again; safe to call twice."""
        if not self.active:
            return
        self.active = False
        event.remove(self.engine, "checkout", self._refuse_checkout)
        event.remove(self.engine, "do_connect", self._refuse_connect)


def database_answers(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def outage_seconds(scale: Scale) -> float:
    return OUTAGE_S_FULL if scale.orders >= Scale().orders else OUTAGE_S_REDUCED


class DatabaseDown:
    name = "database-down"
    title_en = "Database down: the operations database unreachable"
    title_ja = "データベース障害: 運用データベースへの接続不能"

    def run(self, context: DrillContext) -> DrillResult:
        system, scale, progress = context.system, context.scale, context.progress
        engine = system.database_engine
        result = DrillResult(self.name, None, Measurements(), [])
        outage_s = outage_seconds(scale)
        if system.detection is None:
            raise DrillError("this system runs no detection service; database-down needs one")
        load = OrderLoad(venue_api_url(system), orders=scale.orders, prefix="drill-dd",
                         rate_per_s=background_rate_per_s(system)).start()
        outage = DatabaseOutage(engine)
        try:
            warm = max(1, scale.orders // 4)
            wait_for(lambda: load.acknowledged_count >= warm, scale.timeout_s,
                     f"{warm} acknowledged orders", seen=load.describe, progress=progress)
            acked_before = load.acknowledged_count
            injected_at = utc_now()
            outage.begin()
            progress(f"operations database unreachable for {outage_s:g} s")
            reachable_during = database_answers(engine)
            signal_ts = time.time_ns()
            decisions = detection.submit(Signal(
                source="drill", name="health.failed", value=Decimal(3), ts_ns=signal_ts,
                labels={"component": PROBE_COMPONENT, "check": "drill-database-down"},
                details={"why": "raised by the drill while the database is unreachable"}))
            progress(f"signal raised during the outage: {len(decisions)} decision(s)")
            ends = time.monotonic() + outage_s
            while (left := ends - time.monotonic()) > 0:
                time.sleep(min(left, PROGRESS_EVERY_S))
                progress(f"outage: {max(ends - time.monotonic(), 0):.0f} s left, "
                         f"{load.acknowledged_count - acked_before} orders acknowledged so far")
            acked_during = load.acknowledged_count - acked_before
            outage.end()
            back_at = wait_for(lambda: utc_now() if database_answers(engine) else None,
                               scale.timeout_s, "the database to answer again")
            progress(f"database back after {seconds_between(injected_at, back_at):.2f} s; "
                     f"{acked_during} orders acknowledged during the outage")
            system.detection.flush(scale.timeout_s)
            incident_id: int | None
            try:
                incident_id = wait_for(
                    lambda: incident_for(system, since=injected_at, rule_id=DRILL_RULE,
                                         labels={"component": PROBE_COMPONENT}),
                    min(scale.timeout_s / 4, 10.0),
                    "the incident of the decision made during the outage",
                    seen=lambda: decisions_seen(system, injected_at))
                kept = True
            except DrillError as exc:
                kept = False
                progress(f"LOST: {exc}")
                incident_id = open_incident_by_hand(
                    system, result.note, title="Operations database unreachable (drill)",
                    category=Category.DATABASE, severity=Severity.SEV2,
                    components=[PROBE_COMPONENT])
            result.incident_id = incident_id
            progress(f"incident {incident_ref(incident_id)}")
            take_incident(system, incident_id, started_at=injected_at, cause=CAUSE_EN)
            update_at = ensure_public_update(system, incident_id, grace_s=min(2.0, scale.timeout_s),
                                             cause_ja=CAUSE_JA, cause_en=CAUSE_EN, note=result.note)
            load.wait_done(scale.timeout_s, progress)
            progress(f"order load done: {load.describe()}")
        finally:
            outage.end()
            load.stop()
        lost = lost_orders(system, load.acknowledged)
        ledger = ledger_check(system)
        times = timeline_times(system, incident_id)
        detected = [d.ts_ns for d in system.detection.recent_decisions()
                    if d.ts_ns >= signal_ts and d.signal.source != "drill"
                    and d.rule_id == DRILL_RULE]
        m = result.measurements
        # The drill's own signal is not a detection: the time is the database monitor's.
        m.time_to_detect_s = ((min(detected) - signal_ts) / 1e9 if detected else None)
        m.time_to_first_update_s = seconds_between(injected_at, update_at)
        m.recovery_time_s = seconds_between(injected_at, back_at)
        m.acknowledged_orders_lost = lost.count
        m.ledger_invariant_ok = ledger.ok
        m.extra.update({
            "outage (s)": f"{outage_s:g}",
            "connections refused": str(outage.refused),
            "orders acknowledged during the outage": str(acked_during),
            "decisions at the signal": str(len(decisions)),
            "database monitor fired during the outage": "yes" if detected else "no",
            "acknowledged orders": str(lost.checked),
            "pages": str(count_pages(system, incident_id)),
        })
        if not detected:
            result.note(
                f"データベース監視は {outage_s:g} 秒の障害中に発報しなかった(連続失敗の回数に"
                "達しない)ため、検知までの時間は対象外とした。",
                f"The database monitor did not fire within the {outage_s:g} s outage (too few "
                "failed checks in a row), so time to detect is not applicable.")
        result.note("方針: 取引所は自身のジャーナルで動き運用データベースを必要としないため、"
                    "停止設定はなく取引を継続する。",
                    "Policy: the venue runs on its own journal and needs no operations "
                    "database, and no setting halts it when that database is away: it keeps "
                    "trading.")
        result.checks += [
            Check("database unreachable during the outage", not reachable_during,
                  "connections refused", "refused" if not reachable_during else "it answered",
                  name_ja="障害中はデータベースに接続不能", expected_ja="接続が拒否される",
                  seen_ja="拒否" if not reachable_during else "応答あり"),
            Check("venue kept trading during the outage", acked_during > 0,
                  "orders still acknowledged", f"{acked_during} acknowledged",
                  name_ja="障害中も取引を継続", expected_ja="注文の受付が続く",
                  seen_ja=f"{acked_during} 件受付"),
            Check("decision made during the outage kept", kept,
                  "the signal's decision becomes an incident once the database is back",
                  "incident opened" if kept else "lost: detection did not record it "
                  "(the drill opened the incident by hand)",
                  name_ja="障害中の検知結果の保持",
                  expected_ja="データベース復旧後にインシデントとして記録される",
                  seen_ja="記録された" if kept else "消失(訓練が手動で起票)"),
            public_update_check(times.public_update_ja, times.public_update_en),
            timeline_check(times.kinds, ("opened", "public_update")),
        ]
        finish_incident(context, result, incident_id, cause_en=CAUSE_EN,
                        went_well=[f"{acked_during} orders acknowledged during the outage.",
                                   f"{lost.checked} acknowledged orders, {lost.count} lost."])
        return result


SCENARIO = DatabaseDown()
