"""``surge``: order entry at several times the venue's capacity (manual 1.1, サーバーの過負荷).

Eight customers send new orders at once, together ``Scale.load_multiple`` times the
configured ``order_capacity_per_s``, each at an even pace whatever the answers (an open-loop
load: a surge does not slow down because the venue is slow). They run in load-generator
processes of their own, so the load does not compete with the serving process for its
interpreter lock. Load shedding must hold: what is beyond capacity is refused with 429 or 503
and ``Retry-After`` before it reaches the queue; the orders admitted come near the configured
capacity (well below it, this host does not sustain what is configured, and the drill says
to lower it) and are acknowledged within the load detector's bound (``ack_p99_ms_max``) as
the customers measured it; nothing acknowledged is lost; and the load detector's
``load.order_rate`` opens an incident that pages and gets a public update in Japanese and
English. The drill fails, saying why, if it could not offer the surge it wanted, and refuses
to start while the load rule still rests after an earlier surge (no page would prove
detection).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import select
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import httpx

from haltguard.common.clock import utc_now
from haltguard.common.units import BPS
from haltguard.detection import records as decision_records
from haltguard.detection.decisions import DecisionKind
from haltguard.drill.checks import (
    ledger_check,
    lost_orders,
    paged_check,
    public_update_check,
    unfinished,
)
from haltguard.drill.load import (
    HTTP_TIMEOUT_S,
    AcknowledgedOrder,
    Background,
    VenueClient,
    milliseconds,
    percentile,
    read_http_answer,
    venue_api_url,
)
from haltguard.drill.observe import count_notices, count_pages, halted_markets, timeline_times
from haltguard.drill.play import (
    first_response,
    generate_reports,
    resolve_incident,
    write_postmortem,
)
from haltguard.drill.scenario import Check, DrillContext, DrillResult, Measurements
from haltguard.drill.surface import DrillSurface, database
from haltguard.drill.waiting import DrillError, seconds_between, wait_for
from haltguard.gateway.limits import SheddingSettings
from haltguard.gateway.load_signals import latency_percentile_ms
from haltguard.incidents import service as incidents
from haltguard.incidents.rules import Category
from haltguard.venue.types import MarketState

NAME = "surge"
RULE_ID = "order-rate-over-capacity"
CLIENTS = 8  # concurrent customers, each with its own account (the shedder's fairness key)
FIRST_ACCOUNT = 11  # demo accounts 11..18 (funded by the demo)
GENERATOR_PROCESSES = 2  # load-generator processes sharing the customers
GENERATOR_START_TIMEOUT_S = 30.0
GENERATOR_GRACE_S = 30.0  # past the surge's end, for the last answers and the report
IN_FLIGHT_HORIZON_S = 0.5  # connections per customer: its rate x this (answers that slow)
CONNECTIONS_PER_CUSTOMER_MIN = 4
CONNECTIONS_PER_CUSTOMER_MAX = 64
LATE_S = 0.010  # a send this far behind its schedule counts as late
ANSWER_BYTES_MAX = 1_000_000
SURGE_SECONDS_MIN = 4.0  # long enough for the load detector's windows to see it
SURGE_SECONDS_MAX = 30.0
OFFERED_SHARE_MIN = 0.9  # the drill must offer at least this share of the surge it wanted
ADMITTED_SHARE_MIN = 0.8  # of capacity: below, the host does not sustain what is configured
ADMITTED_MARGIN_MAX = 1.1  # over what the shedder may admit with its bursts: it did not hold
PRICE_AWAY_BPS = 200  # orders rest 2% away from the mid, so the surge does not move prices
PROBE_TIMEOUT_S = 10.0
ACKNOWLEDGED = (201, 200)  # placed; or, sent again with its client_order_id, placed before


@dataclass
class SurgeRecord:
    """What the customers saw, answer by answer, measured in the generators."""

    sent: int = 0
    acknowledged: list[AcknowledgedOrder] = field(default_factory=list)
    ack_latencies_ms: list[float] = field(default_factory=list)
    ack_sent_s: list[float] = field(default_factory=list)  # when each was sent, in the surge
    shed_latencies_ms: list[float] = field(default_factory=list)
    shed: Counter[int] = field(default_factory=Counter)  # status -> count
    shed_without_retry_after: int = 0
    other: Counter[str] = field(default_factory=Counter)  # anything else, by status or error
    elapsed_s: float = 0.0  # from "go" to the last answer
    send_span_s: float = 0.0  # from "go" to the last order sent
    late_sends: int = 0  # orders sent more than LATE_S behind their schedule
    gateway_counts: list[int] | None = None  # the gateway's own latency buckets, this surge


def rule_rests_until(system: DrillSurface) -> datetime | None:
    """When the load rule can open and page for a new episode again, if not now: after it
    fired, an episode resolves ``clear_after_s`` after the load clears, and a new firing
    within ``cooldown_s`` of that joins the old episode without paging."""
    detection = system.detection
    rule = detection.rules.rule(RULE_ID) if detection is not None else None
    if rule is None:
        return None  # no such rule: the wait for its incident says so
    with database(system) as session:
        last = session.scalars(decision_records.decisions_query(rule_id=RULE_ID).limit(1)).first()
        if last is None:
            return None
        wait_s = rule.cooldown_s + (0 if last.kind == DecisionKind.RESOLVED.value
                                    else rule.clear_after_s)
        until = last.decided_at + timedelta(seconds=wait_s)
    return until if until > utc_now() else None


def admitted_per_s_max(settings: SheddingSettings, capacity: int, span_s: float) -> float:
    """The most the shedder may admit a second over ``span_s`` of surge: capacity, plus the
    burst it lets through at once and each customer's own burst within its share."""
    burst = capacity * settings.capacity_burst_ms / 1000 + CLIENTS * settings.client_burst
    return capacity + burst / span_s






