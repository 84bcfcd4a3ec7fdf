"""Impact analysis and point-in-time state over 1,000,000 accounts and a 10,000,000-command
journal (issue 12's target: under 30 s, memory under 2 GiB).

The journal is built once (kept in ``benchmarks/results/impact-<accounts>-<commands>/`` and
reused by later runs): the workload's assets and market, ``--accounts`` accounts funded in
both assets (two deposits each, smaller than the workload's own funding so that a
million accounts' totals stay within 64 bits), then the workload's order flow
(``haltguard.venue.workload.order_flow``) with an incident in it: at 60% of the journal the
market is halted (incident ``INC-1``), ``--halted`` commands of order flow arrive while it
is halted (every order refused, cancels still allowed), then it goes cancel-only, limit-only
and open again, and the flow goes on to ``--commands`` in all. A snapshot every 1,000,000
commands, as ``venue.checkpoint_every`` would take, all kept.

Each measurement runs in a fresh process (as an operator's command would), on files in the
page cache, and reports wall-clock time, CPU time and peak RSS (``VmHWM``):

* ``incident``: :func:`haltguard.impact.analysis.analyse` of the incident's window, from the
  halt to the reopening (the snapshot before it, then every record of the window with its
  events; the halt falls just after the snapshot at 6,000,000, so no tail is replayed first:
  a window starting elsewhere replays up to one checkpoint interval more);
* ``state``: :func:`haltguard.impact.state.state_at` at the halt, then every account's
  balance of both assets (the cut-off balances compensation reads);
* ``whole`` (with ``--whole``): :func:`analyse` of the whole journal, every record with its
  events;
* ``proposal``: a whole compensation proposal as ``haltguard compensation run`` computes it
  (:func:`haltguard.compensation.flows.compute_from_journal`): one read of the journal for
  the incident's impact and the cut-off balances at the halt, then an ``asset_loss`` run
  (every holder of SIM x a reference price from a trades CSV) plus ``fixed_amount`` goodwill
  for every affected account; nothing is stored (storage: ``bench_compensation_store.py``).

Usage::

    .venv/bin/python benchmarks/bench_impact.py [--accounts N] [--commands N] [--halted N]
        [--rounds R] [--whole] [--only incident|state|proposal ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from haltguard.compensation.flows import compute_from_journal
from haltguard.compensation.models import RunProposal
from haltguard.compensation.policies import AssetLoss, FixedAmount, PolicySet, Text
from haltguard.compensation.settings import CompensationSettings
from haltguard.impact.analysis import analyse
from haltguard.impact.models import ImpactWindow
from haltguard.impact.state import state_at
from haltguard.journal import Journal
from haltguard.venue.commands import Command, Deposit, SetMarketState
from haltguard.venue.engine import Venue
from haltguard.venue.types import MarketState
from haltguard.venue.workload import (
    BASE_ASSET,
    QUOTE_ASSET,
    WORKLOAD_MARKET,
    order_flow,
    setup_commands,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TS_START = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
TS_STEP = 100_000  # 0.1 ms between commands
CHECKPOINT_EVERY = 1_000_000
BATCH = 4096
SEED = 42
# Per account: a million accounts' totals must stay within the journal's 64-bit integers.
FUNDING_QUOTE = 10**12
FUNDING_BASE = 10**7


def _incident(actor: str, state: MarketState, reason: str) -> SetMarketState:
    return SetMarketState(WORKLOAD_MARKET, state, actor, reason, "INC-1")


def commands(accounts: int, total: int, halted: int) -> Iterator[Command]:
    """The journal's commands in order (see the module); ``total`` in all."""
    setup = setup_commands(accounts=0) + [
        Deposit(account, asset.code, amount, "bench")
        for account in range(1, accounts + 1)
        for asset, amount in ((QUOTE_ASSET, FUNDING_QUOTE), (BASE_ASSET, FUNDING_BASE))
    ]
    yield from setup
    seq = len(setup)
    before = int(total * 0.6) - seq
    yield from order_flow(SEED, before, first_seq=seq + 1, accounts=accounts)
    seq += before
    yield _incident("alice", MarketState.HALTED, "matching fault")
    seq += 1
    yield from order_flow(SEED + 1, halted, first_seq=seq + 1, accounts=accounts)
    seq += halted
    for state in (MarketState.CANCEL_ONLY, MarketState.LIMIT_ONLY, MarketState.OPEN):
        yield _incident("bob", state, "reopening")
        seq += 1
    yield from order_flow(SEED + 2, total - seq, first_seq=seq + 1, accounts=accounts)


def build(data_dir: Path, accounts: int, total: int, halted: int) -> dict[str, int]:
    """Journal the commands into ``data_dir`` (once); return the incident's seqs."""
    marks_file = data_dir / "marks.json"
    if marks_file.exists():
        marks: dict[str, int] = json.loads(marks_file.read_text())
        return marks
    started = time.perf_counter()
    journal = Journal(data_dir, snapshots_keep=total // CHECKPOINT_EVERY + 2,
                      unsafe_skip_fsync=True)
    venue = Venue()
    marks = {}
    for seq, command in enumerate(commands(accounts, total, halted), 1):
        ts = TS_START + seq * TS_STEP
        journal.append(seq, ts, command)
        venue.replay(seq, ts, command)
        if type(command) is SetMarketState:
            marks.setdefault("halt" if command.state is MarketState.HALTED else "reopen", seq)
            if command.state is MarketState.OPEN:
                marks["reopen"] = seq
        if seq % BATCH == 0:
            journal.sync()
        if seq % CHECKPOINT_EVERY == 0:
            journal.sync()
            journal.checkpoint(venue, ts)
        if seq % 1_000_000 == 0:
            print(f"  built {seq:,} commands in {time.perf_counter() - started:.0f} s",
                  flush=True)
    journal.close()
    marks["last"] = venue.last_seq
    marks_file.write_text(json.dumps(marks))
    return marks


