"""The replicated journal (NATS JetStream): durable throughput against the local journal
alone, failover time over repeated kills, and a standby's lag.

1. **Throughput.** The workload flow (``order_flow(seed=7)``) through :class:`VenueRuntime`
   from ``--submitters`` tasks awaiting ``submit_async`` (as the HTTP routes do), three
   ways in the same run, alternating, ``--rounds`` each: the local journal alone (fsync per
   batch), the local journal plus one JetStream message per batch on one nats-server, and
   the same on a three-node cluster (replicas = 3). Ratios are against the local figure of
   the same run.
2. **Failover.** Two ``haltguard venue standby`` processes on one nats-server, paced
   customers following ``/v1/health``; ``--kills`` times the primary is SIGKILLed, and the
   failover time is from the old primary's last acknowledged order to the new one's first
   (the lease TTL included; the killed node restarts as a standby between kills). After the
   last kill every acknowledged order is looked for in the primary's journal at its seq,
   and the two nodes' states are compared by hash.
3. **Standby lag.** A standby following a primary fed ``--lag-rate`` orders a second (the
   demo's rate by default): each batch's age when the standby applied it.

Usage::

    .venv/bin/python benchmarks/bench_replication.py [--commands N] [--submitters 64]
        [--rounds 3] [--kills 20] [--lease-ttl-ms 1500] [--lag-rate 20] [--lag-s 10]

Real fsync on the disk under ``--data-parent`` (default: the current directory). Prints
Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

from haltguard.gateway.runtime import RuntimeLimits, VenueRuntime
from haltguard.replication.checks import Customers, failover_s, hashes_at_common_seq, lost
from haltguard.replication.link import StreamLink
from haltguard.replication.models import Replication, ReplicationSettings
from haltguard.replication.processes import NodeProcess
from haltguard.replication.publisher import BatchPublisher
from haltguard.replication.server import NatsServer, free_port, start_cluster
from haltguard.replication.standby import Follower
from haltguard.venue.commands import Command
from haltguard.venue.workload import order_flow, setup_commands

SEED = 7
TOKEN = "bench-replication-token-0123456789"
_streams = iter(range(1, 10_000))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


# -- 1. throughput ---------------------------------------------------------------------------


def throughput(flow: list[Command], submitters: int, data_parent: Path,
               nats_url: str = "", replicas: int = 1) -> float:
    """Acknowledged commands a second: local journal, plus JetStream when ``nats_url``."""
    data_dir = Path(tempfile.mkdtemp(prefix="replication-", dir=data_parent))
    link = None
    publisher = None
    if nats_url:
        settings = ReplicationSettings(replication=Replication.JETSTREAM, replicas=replicas,
                                       stream=f"BENCH{next(_streams)}")
        link = StreamLink(settings, nats_url, name="bench").connect()
        publisher = BatchPublisher(link, expected_last=0, term=1)
    runtime = VenueRuntime(data_dir, limits=RuntimeLimits(checkpoint_every=10**9),
                           replicator=publisher).start()
    try:
        for future in [runtime.submit(command) for command in setup_commands()]:
            future.result()
        shares = [flow[n::submitters] for n in range(submitters)]

        async def drive() -> float:
            async def submit(share: list[Command]) -> None:
                for command in share:
                    await runtime.submit_async(command)

            began = time.perf_counter()
            await asyncio.gather(*(submit(share) for share in shares))
            return time.perf_counter() - began

        elapsed_s = asyncio.run(drive())
    finally:
        runtime.stop()
        if link is not None:
            link.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return len(flow) / elapsed_s


def throughput_table(args: argparse.Namespace, work: Path) -> list[str]:
    first_seq = len(setup_commands()) + 1
    flow = list(order_flow(SEED, args.commands, first_seq=first_seq))
    single = NatsServer(work / "single").start()
    cluster = start_cluster(work / "cluster")
    cluster_url = ",".join(server.url for server in cluster)
    sides = {"local journal only": ("", 1), "+ JetStream, 1 node": (single.url, 1),
             "+ JetStream, 3-node cluster (R3)": (cluster_url, 3)}
    figures: dict[str, list[float]] = {name: [] for name in sides}
    try:
        for round_index in range(args.rounds):
            order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
            for name in order:
                url, replicas = sides[name]
                figures[name].append(throughput(flow, args.submitters, args.data_parent,
                                                url, replicas))
    finally:
        single.stop()
        for server in cluster:
            server.stop()
    local = statistics.median(figures["local journal only"])
    lines = [f"Durable throughput, {args.commands} commands from {args.submitters} submitters, "
             f"median of {args.rounds} rounds (range):", "",
             "| Journal | acknowledged/s | ratio to local |", "|---|---|---|"]
    for name, values in figures.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:,.0f} ({min(values):,.0f}-{max(values):,.0f}) | "
                     f"{median / local:.2f}x |")
    return lines


# -- 2. failover -----------------------------------------------------------------------------


def failover_table(args: argparse.Namespace, work: Path) -> list[str]:
    server = NatsServer(work / "failover-nats").start()
    settings = ReplicationSettings(replication=Replication.JETSTREAM, stream="FAILOVER",
                                   lease_ttl_ms=args.lease_ttl_ms)
    nodes = [NodeProcess(name, work / name, free_port(), server.url, settings,
                         env={**os.environ, "HALTGUARD_VENUE_TOKEN": TOKEN},
                         demo_rate_per_s=5.0, log_path=work / f"{name}.log")
             for name in ("a", "b")]
    times_s: list[float] = []
    try:
        nodes[0].start()
        nodes[0].wait_until("primary")
        nodes[1].start()
        nodes[1].wait_until("standby")
        customers = Customers(nodes, rate_per_s=args.failover_rate).start()
        try:
            for kill in range(args.kills):
                primary = next(node for node in nodes if node.health() == 200)
                standby = next(node for node in nodes if node is not primary)
                time.sleep(1.0)
                primary.signal(signal.SIGKILL)
                standby.wait_until("primary", 30)
                time.sleep(0.5)
                took = failover_s(customers.acks, primary.name, standby.name)
                if took is not None:
                    times_s.append(took)
                print(f"kill {kill + 1}: {took if took is None else f'{took:.3f} s'}",
                      flush=True)
                primary.start()
                primary.wait_until("standby")
        finally:
            customers.stop()
        final = next(node for node in nodes if node.health() == 200)
        time.sleep(1.0)
        missing = lost(customers.acks, final.data_dir)
        hashes = hashes_at_common_seq(*(node.data_dir for node in nodes))
    finally:
        for node in nodes:
            node.stop()
        server.stop()
    return [
        f"Failover over {args.kills} SIGKILLs of the primary (lease TTL "
        f"{args.lease_ttl_ms} ms, {args.failover_rate:g} orders/s of paced customers):", "",
        "| kills measured | p50 | p99 | max | acknowledged orders | lost | states equal |",
        "|---|---|---|---|---|---|---|",
        f"| {len(times_s)} | {percentile(times_s, 0.5):.2f} s | "
        f"{percentile(times_s, 0.99):.2f} s | {max(times_s, default=0):.2f} s | "
        f"{len(customers.acks)} | {len(missing)} | {'yes' if len(hashes) == 1 else 'NO'} |",
    ]


# -- 3. standby lag --------------------------------------------------------------------------


def lag_table(args: argparse.Namespace, work: Path) -> list[str]:
    server = NatsServer(work / "lag-nats").start()
    settings = ReplicationSettings(replication=Replication.JETSTREAM, stream="LAG")
    primary_link = StreamLink(settings, server.url, name="primary").connect()
    standby_link = StreamLink(settings, server.url, name="standby").connect()
    runtime = VenueRuntime(work / "lag-primary",
                           replicator=BatchPublisher(primary_link, expected_last=0,
                                                     term=1)).start()
    follower = Follower(work / "lag-standby", standby_link)
    try:
        for future in [runtime.submit(command) for command in setup_commands()]:
            future.result()
        follower.start()
        follower.catch_up(30)
        follower.lags_ms.clear()
        flow = list(order_flow(SEED, int(args.lag_rate * args.lag_s),
                               first_seq=len(setup_commands()) + 1))
        interval_s = 1.0 / args.lag_rate
        next_at = time.perf_counter()
        for command in flow:
            next_at += interval_s
            runtime.submit(command).result()
            time.sleep(max(0.0, next_at - time.perf_counter()))
        follower.catch_up(30)
        lags = list(follower.lags_ms)
    finally:
        follower.stop()
        runtime.stop()
        primary_link.close()
        standby_link.close()
        server.stop()
    return [f"Standby lag at {args.lag_rate:g} orders/s for {args.lag_s:g} s (each batch's "
            "age when the standby had journaled and applied it):", "",
            "| batches | p50 | p99 | max |", "|---|---|---|---|",
            f"| {len(lags)} | {percentile(lags, 0.5):.1f} ms | {percentile(lags, 0.99):.1f} ms "
            f"| {max(lags, default=0):.1f} ms |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--submitters", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--lease-ttl-ms", type=int, default=1_500)
    parser.add_argument("--failover-rate", type=float, default=100.0)
    parser.add_argument("--lag-rate", type=float, default=20.0)
    parser.add_argument("--lag-s", type=float, default=10.0)
    parser.add_argument("--only", choices=("throughput", "failover", "lag"), default=None)
    parser.add_argument("--data-parent", type=Path, default=Path.cwd())
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-replication-", dir=args.data_parent))
    try:
        for name, table in (("throughput", throughput_table), ("failover", failover_table),
                            ("lag", lag_table)):
            if args.only in (None, name):
                print("\n".join(table(args, work)) + "\n", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
