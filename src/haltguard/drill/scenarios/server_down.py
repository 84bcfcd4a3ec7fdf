"""``server-down``: the venue process is killed with SIGKILL under load (manual 1.1, サーバー
ダウン); the supervisor restarts it from snapshot + journal.

What must hold: every acknowledged order is still in the recovered journal and the venue
comes back at or past it; the ledger's invariants hold on a replay; an incident opens from
the supervisor's ``venue.process_exited`` signal (or the venue's health monitor); customers
are told in Japanese and English.

Halt on restart: the drill's reading of the runbook (general ``verify_before_resume``:
balances and orders are checked, and resuming is always a person's decision) is that a venue
that comes back after a crash must not reopen its markets by itself. So the drill expects
every market that was trading to be halted (or cancel-only) when the venue answers again,
checks the ledger, and then plays the operator's phased resume. A venue that reopens by
itself fails the check that says so.
"""

from __future__ import annotations

import signal

from haltguard.common.clock import utc_now
from haltguard.drill.checks import ledger_check, lost_orders, public_update_check, timeline_check
from haltguard.drill.load import OrderLoad, VenueClient, background_rate_per_s, venue_api_url
from haltguard.drill.observe import (
    HALT_STATES,
    TRADING_STATES,
    MarketWatch,
    count_pages,
    decisions_seen,
    incident_for,
    rules_for_signal,
    timeline_times,
    wait_trading,
)
from haltguard.drill.play import (
    ensure_public_update,
    finish_incident,
    open_incident_by_hand,
    play_resume,
    take_incident,
)
from haltguard.drill.scenario import Check, DrillContext, DrillResult, Measurements
from haltguard.drill.waiting import DrillError, seconds_between, wait_for
from haltguard.incidents.rules import Category, Severity, incident_ref

EXIT_SIGNAL = "venue.process_exited"
DOWN_SIGNAL = "health.failed"  # the venue's health monitor, labelled component=venue
INCIDENT_WAIT_S = 10.0
KILL_AFTER_FRACTION = 0.5  # of the load acknowledged before the kill
CAUSE_EN = "The venue process was killed with SIGKILL by the drill (simulated server crash)."
CAUSE_JA = "訓練により取引所プロセスを SIGKILL で強制終了した(サーバーダウンの模擬)。"


