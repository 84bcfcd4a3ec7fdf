"""``software-bug``: a command makes the engine raise (manual 1.1, ソフトウェアのバグ).

The drill arms the venue's fault injection (``POST /v1/admin/faults``, allowed only on a
venue started for drills) for one client order id prefix and sends that poison order under
load. What must hold: the venue does not die (it keeps answering and the other markets keep
trading); the poison command is quarantined and listed (``GET /v1/admin/quarantine``); its
market is halted; an incident opens; nothing acknowledged is lost and the ledger holds; and
after the drill's phased resume the market trades again.
"""

from __future__ import annotations

import secrets
from typing import Any

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

FAULT_KIND = "engine_raise"
INCIDENT_WAIT_S = 10.0
CAUSE_EN = ("A command made the matching engine raise (a fault the drill injected); the venue "
            "quarantined it and halted its market.")
CAUSE_JA = ("注文の処理中にマッチングエンジンが例外を送出した(訓練による障害注入)。取引所は"
            "その注文を隔離し、該当市場を停止した。")


def _quarantine_entries(client: VenueClient) -> list[dict[str, Any]]:
    response = client.admin_get("quarantine")
    if response.status_code != 200:
        raise DrillError(f"GET /v1/admin/quarantine answered {response.status_code}: "
                         f"{response.text[:300]}")
    body = response.json()
    entries = body.get("quarantined", body) if isinstance(body, dict) else body
    return [entry for entry in entries if isinstance(entry, dict)]