class SurgeScenario:
    name = NAME
    title_en = "Surge: order entry at several times capacity; load shedding holds"
    title_ja = "注文の殺到: 処理能力の数倍の注文でも負荷制御が維持される"

    def run(self, context: DrillContext) -> DrillResult:
        system, scale, progress = context.system, context.scale, context.progress
        result = DrillResult(NAME, None, Measurements(), [], started_at=utc_now())
        capacity = int(system.order_capacity_per_s)
        wanted_per_s = capacity * scale.load_multiple
        seconds = min(max(scale.orders / wanted_per_s, SURGE_SECONDS_MIN), SURGE_SECONDS_MAX)
        resting_until = rule_rests_until(system)
        if resting_until is not None:
            raise DrillError(
                f"rule {RULE_ID} fired recently and rests until {resting_until:%H:%M:%S} UTC "
                "(its clear_after_s and cooldown_s): a surge before then joins that episode "
                "and pages no one, so the drill could not prove detection; run it again after "
                "that time, or on a system of its own (--own-system)")
        with VenueClient.for_system(system) as client:
            symbol, grid = market_grid(client)
        guard = system.load_guard
        settings = guard.settings if guard is not None else SheddingSettings()
        progress(f"{NAME}: {CLIENTS} customers in {GENERATOR_PROCESSES} load-generator "
                 f"processes at {wanted_per_s:g} orders/s together ({scale.load_multiple:g} x "
                 f"capacity {capacity}/s) for {seconds:.1f} s")
        gateway_before = guard.ack_latency_counts() if guard is not None else None
        surge_at = utc_now()
        surging = Background(lambda: generate(venue_api_url(system), symbol, grid,
                                              wanted_per_s, seconds))
        first = first_response(context, result, surge_at, rule_id=RULE_ID,
                               cause_en="order entry at several times capacity",
                               cause_ja="注文の殺到による混雑")
        record = surging.result()
        surge_end = utc_now()
        if guard is not None and gateway_before is not None:
            record.gateway_counts = [after - before for after, before in
                                     zip(guard.ack_latency_counts(), gateway_before, strict=True)]
        progress(f"{NAME}: sent {record.sent}, acknowledged {len(record.acknowledged)}, "
                 f"shed {sum(record.shed.values())}; checking the venue took new orders again")
        recovered_at = _probe(venue_api_url(system), symbol, grid)
        self._measure(result, settings=settings, capacity=capacity, wanted_per_s=wanted_per_s,
                      seconds=seconds, record=record)
        self._journal(context, result, record)
        if isinstance(first, DrillError):
            result.checks.append(unfinished(first))
        else:
            result.incident_id = first
            self._incident(context, result, surge_at=surge_at, surge_end=surge_end,
                           recovered_at=recovered_at, record=record)
        result.finished_at = utc_now()
        return result

    def _measure(self, result: DrillResult, *, settings: SheddingSettings, capacity: int,
                 wanted_per_s: float, seconds: float, record: SurgeRecord) -> None:
        m = result.measurements
        bound_ms = settings.ack_p99_ms_max
        span_s = max(seconds, record.send_span_s)
        offered_per_s = record.sent / span_s
        admitted_per_s = len(record.acknowledged) / span_s
        shed = sum(record.shed.values())
        p50 = percentile(record.ack_latencies_ms, 0.50)
        p99 = percentile(record.ack_latencies_ms, 0.99)
        shed_p99 = percentile(record.shed_latencies_ms, 0.99)
        steady_p99 = percentile([latency for latency, sent_s in zip(
            record.ack_latencies_ms, record.ack_sent_s, strict=True) if sent_s >= 1.0], 0.99)
        if record.gateway_counts is not None and any(record.gateway_counts):
            gateway_p50 = latency_percentile_ms(record.gateway_counts, 50)
            gateway_p99 = latency_percentile_ms(record.gateway_counts, 99)
            m.extra["gateway_ack_p50_ms"] = f"< {gateway_p50}"
            m.extra["gateway_ack_p99_ms"] = f"< {gateway_p99}"
        # A busy host explains much of a slow surge.
        host = f"{os.getloadavg()[0]:.1f} ({os.cpu_count()} コア / cores)"
        m.extra.update({
            "host_load_average": host,
            "capacity_per_s": str(capacity),
            "wanted_per_s": f"{wanted_per_s:.0f}",
            "surge_seconds": f"{span_s:.2f}",
            "offered_per_s": f"{offered_per_s:.0f}",
            "admitted_per_s": f"{admitted_per_s:.0f}",
            "orders_sent": str(record.sent),
            "orders_sent_late": str(record.late_sends),
            "orders_acknowledged": str(len(record.acknowledged)),
            "shed_429": str(record.shed[429]),
            "shed_503": str(record.shed[503]),
            "ack_p50_ms": milliseconds(p50),
            "ack_p99_ms": milliseconds(p99),
            "ack_p99_ms_after_first_s": milliseconds(steady_p99),
            "shed_p99_ms": milliseconds(shed_p99),
        })
        low = capacity * ADMITTED_SHARE_MIN
        high = admitted_per_s_max(settings, capacity, span_s) * ADMITTED_MARGIN_MAX
        other = ", ".join(f"{key} x{n}" for key, n in record.other.most_common(5)) or "none"
        result.checks += [
            Check("surge offered", offered_per_s >= wanted_per_s * OFFERED_SHARE_MIN,
                  f">= {wanted_per_s * OFFERED_SHARE_MIN:.0f} orders/s offered "
                  f"({OFFERED_SHARE_MIN:.0%} of the wanted {wanted_per_s:.0f}/s)",
                  f"{offered_per_s:.0f} orders/s from {CLIENTS} customers in "
                  f"{GENERATOR_PROCESSES} processes ({record.late_sends} sent late)",
                  name_ja="殺到の発生",
                  expected_ja=f"{wanted_per_s * OFFERED_SHARE_MIN:.0f} 件/秒以上",
                  seen_ja=f"{offered_per_s:.0f} 件/秒"),
            Check("load shed with Retry-After", shed > 0 and record.shed_without_retry_after == 0,
                  "orders beyond capacity refused with 429/503, each with Retry-After",
                  f"{record.shed[429]} x 429, {record.shed[503]} x 503, "
                  f"{record.shed_without_retry_after} without Retry-After",
                  name_ja="負荷制御(Retry-After 付き)", expected_ja="429/503 と Retry-After",
                  seen_ja=f"429: {record.shed[429]} 件, 503: {record.shed[503]} 件"),
            Check("no failure other than shedding", not record.other,
                  "every answer a 201 (200 for an order sent again) or a 429/503 refusal; no 5xx, "
                  "no dropped connection",
                  other, name_ja="負荷制御以外の失敗なし", expected_ja="なし", seen_ja=other),
            Check("admitted rate at capacity", low <= admitted_per_s <= high,
                  f"{low:.0f}..{high:.0f} orders/s admitted (the configured capacity "
                  f"{capacity}/s; below it, this host does not sustain the configured "
                  "venue.order_capacity_per_s and it should be lowered; above it, shedding "
                  "let too much through)",
                  f"{admitted_per_s:.0f} orders/s", name_ja="受付レートが処理能力どおり",
                  expected_ja=f"{low:.0f}〜{high:.0f} 件/秒",
                  seen_ja=f"{admitted_per_s:.0f} 件/秒"),
            Check("admitted orders acknowledged in bounded time",
                  p99 is not None and p99 <= bound_ms,
                  f"p99 of admitted orders' acknowledgements <= {bound_ms} ms as the customers "
                  "measured them (the load detector's bound, load.order_ack_p99_ms)",
                  f"p50 {milliseconds(p50)} ms, p99 {milliseconds(p99)} ms over "
                  f"{len(record.ack_latencies_ms)} "
                  f"admitted orders (host load average {host})", name_ja="受付注文の応答時間",
                  expected_ja=f"p99 {bound_ms} ms 以下(顧客側計測)",
                  seen_ja=f"p50 {milliseconds(p50)} ms, p99 {milliseconds(p99)} ms"),
        ]

    def _journal(self, context: DrillContext, result: DrillResult, record: SurgeRecord) -> None:
        """Every acknowledged order in the journal, and the ledger's invariants, whatever
        became of the incident."""
        system, m = context.system, result.measurements
        lost = lost_orders(system, record.acknowledged)
        ledger = ledger_check(system)
        m.acknowledged_orders_lost = lost.count
        m.ledger_invariant_ok = ledger.ok
        result.checks += [
            Check("no acknowledged order lost", lost.count == 0,
                  "every acknowledged order in the journal",
                  f"{lost.count} of {lost.checked} missing",
                  name_ja="受付済み注文の消失なし", expected_ja="0 件",
                  seen_ja=f"{lost.checked} 件中 {lost.count} 件消失"),
            Check("ledger invariant after the surge", ledger.ok,
                  "funds conserved, books sane", ledger.detail,
                  name_ja="台帳の整合性", expected_ja="整合",
                  seen_ja="整合" if ledger.ok else "不整合"),
        ]

    def _incident(self, context: DrillContext, result: DrillResult, *, surge_at: datetime,
                  surge_end: datetime, recovered_at: datetime, record: SurgeRecord) -> None:
        system = context.system
        m = result.measurements
        incident_id = result.incident_id
        assert incident_id is not None
        halted = halted_markets(system)
        result.note("市場は停止されず負荷制御で保護されたため、再開操作は不要でした。",
                    "No market was halted (shedding protected the venue), so there was "
                    f"nothing to resume; markets stopped now: {', '.join(halted) or 'none'}.")
        resolve_incident(system, incident_id,
                         "drill: surge over, orders admitted normally again")
        times = timeline_times(system, incident_id)
        pages = count_pages(system, incident_id)
        with database(system) as session:
            category = incidents.get(session, incident_id).category
        m.time_to_detect_s = seconds_between(surge_at, times.detected_at)
        m.time_to_first_update_s = seconds_between(surge_at,
                                                   times.first_public_update_at)
        m.recovery_time_s = seconds_between(surge_end, recovered_at)
        m.notices_sent = count_notices(system, incident_id).sent
        m.extra["pages"] = str(pages)
        result.checks += [
            Check("load signal opened an incident", category == Category.SERVER_DOWN,
                  f"rule {RULE_ID} opens a server_down (overload) incident",
                  f"incident {incident_id}, {category.value}",
                  name_ja="負荷シグナルによるインシデント", expected_ja="server_down(過負荷)",
                  seen_ja=f"{category.value}"),
            Check("no market halted by the surge", not halted,
                  "shedding, not a halt, protects the venue", ", ".join(halted) or "none",
                  name_ja="市場停止なし", expected_ja="なし", seen_ja=", ".join(halted) or "なし"),
            paged_check(pages),
            public_update_check(times.public_update_ja, times.public_update_en),
        ]
        if context.report_dir is not None:
            write_postmortem(
                system, incident_id, summary="Drill: order entry at several times capacity.",
                cause="A surge of new orders, injected by the drill.",
                went_well=["Load shedding refused the excess with Retry-After."],
                went_badly=[])
            result.report_paths += [str(p) for p in generate_reports(
                system, incident_id, context.report_dir)]


