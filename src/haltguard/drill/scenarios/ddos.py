"""``ddos``: a request flood on the public venue API (manual 1.2, DDoS攻撃).

Several attacker addresses (``127.0.0.65`` and up: on Linux all of ``127.0.0.0/8`` is
loopback, so the drill binds its sockets to distinct source addresses) send requests as fast
as they can. The request-flood limiter must rate limit each (429 with ``Retry-After``), then
block the repeat offenders with an expiry and raise ``security.request_flood``, which rule
``request-flood`` turns into a ``ddos`` incident and a page. Meanwhile the status page and
its JSON must keep answering (the drill measures their p99) and a legitimate customer must
keep getting through.

Loopback and the private ranges are exempt from the per-address limit by default (the
exchange's own gateway lives there), so for the length of the flood the drill takes its
attacker network, ``127.0.0.64/26``, out of the exempt networks: those addresses stand for
the internet. It puts them back afterwards and, playing the operator, lifts its blocks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from haltguard.common.clock import utc_now
from haltguard.common.network import IPNetwork
from haltguard.detection.signals import Signal
from haltguard.drill.checks import ledger_check, paged_check, public_update_check, unfinished
from haltguard.drill.load import (
    HTTP_TIMEOUT_S,
    Background,
    milliseconds,
    percentile,
    read_http_answer,
    venue_api_url,
)
from haltguard.drill.observe import count_notices, count_pages, timeline_times
from haltguard.drill.play import (
    first_response,
    generate_reports,
    note_on_incident,
    resolve_incident,
    write_postmortem,
)
from haltguard.drill.scenario import Check, DrillContext, DrillResult, Measurements
from haltguard.drill.surface import database
from haltguard.drill.waiting import DrillError, seconds_between
from haltguard.gateway.shedding import LoadGuard
from haltguard.incidents import service as incidents
from haltguard.incidents.rules import Category

NAME = "ddos"
RULE_ID = "request-flood"
ATTACKER_NETWORK = ipaddress.IPv4Network("127.0.0.64/26")
FIRST_ATTACKER = 65  # 127.0.0.65, .66, ...
ATTACKERS_MIN = 2
ATTACKERS_MAX = 8
REQUESTS_PER_ATTACKER = 50  # Scale.burst / this = attackers
IN_FLIGHT_PER_ATTACKER = 16  # connections per address
RESPONSE_BYTES_MAX = 1_000_000
FLOOD_PATH = "/v1/markets"  # the public market list, what a scraper or a flood hits
FLOOD_SECONDS_MIN = 3.0
FLOOD_SECONDS_MAX = 30.0
FLOOD_REQUESTS_PER_SECOND = 20  # Scale.burst / this = seconds of flood (10 s at full scale)
PROBE_INTERVAL_S = 0.05
STATUS_PATHS = ("/status/", "/api/v2/summary.json")
STATUS_P99_MS_MAX = 1_000.0  # the status page must stay usable under the flood
LEGITIMATE_SHARE_MIN = 0.95  # of a customer's requests answered 200 during the flood




def without_attackers(networks: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
    """``networks`` with the attacker network carved out of whichever contains it."""
    kept: list[IPNetwork] = []
    for network in networks:
        if isinstance(network, ipaddress.IPv4Network) and ATTACKER_NETWORK.subnet_of(network):
            kept.extend(network.address_exclude(ATTACKER_NETWORK))
        else:
            kept.append(network)
    return tuple(kept)


@dataclass
class AttackerRecord:
    address: str
    sent: int = 0
    answered: Counter[str] = field(default_factory=Counter)  # "200", "rate_limited", ...
    limited_without_retry_after: int = 0
    first_limited_s: float | None = None
    blocked_s: float | None = None


@dataclass
class ProbeRecord:
    """A client that is not attacking: its statuses and latencies during the flood."""

    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())




class DdosScenario:
    name = NAME
    title_en = "DDoS: a request flood is limited and blocked; the status page stays up"
    title_ja = "DDoS攻撃: リクエストの洪水を制限・遮断し、ステータスページは稼働を継続"

    def run(self, context: DrillContext) -> DrillResult:
        system, scale, progress = context.system, context.scale, context.progress
        result = DrillResult(NAME, None, Measurements(), [], started_at=utc_now())
        guard = system.load_guard
        if guard is None or guard.flood is None:
            raise DrillError("this process holds no request limiter for the venue API (the "
                             "drill must run inside the serving process: haltguard drill "
                             "against haltguard serve, or its own system)")
        flood = guard.flood
        settings = flood.settings
        attackers = min(max(scale.burst // REQUESTS_PER_ATTACKER, ATTACKERS_MIN), ATTACKERS_MAX)
        addresses = [f"127.0.0.{FIRST_ATTACKER + n}" for n in range(attackers)]
        seconds = min(max(scale.burst / FLOOD_REQUESTS_PER_SECOND, FLOOD_SECONDS_MIN),
                      FLOOD_SECONDS_MAX)
        venue_url = venue_api_url(system)
        api_url = (system.api_url or venue_url).rstrip("/")
        with guard.lock:
            exempt_before = flood.set_exempt_networks(
                without_attackers(settings.exempt_networks))
        result.note(f"攻撃元 {ATTACKER_NETWORK} を訓練の間だけ除外対象から外しました。",
                    f"For the flood, the drill took {ATTACKER_NETWORK} out of the limiter's "
                    "exempt networks (those loopback addresses stand for the internet).")
        progress(f"{NAME}: {attackers} addresses flood the venue API for {seconds:g} s (limit "
                 f"{settings.rate_per_s}/s, burst {settings.burst}, block after "
                 f"{settings.refusals_to_block} refusals); status page and a customer watched")
        flood_at = utc_now()
        try:
            stop = threading.Event()
            customer, status_page = ProbeRecord(), ProbeRecord()
            probes = [
                threading.Thread(target=_probe, args=(venue_url, ["/v1/markets"], customer,
                                                      stop), daemon=True),
                threading.Thread(target=_probe, args=(api_url, list(STATUS_PATHS),
                                                      status_page, stop), daemon=True),
            ]
            for thread in probes:
                thread.start()
            flooding = Background(lambda: asyncio.run(
                _flood(venue_url, addresses, seconds, scale.timeout_s)))
            try:
                first = first_response(context, result, flood_at, rule_id=RULE_ID,
                                       cause_en="a flood of requests from outside",
                                       cause_ja="外部からの大量アクセス")
                records, elapsed_s = flooding.result()
            finally:
                stop.set()
                for thread in probes:
                    thread.join(HTTP_TIMEOUT_S + 1)
            flood_end = utc_now()
            blocks = {client: block.reason for client, block in flood.limiter.blocks.items()
                      if client.removeprefix("address:") in addresses}
        finally:
            with guard.lock:
                flood.set_exempt_networks(exempt_before)
        self._measure(result, records=records, elapsed_s=elapsed_s, customer=customer,
                      status_page=status_page, blocks=blocks)
        result.measurements.ledger_invariant_ok = ledger_check(system).ok
        if isinstance(first, DrillError):
            result.checks.append(unfinished(first))
        else:
            result.incident_id = first
            self._respond(context, result, guard=guard, flood_at=flood_at, flood_end=flood_end,
                          records=records, blocks=blocks)
        result.finished_at = utc_now()
        return result

    def _measure(self, result: DrillResult, *, records: list[AttackerRecord], elapsed_s: float,
                 customer: ProbeRecord, status_page: ProbeRecord,
                 blocks: dict[str, str]) -> None:
        m = result.measurements
        sent = sum(r.sent for r in records)
        limited = sum(r.answered["rate_limited"] for r in records)
        refused_blocked = sum(r.answered["client_blocked"] for r in records)
        without_retry = sum(r.limited_without_retry_after for r in records)
        status_p99 = percentile(status_page.latencies_ms, 0.99)
        status_ok = status_page.statuses[200]
        customer_ok = customer.statuses[200]
        m.extra.update({
            "attackers": str(len(records)),
            "flood_requests": str(sent),
            "flood_rate_per_s": f"{sent / elapsed_s:.0f}" if elapsed_s else "n/a",
            "rate_limited_429": str(limited),
            "refused_while_blocked": str(refused_blocked),
            "clients_blocked": str(len(blocks)),
            "status_page_requests": str(status_page.total),
            "status_page_p50_ms": milliseconds(percentile(status_page.latencies_ms, 0.5)),
            "status_page_p99_ms": milliseconds(status_p99),
            "customer_requests": str(customer.total),
            "customer_p99_ms": milliseconds(percentile(customer.latencies_ms, 0.99)),
        })
        reasons = "; ".join(f"{client}: {reason}" for client, reason in sorted(blocks.items()))
        result.checks += [
            Check("flood rate limited with Retry-After", limited > 0 and without_retry == 0,
                  "429 rate_limited with Retry-After once an address is over its limit",
                  f"{limited} x 429 rate_limited of {sent} requests, {without_retry} "
                  "without Retry-After",
                  name_ja="レート制限(Retry-After 付き)", expected_ja="429 と Retry-After",
                  seen_ja=f"{sent} 件中 {limited} 件を制限"),
            Check("every attacker blocked", len(blocks) == len(records),
                  f"all {len(records)} attacker addresses blocked with the rule and values",
                  reasons or "no block", name_ja="攻撃元の遮断",
                  expected_ja=f"{len(records)} アドレスすべて", seen_ja=f"{len(blocks)} 件"),
            Check("status page up during the flood",
                  status_page.total > 0 and status_ok == status_page.total
                  and status_p99 is not None and status_p99 <= STATUS_P99_MS_MAX,
                  f"every /status and JSON request answered 200, p99 <= {STATUS_P99_MS_MAX:g} ms",
                  f"{status_ok} of {status_page.total} answered 200, p99 "
                  f"{m.extra['status_page_p99_ms']} ms",
                  name_ja="ステータスページの稼働", expected_ja="すべて 200、p99 1 秒以下",
                  seen_ja=f"{status_page.total} 件中 {status_ok} 件 200、p99 "
                  f"{m.extra['status_page_p99_ms']} ms"),
            Check("a legitimate customer gets through",
                  customer.total > 0 and customer_ok >= customer.total * LEGITIMATE_SHARE_MIN,
                  f">= {LEGITIMATE_SHARE_MIN:.0%} of a customer's requests answered 200",
                  f"{customer_ok} of {customer.total}",
                  name_ja="正規利用者の通過", expected_ja=f"{LEGITIMATE_SHARE_MIN:.0%} 以上",
                  seen_ja=f"{customer.total} 件中 {customer_ok} 件"),
        ]

    def _respond(self, context: DrillContext, result: DrillResult, *, guard: LoadGuard[Signal],
                 flood_at: datetime, flood_end: datetime, records: list[AttackerRecord],
                 blocks: dict[str, str]) -> None:
        system = context.system
        m = result.measurements
        incident_id = result.incident_id
        assert incident_id is not None
        note_on_incident(system, incident_id, "drill: clients blocked by the request "
                         "limiter: " + "; ".join(f"{client} ({reason})" for client, reason
                                                 in sorted(blocks.items())))
        lifted = [client for client in sorted(blocks) if guard.flood is not None
                  and guard.flood.limiter.unblock(client)]
        result.note(f"訓練が担当者として {len(lifted)} 件の遮断を解除しました。",
                    f"The drill played the operator who lifted the {len(lifted)} blocks "
                    "after the flood.")
        resolve_incident(system, incident_id, "drill: flood over, blocks lifted")
        times = timeline_times(system, incident_id)
        pages = count_pages(system, incident_id)
        with database(system) as session:
            category = incidents.get(session, incident_id).category
            fired = [entry for entry in incidents.timeline(session, incident_id)
                     if (entry.details or {}).get("rule_id") == RULE_ID]
            explained = bool(fired) and all(
                "reason" in (entry.details.get("signal_details") or {}) for entry in fired)
        first_block_s = min((r.blocked_s for r in records if r.blocked_s is not None),
                            default=None)
        last_block_s = max((r.blocked_s for r in records if r.blocked_s is not None),
                           default=None)
        m.time_to_detect_s = seconds_between(flood_at, times.detected_at)
        m.time_to_halt_s = first_block_s
        m.time_to_first_update_s = seconds_between(flood_at,
                                                   times.first_public_update_at)
        m.recovery_time_s = last_block_s
        m.notices_sent = count_notices(system, incident_id).sent
        m.extra["pages"] = str(pages)
        m.extra["protective_action"] = (
            "大量送信元の遮断(停止時間: 最初の遮断、復旧時間: 最後の攻撃元の遮断) / flooding "
            "addresses blocked (time to halt: first block; recovery: last attacker blocked)")
        m.extra["flood_seconds"] = f"{(flood_end - flood_at).total_seconds():.2f}"
        result.checks += [
            Check("classified as DDoS", category == Category.DDOS,
                  "category ddos (manual 1.2)", category.value,
                  name_ja="分類: DDoS攻撃", expected_ja="ddos", seen_ja=category.value),
            Check("block explained in the timeline", explained,
                  f"rule {RULE_ID} with the limiter's reason and values",
                  f"{len(fired)} entries from the rule",
                  name_ja="遮断理由の記録", expected_ja="ルールと値", seen_ja=f"{len(fired)} 件"),
            paged_check(pages),
            public_update_check(times.public_update_ja, times.public_update_en),
        ]
        if context.report_dir is not None:
            write_postmortem(
                system, incident_id, summary="Drill: a request flood on the public API.",
                cause="A flood from several addresses, injected by the drill.",
                went_well=["The limiter blocked every flooding address on its own."],
                went_badly=[])
            result.report_paths += [str(p) for p in generate_reports(
                system, incident_id, context.report_dir)]











async def _flood(base_url: str, addresses: list[str], seconds_min: float,
                 attacker_timeout_s: float) -> tuple[list[AttackerRecord], float]:
    """The addresses flood in turn: each with all its connections until it is blocked (or
    ``attacker_timeout_s`` passed), then with one connection until the flood ends, for at
    least ``seconds_min`` in all (a flood does not stop because it is refused). In turn,
    because a forwarding gateway may serve fewer requests a second than several addresses
    need together to each pass their own limit. Returns the records and the seconds taken.

    A flood tool does not need a full HTTP client: each connection writes a prepared
    request and reads the answer's head and body, which lets one process offer thousands
    of requests a second (an ordinary client library tops out far lower)."""
    url = httpx.URL(base_url)
    host, port = str(url.host), int(url.port or 80)
    request = (f"GET {FLOOD_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "User-Agent: haltguard-drill-flood\r\n\r\n").encode()
    started = time.perf_counter()
    records = [AttackerRecord(address) for address in addresses]
    flood_over = False

    async def connection(record: AttackerRecord, stop: Callable[[], bool]) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port,
                                                           local_addr=(record.address, 0))
        except OSError as exc:
            record.answered[type(exc).__name__] += 1
            return
        try:
            while not stop():
                record.sent += 1
                writer.write(request)
                await writer.drain()
                status, headers, body = await _answer(reader)
                _note(record, status, headers, body, time.perf_counter() - started)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            record.answered[type(exc).__name__] += 1
        finally:
            writer.close()

    lingering: list[asyncio.Task[None]] = []
    for record in records:
        phase_end = time.perf_counter() + attacker_timeout_s

        def phase_over(record: AttackerRecord = record, phase_end: float = phase_end) -> bool:
            return record.blocked_s is not None or time.perf_counter() >= phase_end

        await asyncio.gather(*(connection(record, phase_over)
                               for _ in range(IN_FLIGHT_PER_ATTACKER)))
        lingering.append(asyncio.create_task(connection(record, lambda: flood_over)))
    remaining_s = seconds_min - (time.perf_counter() - started)
    if remaining_s > 0:
        await asyncio.sleep(remaining_s)
    flood_over = True
    await asyncio.gather(*lingering)
    return records, time.perf_counter() - started


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    return await read_http_answer(reader, RESPONSE_BYTES_MAX)


def _note(record: AttackerRecord, status: int, headers: dict[str, str], body: bytes,
          at_s: float) -> None:
    if status != 429:
        record.answered[str(status)] += 1
        return
    try:
        code = str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        code = "http_429"
    record.answered[code] += 1
    if not headers.get("retry-after"):
        record.limited_without_retry_after += 1
    if code == "rate_limited" and record.first_limited_s is None:
        record.first_limited_s = at_s
    if code == "client_blocked" and record.blocked_s is None:
        record.blocked_s = at_s


def _probe(base_url: str, paths: list[str], record: ProbeRecord, stop: threading.Event) -> None:
    """Ask ``paths`` in turn every ``PROBE_INTERVAL_S`` until ``stop``."""
    with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_S,
                      follow_redirects=True) as client:
        turn = 0
        while not stop.is_set():
            path = paths[turn % len(paths)]
            turn += 1
            started = time.perf_counter()
            try:
                answer = client.get(path)
            except httpx.HTTPError as exc:
                record.errors[type(exc).__name__] += 1
            else:
                record.statuses[answer.status_code] += 1
                record.latencies_ms.append((time.perf_counter() - started) * 1000)
            stop.wait(PROBE_INTERVAL_S)



SCENARIO = DdosScenario()
