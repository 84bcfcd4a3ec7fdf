"""What checking customers' signatures costs (issue 19): the check alone, and the order
throughput of the venue's API with the customer gateway in front against without it.

1. **The check alone**: ``signing.check_signed`` (HMAC-SHA256 over timestamp, method, path
   and a 90-byte order body, the receive window, the replay guard remembering every
   signature) on pre-signed requests, then the gateway's whole per-request work
   (``CustomerGateway`` with its key cache, the account bound into the body) in front of an
   app that answers at once. Microseconds per request, the best of the rounds (the machine
   is shared: the best round is the one least disturbed).
2. **Throughput, same run**: the real venue (runtime, journal, one fsync per batch) behind
   its API with the fast order lane, driven in-process over ASGI by ``--in-flight``
   concurrent clients, each sending the next order when the last is answered, for
   ``--seconds`` per leg. Legs alternate, short and many (the machine is shared): *open*
   (the ``account`` field as sent, straight to the fast lane) and *keys* (each order signed
   by its account's key, through the gateway); which goes first alternates too. The ratio
   keys/open is taken per round, then the median, with the range.

No HTTP server or client is in the loop, so the figure isolates the gateway; through
``serve``'s public port the HTTP layer adds the same cost to both legs.

Usage::

    .venv/bin/python benchmarks/bench_signing.py [--seconds 1] [--rounds 9] [--in-flight 32]

Prints a Markdown table and writes ``benchmarks/results/signing.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from haltguard.app.venue_app import create_venue_app
from haltguard.customers.gateway import CustomerGateway, KeyCache
from haltguard.customers.settings import CustomerSettings
from haltguard.customers.signing import (
    KeyGrant,
    Permission,
    ReplayGuard,
    check_signed,
    sign,
)
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.fastlane import with_fast_lane
from haltguard.gateway.limits import FloodSettings, SheddingSettings
from haltguard.gateway.runtime import VenueRuntime

RESULTS = Path(__file__).with_name("results") / "signing.json"
ACCOUNTS = range(11, 19)  # funded demo accounts
TARGET = "/v1/markets/BTC-JPY/orders"
CHECKS = 50_000
OUT_OF_REACH = 10_000_000
TARGET_CHECK_US = 50.0
TARGET_RATIO = 0.9
PRESIGNED_PER_CLIENT = 2_000


def _grant(account: int) -> KeyGrant:
    return KeyGrant(key_id=f"hgk_bench{account:04d}", account=account,
                    secret=f"bench secret of {account}".encode(),
                    permissions=frozenset({Permission.READ, Permission.TRADE}))


GRANTS = {grant.key_id: grant for grant in map(_grant, ACCOUNTS)}


def _order_body(sequence: int, account: int | None) -> bytes:
    side, price = ("buy", "1000000") if sequence % 2 else ("sell", "90000000")
    fields = (f'"side":"{side}","qty":"0.01","price":"{price}","type":"limit",'
              f'"client_order_id":"b{sequence}"')
    return (f'{{"account":{account},{fields}}}' if account is not None
            else f"{{{fields}}}").encode()


def check_alone(rounds: int) -> float:
    """Median microseconds per ``check_signed`` (signatures made beforehand)."""
    grant = next(iter(GRANTS.values()))
    now_ms = time.time_ns() // 1_000_000
    results = []
    for _ in range(rounds):
        requests = [(str(now_ms + i // 1000).encode(), _order_body(i, None)) for i in
                    range(CHECKS)]
        signed = [(stamp, body, sign(grant.secret, int(stamp), "POST", TARGET, body).encode())
                  for stamp, body in requests]
        guard = ReplayGuard(60_000, CHECKS * 2)
        started = time.perf_counter()
        for stamp, body, signature in signed:
            verdict = check_signed(grant, timestamp=stamp, signature=signature, method="POST",
                                   target=TARGET, body=body, address="203.0.113.7",
                                   now_ms=now_ms, window_ms=60_000, replay=guard)
            assert verdict.grant is grant
        results.append((time.perf_counter() - started) / CHECKS * 1e6)
    return min(results)


def _scope(body: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": TARGET, "raw_path": TARGET.encode(),
            "query_string": b"", "client": ("203.0.113.7", 40000), "http_version": "1.1",
            "scheme": "http", "server": ("127.0.0.1", 8000), "root_path": "",
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()), *headers]}


async def _send_one(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    status = 0
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(body, headers), receive, send)
    return status


def _signed_request(sequence: int, account: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    grant = _grant(account)
    body = _order_body(sequence, account)  # the same body as the open leg's, signed
    stamp = time.time_ns() // 1_000_000
    return body, [(b"x-api-key", grant.key_id.encode()),
                  (b"x-api-timestamp", str(stamp).encode()),
                  (b"x-api-signature", sign(grant.secret, stamp, "POST", TARGET, body).encode())]


async def _leg(app: Any, *, signed: bool, seconds: float, in_flight: int,
               cpu_us: list[float] | None = None) -> tuple[float, int]:
    """Orders acknowledged a second over ``seconds``, and how many were not 2xx. Requests
    are made (and signed) before the clock starts: a customer's machine signs, not ours.
    ``cpu_us[0]`` gets the process's CPU time per order (every thread: the event loop and
    the venue's), steadier than throughput on a shared machine."""
    cpu_us = cpu_us if cpu_us is not None else [0.0]
    ready = [[_signed_request(index * PRESIGNED_PER_CLIENT + i, ACCOUNTS[index % 8]) if signed
              else (_order_body(index * PRESIGNED_PER_CLIENT + i, ACCOUNTS[index % 8]), [])
              for i in range(PRESIGNED_PER_CLIENT)] for index in range(in_flight)]
    done = 0
    refused = 0

    async def client(requests: list[tuple[bytes, list[tuple[bytes, bytes]]]]) -> None:
        nonlocal done, refused
        while requests and time.perf_counter() < deadline:
            body, headers = requests.pop()
            status = await _send_one(app, body, headers)
            done += 1
            if status not in {200, 201}:
                refused += 1

    gc.collect()
    gc.freeze()  # the requests made beforehand are not the server's garbage to collect
    deadline = time.perf_counter() + seconds
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(requests) for requests in ready))
        cpu_us[0] = (time.process_time() - cpu_started) / max(done, 1) * 1e6
        return done / (time.perf_counter() - started), refused
    finally:
        gc.unfreeze()