@dataclass(frozen=True)
class OrderGrid:
    tick: Decimal
    qty: str
    bid_price: str  # where the surge's buy orders rest, away from the mid


def market_grid(client: VenueClient) -> tuple[str, OrderGrid]:
    markets = [m for m in client.markets()["markets"] if m["state"] == MarketState.OPEN.value]
    if not markets:
        raise DrillError("no open market to send orders to; start the system with --demo")
    spec = next((m for m in markets if m["symbol"] == "BTC-JPY"), markets[0])
    symbol = str(spec["symbol"])
    detail = client.market(symbol)
    tick = Decimal(str(spec["tick_size"]))
    top = detail.get("best_bid") or detail.get("best_ask")
    mid = Decimal(str(top)) if top else tick * 100_000
    bid = (mid * (BPS - PRICE_AWAY_BPS) / BPS / tick).to_integral_value(ROUND_DOWN) * tick
    return symbol, OrderGrid(tick, str(spec["min_qty"]), str(max(bid, tick)))


# --- the load generators -----------------------------------------------------------------
#
# The surge comes from processes of its own: a client in the serving process would share its
# interpreter lock with the gateway it measures, and slow both down (the drill would then
# offer less than it wants and see latency that is its own). Each generator is handed a plan
# as one JSON line on stdin, says "ready", starts on "go" and prints one JSON line with every
# order's answer. It speaks HTTP/1.1 on raw keep-alive connections: a full client library in
# Python tops out far below the rates a surge needs.