class SoftwareBug:
    name = "software-bug"
    title_en = "Software bug: the engine raises on a command"
    title_ja = "ソフトウェアのバグ: 注文処理中のエンジン例外"

    def run(self, context: DrillContext) -> DrillResult:
        system, scale, progress = context.system, context.scale, context.progress
        result = DrillResult(self.name, None, Measurements(), [])
        client = VenueClient.for_system(system)
        states = client.market_states()
        trading = sorted(m for m, state in states.items() if state in TRADING_STATES)
        if len(trading) < 2:
            raise DrillError(f"software-bug needs two trading markets (one to break, one to "
                             f"keep trading); the venue has: {states}")
        market, others = trading[0], trading[1:]
        prefix = f"drill-poison-{secrets.token_hex(4)}"
        armed = client.admin_post("faults", {"kind": FAULT_KIND,
                                             "client_order_id_prefix": prefix})
        if armed.status_code not in {200, 201}:
            client.close()
            raise DrillError(
                f"the venue refused to arm the fault (POST /v1/admin/faults answered "
                f"{armed.status_code}: {armed.text[:300]}); software-bug needs a venue started "
                "with fault injection allowed (drill.enabled) and a build that has it")
        progress(f"fault armed: {FAULT_KIND} on client order ids starting {prefix}")
        load = OrderLoad(venue_api_url(system), orders=scale.orders, prefix="drill-sb",
                         rate_per_s=background_rate_per_s(system)).start()
        watch = MarketWatch(client).start()
        try:
            warm = max(1, scale.orders // 4)
            wait_for(lambda: load.acknowledged_count >= warm, scale.timeout_s,
                     f"{warm} acknowledged orders", seen=load.describe, progress=progress)
            detail = client.market(market)
            price = detail.get("best_bid") or detail.get("best_ask")
            poison = {"account": 1, "side": "buy", "qty": str(detail["min_qty"]),
                      "price": price or str(detail["tick_size"]),
                      "client_order_id": f"{prefix}-1"}
            injected_at = utc_now()
            answer = client.place_patiently(market, poison, wait_s_max=scale.timeout_s)
            progress(f"poison order sent to {market}: HTTP {answer.status_code}")
            halted_at = wait_for(
                lambda: utc_now() if client.market_states().get(market) in HALT_STATES else None,
                scale.timeout_s, f"{market} halted by the venue", seen=lambda: watch.last)
            progress(f"{market} halted after {seconds_between(injected_at, halted_at):.3f} s")
            alive = client.healthy()
            acked_then = load.acknowledged_count
            others_trading = wait_for(
                lambda: load.acknowledged_count > acked_then + 5 or load.done, scale.timeout_s,
                "orders still acknowledged in the other markets", seen=load.describe,
                progress=progress)
            entries = _quarantine_entries(client)
            listed = [entry for entry in entries if prefix in str(entry)]
            progress(f"quarantine lists {len(listed)} command(s) of this drill")
            try:
                incident_id = wait_for(
                    lambda: incident_for(system, since=injected_at,
                                         category=Category.SOFTWARE_BUG),
                    min(scale.timeout_s / 4, INCIDENT_WAIT_S),
                    "an incident for the engine fault",
                    seen=lambda: decisions_seen(system, injected_at))
                detected = True
            except DrillError as exc:
                progress(f"NOT DETECTED: {exc}")
                detected = False
                incident_id = open_incident_by_hand(
                    system, result.note, title=f"{market}: the engine raised on a command "
                    "(drill)", category=Category.SOFTWARE_BUG, severity=Severity.SEV2,
                    markets=[market], components=["venue"])
            result.incident_id = incident_id
            progress(f"incident {incident_ref(incident_id)} opened")
            take_incident(system, incident_id, started_at=injected_at, cause=CAUSE_EN)
            update_at = ensure_public_update(system, incident_id, grace_s=min(2.0, scale.timeout_s),
                                             cause_ja=CAUSE_JA, cause_en=CAUSE_EN, note=result.note)
            client.admin_delete("faults")
            ledger = ledger_check(system)
            progress(f"ledger on a journal replay: {ledger.detail}")
            resume = play_resume(system, incident_id, [market],
                                 reason="drill: poison command quarantined, ledger checked")
            result.note(
                f"訓練が承認担当の運用者として {market} の段階的再開を実施した({resume.detail})。",
                f"The drill played the approving operator for the phased resume of {market} "
                f"({resume.detail})" + ("; SEV1, so also the second approver."
                                         if resume.approvals else "."))
            trading_at = wait_trading(system, [market], scale.timeout_s)
            load.wait_done(scale.timeout_s, progress)
            progress(f"order load done: {load.describe()}")
        finally:
            load.stop()
            watch.stop()
        lost = lost_orders(system, load.acknowledged)
        ledger = ledger_check(system)
        client.close()
        times = timeline_times(system, incident_id)
        m = result.measurements
        m.time_to_detect_s = seconds_between(injected_at, times.detected_at) if detected else None
        m.time_to_halt_s = seconds_between(injected_at, halted_at)
        m.time_to_first_update_s = seconds_between(injected_at, update_at)
        m.recovery_time_s = seconds_between(injected_at, trading_at)
        m.acknowledged_orders_lost = lost.count
        m.ledger_invariant_ok = ledger.ok
        m.extra.update({
            "poison order answer": f"HTTP {answer.status_code}",
            "quarantined (this drill)": str(len(listed)),
            "acknowledged orders": str(lost.checked),
            "pages": str(count_pages(system, incident_id)),
        })
        result.checks += [
            Check("venue alive after the engine fault", alive and bool(others_trading),
                  f"the venue answers and {', '.join(others)} keep trading",
                  f"health {'ok' if alive else 'failing'}; {load.acknowledged_count} acknowledged",
                  name_ja="エンジン例外後も取引所は稼働",
                  expected_ja="応答を続け、他の市場の取引が継続",
                  seen_ja=f"ヘルス {'正常' if alive else '異常'}、"
                  f"受付 {load.acknowledged_count} 件"),
            Check("poison command quarantined and reported", bool(listed),
                  "GET /v1/admin/quarantine lists the command",
                  f"{len(listed)} listed of {len(entries)}",
                  name_ja="問題の注文の隔離と報告", expected_ja="隔離一覧に該当注文が載る",
                  seen_ja=f"{len(entries)} 件中 {len(listed)} 件"),
            Check("poison order not acknowledged", answer.status_code != 201,
                  "the poison order is refused, never acknowledged",
                  f"HTTP {answer.status_code}",
                  name_ja="問題の注文は受付されない", expected_ja="受付(201)されない",
                  seen_ja=f"HTTP {answer.status_code}"),
            Check("incident opened from the venue's halt and quarantine", detected,
                  "a software_bug incident opened by detection",
                  incident_ref(incident_id) if detected else "none; the drill opened it by hand",
                  name_ja="停止と隔離の検知によるインシデント起票",
                  expected_ja="検知による software_bug インシデント",
                  seen_ja=incident_ref(incident_id) if detected else "なし(訓練が手動で起票)"),
            public_update_check(times.public_update_ja, times.public_update_en),
            timeline_check(times.kinds, ("opened", "public_update", "resume")),
        ]
        finish_incident(context, result, incident_id, cause_en=CAUSE_EN,
                        went_well=[f"{lost.checked} acknowledged orders, {lost.count} lost.",
                                   f"Ledger after recovery: {ledger.detail}."])
        return result


SCENARIO = SoftwareBug()