REFERENCE_CSV = "time,price,qty\n2026-01-01T10:00:00+09:00,88.5,1000\n" \
    "2026-01-01T10:30:00+09:00,88.6,3000\n"
"""The reference trades: VWAP (88.5 x 1,000 + 88.6 x 3,000) / 4,000 = 88.575 JPY per SIM."""
TEXT = Text(ja="ベンチマーク", en="benchmark")


def proposal(data_dir: Path, marks: dict[str, int]) -> dict[str, float]:
    """A proposal over the incident: what it found."""
    reference_dir = Path(tempfile.mkdtemp(prefix="bench-impact-"))
    (reference_dir / "sim_trades.csv").write_text(REFERENCE_CSV, encoding="utf-8")
    policy_set = PolicySet(policies=(
        AssetLoss(id="sim-loss", version=1, description=TEXT, currency=QUOTE_ASSET.code,
                  asset=BASE_ASSET.code, reference="sim-vwap"),
        FixedAmount(id="goodwill", version=1, description=TEXT, currency=QUOTE_ASSET.code,
                    amount_minor=1_000),
    ))
    run = RunProposal.model_validate({
        "incident_id": 1, "policies": ["bench.yaml"], "cutoff_seq": marks["halt"],
        "references": [{"name": "sim-vwap", "csv": "sim_trades.csv",
                        "from_time": "2026-01-01T10:00:00+09:00",
                        "to_time": "2026-01-01T11:00:00+09:00"}],
    })
    computed = compute_from_journal(
        CompensationSettings(journal_dir=data_dir, reference_dir=reference_dir), run,
        policy_set, ImpactWindow(from_seq=marks["halt"], to_seq=marks["reopen"]))
    result = computed.result
    return {"lines": len(result.lines), "affected": computed.window["affected_accounts"],
            "holders": len(computed.inputs.holdings[BASE_ASSET.code]),
            "total_jpy": result.totals_minor[QUOTE_ASSET.code]}


def _peak_rss_kib() -> int:
    """This process's peak resident set (``VmHWM``: unlike ``ru_maxrss`` it starts afresh at
    ``exec``, so the parent that built the journal does not count)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark needs Linux)")


def measure(kind: str, data_dir: Path, marks: dict[str, int]) -> dict[str, float]:
    """One measurement in this process: wall s, CPU s, peak RSS MiB, and what it found."""
    wall, cpu = time.perf_counter(), time.process_time()
    found: dict[str, float] = {}
    if kind == "incident":
        report = analyse(data_dir, ImpactWindow(from_seq=marks["halt"], to_seq=marks["reopen"]))
        found = {"records": report.journal.last_seq - report.journal.first_seq + 1,
                 "affected": report.counts.affected_accounts,
                 "refused": report.counts.orders_refused,
                 "caught": report.counts.resting_orders_caught}
    elif kind == "whole":
        report = analyse(data_dir, ImpactWindow())
        found = {"records": report.journal.last_seq - report.journal.first_seq + 1,
                 "affected": report.counts.affected_accounts,
                 "refused": report.counts.orders_refused}
    elif kind == "proposal":
        found = proposal(data_dir, marks)
    else:
        state = state_at(data_dir, seq=marks["halt"])
        holders = [len(state.balances(asset)) for asset in state.assets()]
        found = {"seq": state.seq, "holders": min(holders)}
    peak_mib = _peak_rss_kib() / 1024
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "peak_rss_mib": peak_mib, **found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--commands", type=int, default=10_000_000)
    parser.add_argument("--halted", type=int, default=500_000,
                        help="commands arriving while the market is halted")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--whole", action="store_true", help="also analyse the whole journal")
    parser.add_argument("--only", choices=("incident", "state", "proposal"), action="append",
                        help="measure only these (repeatable); default: all three")
    parser.add_argument("--measure", choices=("incident", "state", "whole", "proposal"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    data_dir = RESULTS_DIR / f"impact-{args.accounts}-{args.commands}-{args.halted}"
    if args.measure:
        marks = json.loads((data_dir / "marks.json").read_text())
        print(json.dumps(measure(args.measure, data_dir, marks)))
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"journal: {data_dir}", flush=True)
    marks = build(data_dir, args.accounts, args.commands, args.halted)
    print(f"incident: halt at seq {marks['halt']:,}, reopened at seq {marks['reopen']:,}, "
          f"{marks['last']:,} commands", flush=True)
    kinds = (args.only or ["incident", "state", "proposal"]) + (["whole"] if args.whole else [])
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            out = subprocess.run(
                [sys.executable, __file__, "--accounts", str(args.accounts), "--commands",
                 str(args.commands), "--halted", str(args.halted), "--measure", kind],
                check=True, capture_output=True, text=True,
            ).stdout
            results[kind].append(json.loads(out.strip().splitlines()[-1]))
            print(f"  {kind}: {results[kind][-1]}", flush=True)
    for kind, rounds in results.items():
        walls = sorted(r["wall_s"] for r in rounds)
        cpus = sorted(r["cpu_s"] for r in rounds)
        rss = max(r["peak_rss_mib"] for r in rounds)
        print(f"{kind}: wall {walls[len(walls) // 2]:.1f} s ({walls[0]:.1f}-{walls[-1]:.1f}), "
              f"CPU {cpus[len(cpus) // 2]:.1f} s, peak RSS {rss:,.0f} MiB")


if __name__ == "__main__":
    main()