@dataclass(frozen=True)
class Customer:
    """One account sending ``rate_per_s`` new orders a second on an even schedule."""

    account: int
    rate_per_s: float
    connections: int  # orders this customer may have awaiting an answer at once
    client_order_id_prefix: str


def connections_for(rate_per_s: float) -> int:
    """Enough connections to keep the pace while answers take up to ``IN_FLIGHT_HORIZON_S``
    (Little's law), within bounds."""
    wanted = math.ceil(rate_per_s * IN_FLIGHT_HORIZON_S)
    return min(max(wanted, CONNECTIONS_PER_CUSTOMER_MIN), CONNECTIONS_PER_CUSTOMER_MAX)


def generator_plans(base_url: str, symbol: str, grid: OrderGrid, rate_per_s: float,
                    seconds: float, *, stamp: str) -> list[dict[str, Any]]:
    """The plans of ``GENERATOR_PROCESSES`` generators sharing ``CLIENTS`` customers who,
    together, offer ``rate_per_s`` orders a second for ``seconds``."""
    url = httpx.URL(base_url)
    per_customer = rate_per_s / CLIENTS
    customers = [Customer(FIRST_ACCOUNT + n, per_customer, connections_for(per_customer),
                          f"drill-surge-{stamp}-{n}-") for n in range(CLIENTS)]
    processes = min(GENERATOR_PROCESSES, CLIENTS)
    return [{
        "host": str(url.host), "port": int(url.port or 80),
        "path": f"{url.path.rstrip('/')}/v1/markets/{symbol}/orders",
        "qty": grid.qty, "price": grid.bid_price, "seconds": seconds,
        "timeout_s": HTTP_TIMEOUT_S,
        "customers": [dataclasses.asdict(c) for c in customers[index::processes]],
    } for index in range(processes)]


