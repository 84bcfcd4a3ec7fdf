"""A compensation run's storage: writing a computed run of 1,000,000 lines, reading it back
for the payout and the accounting CSV, and writing the statements.

Measures, on a fresh SQLite database migrated like production (the lines are made before
timing starts, as ``compute_run`` hands them over):

* **store**: ``service.store_run`` and its commit: the run row, every line with its parts
  (JSON), the timeline and audit entries. Part of the issue's "a run over 1,000,000 accounts
  under 30 s" (the computation and the impact analysis are measured by their own scripts).
* **payout read**: every line's ``(line_no, account, currency, amount)`` as the payout reads
  them (``service.amounts_in_order``).
* **csv**: the whole accounting CSV (``service.export_csv``).
* **statements**: ``flows.write_statements`` for ``--statements`` accounts (a separate,
  smaller run, paid first), ja and en each.

Prints a Markdown table and the peak RSS.

    .venv/bin/python benchmarks/bench_compensation_store.py
    .venv/bin/python benchmarks/bench_compensation_store.py --lines 200000 --statements 20000
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from haltguard.compensation import flows, service
from haltguard.db.keys import Keyring, KeySettings
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory, session_scope
from haltguard.incidents import flows as incident_flows
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.responders.service import ManualClock

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DIGEST = "ab" * 32
POLICY = {"id": "btc-asset-loss", "version": 1, "kind": "asset_loss", "currency": "JPY",
          "description": {"ja": "保有数量 × 参照価格", "en": "holding x reference price"}}


def _lines(count: int) -> list[service.LineToStore]:
    """Lines shaped as the computation makes them: one asset_loss part each."""
    return [service.LineToStore(
        line_no=number, account=number, currency="JPY", amount_minor=15_000_001_250_000,
        parts=[{"policy": "btc-asset-loss", "owed_numerator": 15_000_001_250_000,
                "owed_denominator": 1, "rounded_minor": 15_000_001_250_000,
                "amount_minor": 15_000_001_250_000,
                "inputs": {"kind": "asset_loss", "asset": "BTC", "qty_minor": 10**10,
                           "reference": "btc-jpy-vwap", "price": "15000001.250"}}])
        for number in range(1, count + 1)]


def _store(factory: sessionmaker[Session], incident_id: int,
           lines: list[service.LineToStore]) -> int:
    data = service.RunToStore(
        incident_id=incident_id, proposed_by="operator:alice", note="", policies=[POLICY],
        cutoff={"seq": 1, "ts_ns": 1, "time": ""}, window={}, references=[], digest=DIGEST,
        totals={"JPY": sum(line.amount_minor for line in lines)},
        currency_scales={"JPY": 10_000}, histogram=[], top_accounts=[],
        supersedes_run_id=None)
    with session_scope(factory) as session:
        return service.store_run(session, data, lines, now=NOW).id


def _paid(factory: sessionmaker[Session], run_id: int, lines: list[service.LineToStore]) -> None:
    with session_scope(factory) as session:
        service.approve(session, run_id, approver="operator:carol", digest=DIGEST, note="",
                        now=NOW)
        service.start_payout(session, run_id, actor="operator:carol", now=NOW)
        service.record_progress(session, run_id, lines_paid=len(lines),
                                amounts_paid={"JPY": sum(line.amount_minor for line in lines)},
                                now=NOW)
        service.finish_payout(session, run_id, actor="operator:carol", error="", now=NOW)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--statements", type=int, default=100_000)
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="haltguard-bench-compensation-"))
    os.environ["HALTGUARD_AUDIT_ANCHOR_FILE"] = str(directory / "anchor.log")
    keyring = Keyring(KeySettings(data_dir=directory, audit_key=bytes.fromhex("a1" * 32),
                                  secrets_key=bytes.fromhex("5e" * 32),
                                  anchor_file=directory / "anchor.log"))
    engine = make_engine(f"sqlite:///{directory / 'bench.sqlite3'}", keyring=keyring)
    upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        incident = incident_flows.open_incident(
            session, IncidentCreate(title="benchmark", category=Category.SOFTWARE_BUG,
                                    severity=Severity.SEV3),
            actor="alice", clock=ManualClock(NOW))
        incident_id = incident.id
    lines = _lines(options.lines)
    figures: list[tuple[str, float]] = []
    started = time.perf_counter()
    run_id = _store(factory, incident_id, lines)
    figures.append((f"store {options.lines:,} lines", time.perf_counter() - started))
    started = time.perf_counter()
    with session_scope(factory) as session:
        read = sum(1 for _ in service.amounts_in_order(session, run_id))
    assert read == options.lines
    figures.append(("payout read (amounts in order)", time.perf_counter() - started))
    started = time.perf_counter()
    with session_scope(factory) as session:
        size = sum(len(chunk) for chunk in service.export_csv(session, run_id))
    figures.append((f"accounting CSV ({size / 1e6:.0f} MB)", time.perf_counter() - started))
    del lines
    small = _lines(options.statements)
    small_run = _store(factory, incident_id, small)
    _paid(factory, small_run, small)
    started = time.perf_counter()
    with session_scope(factory) as session:
        written = flows.write_statements(session, small_run, now=NOW)
    assert written == options.statements
    figures.append((f"statements for {options.statements:,} accounts (ja+en)",
                    time.perf_counter() - started))
    engine.dispose()
    print("| step | seconds |\n|---|---:|")
    for name, seconds in figures:
        print(f"| {name} | {seconds:.2f} |")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak_mib:.0f} MiB; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