class ServerDown:
    name = "server-down"
    title_en = "Server down: the venue process killed under load"
    title_ja = "サーバーダウン: 負荷中の取引所プロセス強制終了"

    def run(self, context: DrillContext) -> DrillResult:
        system, scale, progress = context.system, context.scale, context.progress
        supervisor = system.supervisor
        if supervisor is None:
            raise DrillError(
                "the venue does not run as a supervised process here (venue.process = false, "
                "or this build has no supervisor), so there is no process to kill and restart"
            )
        result = DrillResult(self.name, None, Measurements(), [])
        client = VenueClient.for_system(system)
        states = client.market_states()
        trading = sorted(m for m, state in states.items() if state in TRADING_STATES)
        if not trading:
            raise DrillError(f"no market is trading before the drill: {states}")
        load = OrderLoad(venue_api_url(system), orders=scale.orders, prefix="drill-sd",
                         rate_per_s=background_rate_per_s(system)).start()
        watch = MarketWatch(client).start()
        try:
            kill_at = max(1, int(scale.orders * KILL_AFTER_FRACTION))
            progress(f"order load running; the venue is killed after {kill_at} acknowledged")
            wait_for(lambda: load.acknowledged_count >= kill_at, scale.timeout_s,
                     f"{kill_at} acknowledged orders", seen=load.describe, progress=progress)
            restarts_before, pid_before = int(supervisor.restarts), supervisor.pid
            acked_before_kill = load.acknowledged_count
            injected_at = utc_now()
            supervisor.kill(signal.SIGKILL)
            progress(f"killed venue process {pid_before} with SIGKILL at "
                     f"{acked_before_kill} acknowledged orders")
            wait_for(lambda: int(supervisor.restarts) > restarts_before, scale.timeout_s,
                     "the supervisor to restart the venue",
                     seen=lambda: f"restarts {supervisor.restarts}, running {supervisor.running}")
            supervisor.wait_ready(scale.timeout_s)
            back_at = wait_for(lambda: utc_now() if client.healthy() else None, scale.timeout_s,
                               "the restarted venue to answer")
            progress(f"venue back as process {supervisor.pid} after "
                     f"{seconds_between(injected_at, back_at):.2f} s")
            after = client.market_states()
            rules = rules_for_signal(system, EXIT_SIGNAL)
            try:
                incident_id = wait_for(
                    lambda: incident_for(system, since=injected_at, signal=EXIT_SIGNAL)
                    or incident_for(system, since=injected_at, signal=DOWN_SIGNAL,
                                    labels={"component": "venue"}),
                    min(scale.timeout_s / 4, INCIDENT_WAIT_S),
                    f"an incident opened from the {EXIT_SIGNAL} signal",
                    seen=lambda: decisions_seen(system, injected_at)
                    + ("" if rules else f"; no rule in force acts on {EXIT_SIGNAL}"))
                detected = True
            except DrillError as exc:
                progress(f"NOT DETECTED: {exc}")
                detected = False
                incident_id = open_incident_by_hand(
                    system, result.note, title="Venue process exited (drill)",
                    category=Category.SERVER_DOWN, severity=Severity.SEV2, markets=trading,
                    components=["venue"])
            result.incident_id = incident_id
            progress(f"incident {incident_ref(incident_id)} opened")
            take_incident(system, incident_id, started_at=injected_at, cause=CAUSE_EN)
            update_at = ensure_public_update(
                system, incident_id, grace_s=min(2.0, scale.timeout_s), cause_ja=CAUSE_JA,
                cause_en=CAUSE_EN, note=result.note)
            progress("public update published (ja + en)")
            held = sorted(m for m in trading if after.get(m) in HALT_STATES)
            reopened = sorted(m for m in trading if after.get(m) in TRADING_STATES)
            ledger = ledger_check(system)
            progress(f"ledger on a journal replay: {ledger.detail}")
            if held:
                resume = play_resume(system, incident_id, held,
                                     reason="drill: venue recovered, ledger checked")
                progress(f"phased resume of {', '.join(held)} ({resume.detail}), "
                         f"{'with' if resume.approvals else 'without'} a second approver")
                result.note(
                    f"訓練が承認担当の運用者として段階的再開を実施した({resume.detail})"
                    + ("。SEV1 のため二人目の承認者も訓練が務めた。" if resume.approvals else "。"),
                    f"The drill played the approving operator for the phased resume "
                    f"({resume.detail})"
                    + ("; SEV1, so it also played the second approver." if resume.approvals
                       else "."))
                trading_at = wait_trading(system, held, scale.timeout_s)
            else:
                trading_at = back_at
            load.wait_done(scale.timeout_s, progress)
            progress(f"order load done: {load.describe()}")
        finally:
            load.stop()
            watch.stop()
            client.close()
        lost = lost_orders(system, load.acknowledged)
        progress(f"acknowledged orders checked against the journal: {lost.count} lost of "
                 f"{lost.checked}")
        ledger = ledger_check(system)
        times = timeline_times(system, incident_id)
        halt_seen = [at for market, at in watch.halted_at.items()
                     if market in trading and at >= injected_at]
        halted_at = min([*halt_seen, *([times.first_halt_at] if times.first_halt_at else [])],
                        default=None)
        m = result.measurements
        m.time_to_detect_s = seconds_between(injected_at, times.detected_at) if detected else None
        m.time_to_halt_s = seconds_between(injected_at, halted_at) if held else None
        m.time_to_first_update_s = seconds_between(injected_at, update_at)
        m.recovery_time_s = seconds_between(injected_at, trading_at)
        m.acknowledged_orders_lost = lost.count
        m.ledger_invariant_ok = ledger.ok
        m.extra.update({
            "venue down (s)": f"{seconds_between(injected_at, back_at):.2f}",
            "restarts": str(int(supervisor.restarts) - restarts_before),
            "acknowledged before the kill": str(acked_before_kill),
            "acknowledged orders": str(lost.checked),
            "journal last seq": str(lost.journal_last_seq),
            "order refusals": ", ".join(f"{k} {v}" for k, v in load.refused.items()) or "0",
            "order failures": ", ".join(f"{k} {v}" for k, v in load.failed.items()) or "0",
            "pages": str(count_pages(system, incident_id)),
        })
        result.checks += [
            Check("venue restarted by the supervisor", int(supervisor.restarts) > restarts_before,
                  "a new venue process, recovered from snapshot + journal",
                  f"process {pid_before} -> {supervisor.pid}",
                  name_ja="監視プロセスによる再起動",
                  expected_ja="スナップショットとジャーナルから復旧した新プロセス",
                  seen_ja=f"プロセス {pid_before} -> {supervisor.pid}"),
            Check("markets halted after the unplanned restart", not reopened,
                  "every market that was trading comes back halted until a person resumes it",
                  f"halted: {', '.join(held) or 'none'}; reopened by itself: "
                  f"{', '.join(reopened) or 'none'}",
                  name_ja="予期しない再起動後の取引停止",
                  expected_ja="取引中だった市場は人が再開するまで停止のまま",
                  seen_ja=f"停止: {', '.join(held) or 'なし'}、自動で再開: "
                  f"{', '.join(reopened) or 'なし'}"),
            Check("incident opened from the process-exit signal", detected,
                  f"an incident from {EXIT_SIGNAL} (or the venue's failing health check)",
                  incident_ref(incident_id) if detected else
                  f"none (rules acting on it: {', '.join(rules) or 'none'}); opened by hand",
                  name_ja="プロセス終了の検知によるインシデント起票",
                  expected_ja=f"{EXIT_SIGNAL}(または取引所のヘルスチェック失敗)からのインシデント",
                  seen_ja=incident_ref(incident_id) if detected else
                  f"なし(該当ルール: {', '.join(rules) or 'なし'})、訓練が手動で起票"),
            public_update_check(times.public_update_ja, times.public_update_en),
            timeline_check(times.kinds, ("opened", "public_update", "resume")
                           if held else ("opened", "public_update")),
        ]
        finish_incident(context, result, incident_id, cause_en=CAUSE_EN,
                        went_well=[f"{lost.checked} acknowledged orders, {lost.count} lost.",
                                   f"Ledger after recovery: {ledger.detail}."])
        return result


SCENARIO = ServerDown()