def generate(base_url: str, symbol: str, grid: OrderGrid, rate_per_s: float,
             seconds: float) -> SurgeRecord:
    """Run the generators to the end of the surge and gather what their customers saw."""
    plans = generator_plans(base_url, symbol, grid, rate_per_s, seconds,
                            stamp=utc_now().strftime("%H%M%S%f"))
    return run_generators(plans, symbol, seconds)


def run_generators(plans: list[dict[str, Any]], symbol: str, seconds: float) -> SurgeRecord:
    """One generator process per plan, started together on "go"; their answers merged."""
    processes: list[subprocess.Popen[str]] = []
    try:
        for plan in plans:
            process = subprocess.Popen(
                [sys.executable, "-c", GENERATOR_COMMAND], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            processes.append(process)
            assert process.stdin is not None
            process.stdin.write(json.dumps(plan) + "\n")
            process.stdin.flush()
        for process in processes:
            _wait_ready(process)
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = []
        for process in processes:
            try:
                out, err = process.communicate(timeout=seconds + GENERATOR_GRACE_S)
            except subprocess.TimeoutExpired:
                raise DrillError(f"a load generator (pid {process.pid}) did not finish within "
                                 f"{seconds + GENERATOR_GRACE_S:g} s of a {seconds:g} s "
                                 "surge; the host is too busy to offer it") from None
            if process.returncode != 0:
                raise DrillError(f"a load generator failed (exit {process.returncode}): "
                                 f"{err.strip()[-500:]}")
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(GENERATOR_GRACE_S)
    return merge_outputs(outputs, symbol)


def _wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], GENERATOR_START_TIMEOUT_S)
    line = process.stdout.readline() if readable else ""
    if line.strip() != "ready":
        process.kill()
        _, err = process.communicate(timeout=GENERATOR_GRACE_S)
        raise DrillError(f"a load generator did not start within {GENERATOR_START_TIMEOUT_S:g}"
                         f" s (said {line.strip()!r}; {err.strip()[-300:] or 'no error'})")