async def gateway_alone(rounds: int) -> float:
    """Median microseconds of the gateway's per-request work before an app that answers."""
    async def answer(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    keys = KeyCache(lambda: list(GRANTS.values()), lambda: 1, refresh_s=3600)
    keys.refresh(force=True)
    gateway = CustomerGateway(answer, keys, CustomerSettings(receive_window_ms=60_000))
    results = []
    for _ in range(rounds):
        requests = [_signed_request(i, ACCOUNTS[i % len(ACCOUNTS)]) for i in range(10_000)]
        plain = [(_order_body(i, 11), []) for i in range(10_000)]
        started = time.perf_counter()
        for body, headers in plain:
            await _send_one(answer, body, headers)  # type: ignore[arg-type]
        base = time.perf_counter() - started
        started = time.perf_counter()
        for body, headers in requests:
            assert await _send_one(gateway, body, headers) == 201
        results.append((time.perf_counter() - started - base) / len(requests) * 1e6)
    return min(results)


async def throughput(seconds: float, rounds: int, in_flight: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="haltguard-bench-signing-") as data_dir:
        runtime = VenueRuntime(Path(data_dir) / "venue").start()
        try:
            set_up_demo(runtime)
            shedding = SheddingSettings(
                order_capacity_per_s=OUT_OF_REACH, client_burst=1_000_000,
                flood=FloodSettings(rate_per_s=OUT_OF_REACH, burst=1_000_000))
            front = with_fast_lane(create_venue_app(runtime, "bench-admin-token-0000",
                                                    load_shedding=shedding))
            keys = KeyCache(lambda: list(GRANTS.values()), lambda: 1, refresh_s=3600)
            keys.refresh(force=True)
            gateway = CustomerGateway(front, keys, CustomerSettings(receive_window_ms=60_000))
            await _leg(front, signed=False, seconds=min(1.0, seconds), in_flight=in_flight)
            legs = []
            for round_no in range(rounds):
                open_cpu, keys_cpu = [0.0], [0.0]
                if round_no % 2:
                    keys_rate, keys_refused = await _leg(gateway, signed=True, seconds=seconds,
                                                         in_flight=in_flight, cpu_us=keys_cpu)
                open_rate, open_refused = await _leg(front, signed=False, seconds=seconds,
                                                     in_flight=in_flight, cpu_us=open_cpu)
                if not round_no % 2:
                    keys_rate, keys_refused = await _leg(gateway, signed=True, seconds=seconds,
                                                         in_flight=in_flight, cpu_us=keys_cpu)
                legs.append({"open_per_s": open_rate, "keys_per_s": keys_rate,
                             "ratio": keys_rate / open_rate,
                             "open_cpu_us": open_cpu[0], "keys_cpu_us": keys_cpu[0],
                             "cpu_ratio": open_cpu[0] / keys_cpu[0],
                             "refused": open_refused + keys_refused})
        finally:
            runtime.stop()
    return {"legs": legs,
            "open_per_s": statistics.median(leg["open_per_s"] for leg in legs),
            "keys_per_s": statistics.median(leg["keys_per_s"] for leg in legs),
            "ratio": statistics.median(leg["ratio"] for leg in legs),
            "open_cpu_us": statistics.median(leg["open_cpu_us"] for leg in legs),
            "keys_cpu_us": statistics.median(leg["keys_cpu_us"] for leg in legs),
            "cpu_ratio": statistics.median(leg["cpu_ratio"] for leg in legs),
            "refused": sum(leg["refused"] for leg in legs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    check_us = check_alone(args.rounds)
    gateway_us = asyncio.run(gateway_alone(args.rounds))
    flow = asyncio.run(throughput(args.seconds, args.rounds, args.in_flight))
    result = {"check_us": check_us, "gateway_us": gateway_us, **flow,
              "seconds": args.seconds, "rounds": args.rounds, "in_flight": args.in_flight}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| signature check alone | {check_us:.1f} µs | < {TARGET_CHECK_US:g} µs |")
    print(f"| gateway per request (check + key lookup + account bound) | {gateway_us:.1f} µs "
          f"| < {TARGET_CHECK_US:g} µs |")
    print(f"| orders/s, open (account as sent) | {flow['open_per_s']:.0f} | |")
    print(f"| orders/s, keys (signed, through the gateway) | {flow['keys_per_s']:.0f} | |")
    per_round = ", ".join(f"{leg['ratio']:.2f}" for leg in flow["legs"])
    print(f"| keys / open (median of per-round ratios) | {flow['ratio']:.2f} ({per_round}) "
          f"| >= {TARGET_RATIO} |")
    print(f"| CPU per order, open / keys (all threads) | {flow['open_cpu_us']:.0f} µs / "
          f"{flow['keys_cpu_us']:.0f} µs | |")
    cpu_rounds = ", ".join(f"{leg['cpu_ratio']:.2f}" for leg in flow["legs"])
    print(f"| orders per CPU-second, keys / open | {flow['cpu_ratio']:.2f} ({cpu_rounds}) "
          f"| >= {TARGET_RATIO} |")
    print(f"| orders not acknowledged | {flow['refused']} | 0 |")


if __name__ == "__main__":
    main()