def merge_outputs(outputs: list[dict[str, Any]], symbol: str) -> SurgeRecord:
    """One record from the generators' answers (``[client_order_id, account, status,
    latency_us, seq, order_id, retry_after, error, sent_ms]`` per order)."""
    record = SurgeRecord()
    for output in outputs:
        record.elapsed_s = max(record.elapsed_s, float(output["elapsed_s"]))
        record.send_span_s = max(record.send_span_s, float(output["send_span_s"]))
        record.late_sends += int(output["late_sends"])
        for client_order_id, account, status, latency_us, seq, order_id, retry_after, error, \
                sent_ms in output["orders"]:
            record.sent += 1
            if error:
                record.other[str(error)] += 1
            elif status in ACKNOWLEDGED:
                record.ack_latencies_ms.append(latency_us / 1000)
                record.ack_sent_s.append(sent_ms / 1000)
                record.acknowledged.append(AcknowledgedOrder(
                    seq=int(seq), order_id=int(order_id), client_order_id=str(client_order_id),
                    market=symbol, account=int(account)))
            elif status in (429, 503):
                record.shed[status] += 1
                record.shed_latencies_ms.append(latency_us / 1000)
                if not retry_after:
                    record.shed_without_retry_after += 1
            else:
                record.other[f"HTTP {status}"] += 1
    return record


GENERATOR_COMMAND = "from haltguard.drill.scenarios.surge import generator_main; generator_main()"


def generator_main() -> None:
    """A load generator's process: plan on stdin, "ready" once connected, "go", then one
    JSON line of results."""
    plan = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(_generate(plan)), separators=(",", ":")), flush=True)


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _generate(plan: dict[str, Any]) -> dict[str, Any]:
    """Connect every customer's connections (customers keep theirs open, as trading clients
    do), say "ready", wait for "go", then send on schedule until the surge's end."""
    host, port, path = str(plan["host"]), int(plan["port"]), str(plan["path"])
    seconds, timeout_s = float(plan["seconds"]), float(plan["timeout_s"])
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json"
            "\r\nUser-Agent: haltguard-drill-surge\r\n")
    orders: list[list[Any]] = []
    late = 0
    last_send = 0.0
    started = 0.0

    async def connect() -> Stream:
        return await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)

    async def exchange(stream: Stream, request: bytes) -> tuple[int, dict[str, str], bytes]:
        stream[1].write(request)
        return await asyncio.wait_for(_read_answer(stream[0]), timeout_s)

    async def customer(spec: dict[str, Any], streams: list[Stream | None]) -> None:
        account, prefix = int(spec["account"]), str(spec["client_order_id_prefix"])
        interval_s = 1 / float(spec["rate_per_s"])
        total = math.floor(seconds / interval_s)
        claimed = 0

        async def connection(stream: Stream | None) -> None:
            nonlocal claimed, late, last_send
            while claimed < total and time.perf_counter() - started < seconds:
                number = claimed
                claimed += 1
                delay = started + number * interval_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -LATE_S:
                    late += 1
                body = json.dumps({"account": account, "side": "buy", "qty": plan["qty"],
                                   "price": plan["price"],
                                   "client_order_id": f"{prefix}{number}"}).encode()
                request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
                sent_at = time.perf_counter()
                last_send = max(last_send, sent_at)
                row: list[Any] = [f"{prefix}{number}", account, 0, 0, 0, 0, False, "",
                                  int((sent_at - started) * 1000)]
                try:
                    if stream is None:
                        stream = await connect()
                    try:
                        status, headers, answer = await exchange(stream, request)
                    except (OSError, asyncio.IncompleteReadError) as exc:
                        if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                            raise
                        # The server closed a kept-alive connection before reading this
                        # order: sent again with the same client_order_id (safe by design).
                        stream[1].close()
                        stream = await connect()
                        status, headers, answer = await exchange(stream, request)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    row[7] = type(exc).__name__
                    orders.append(row)
                    if stream is not None:
                        stream[1].close()
                    stream = None
                    continue
                row[2] = status
                row[3] = int((time.perf_counter() - sent_at) * 1_000_000)
                row[6] = "retry-after" in headers
                if status in ACKNOWLEDGED:
                    data = json.loads(answer)  # a resent order's 200 names the original seq
                    row[4] = int(data.get("original_seq") or data["seq"])
                    row[5] = int(data["order"]["order_id"])
                orders.append(row)
                if headers.get("connection", "").lower() == "close":
                    stream[1].close()
                    stream = None
            if stream is not None:
                stream[1].close()

        await asyncio.gather(*(connection(stream) for stream in streams))

    customers = list(plan["customers"])
    opened: list[list[Stream | None]] = []
    for spec in customers:
        streams: list[Stream | None] = []
        for _ in range(int(spec["connections"])):
            try:
                streams.append(await connect())
            except (TimeoutError, OSError):
                streams.append(None)  # connects on its first order, or says why not
        opened.append(streams)
    print("ready", flush=True)
    go = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if go.strip() != "go":
        return {"orders": [], "elapsed_s": 0.0, "send_span_s": 0.0, "late_sends": 0}
    started = time.perf_counter()
    await asyncio.gather(*(customer(spec, streams)
                           for spec, streams in zip(customers, opened, strict=True)))
    return {"orders": orders, "elapsed_s": time.perf_counter() - started,
            "send_span_s": max(0.0, last_send - started), "late_sends": late}


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    return await read_http_answer(reader, ANSWER_BYTES_MAX)


def _probe(base_url: str, symbol: str, grid: OrderGrid) -> datetime:
    """When an ordinary customer's order was admitted again after the surge."""
    stamp = utc_now().strftime("%H%M%S%f")
    with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_S) as client:
        tries = iter(range(1_000_000))

        def admitted() -> datetime | None:
            body = {"account": FIRST_ACCOUNT + CLIENTS, "side": "buy", "qty": grid.qty,
                    "price": grid.bid_price, "client_order_id": f"drill-probe-{stamp}-"
                    f"{next(tries)}"}
            answer = client.post(f"/v1/markets/{symbol}/orders", json=body)
            return utc_now() if answer.status_code == 201 else None

        return wait_for(admitted, PROBE_TIMEOUT_S,
                        "an ordinary order admitted after the surge")


SCENARIO = SurgeScenario()
