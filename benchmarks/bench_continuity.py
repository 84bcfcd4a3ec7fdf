"""Continuity: importing a large scan, and ``bcp check`` over many drill records, each beside
the floor of the same work in the same run.

- **Scan import**: a SARIF file of ``--findings`` results (default 20,000, the most one import
  takes) parsed (``scanners.parse_sarif``) and stored (``service.import_scan``: one row per
  finding, deadline by severity, one audit entry) into a migrated SQLite database, then
  imported again (every finding seen again). Baseline: ``json.loads`` of the same text and a
  plain ``sqlite3`` ``executemany`` of the same number of rows into a bare table (no model,
  no audit): what any import costs at the least.
- **bcp check**: ``flows.check_plan`` on the shipped example plan and register with
  ``--records`` drill records (default 1,000) under the drill report directory, the report
  written (Markdown, HTML, two heat maps). Baseline: reading and ``json.loads`` of every
  record file.

Usage::

    .venv/bin/python benchmarks/bench_continuity.py [--findings N] [--records N] [--rounds R]

Each figure is the median (and range) of ``--rounds`` rounds; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from haltguard.common.clock import utc_now
from haltguard.continuity import flows, service
from haltguard.continuity.scanners import parse_sarif
from haltguard.continuity.settings import ContinuitySettings
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory, session_scope
from haltguard.drill.report import write_files
from haltguard.drill.scenario import Check, DrillResult, Measurements, Targets
from haltguard.responders import service as responders
from haltguard.responders.models import ContactMethodIn, PersonIn
from haltguard.status.texts import Bilingual

SCENARIOS = ("server-down", "software-bug", "market-volatility", "surge", "ddos",
             "database-down", "disk-loss", "unauthorized-access", "site-loss")


def sarif_text(findings: int) -> str:
    results = [{"ruleId": f"CVE-2026-{index % 500:04d}", "level": "warning",
                "message": {"text": f"package-{index} 1.0.{index % 7}"},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": f"layer/{index}/lib.so"},
                    "region": {"startLine": index}}}]}
               for index in range(findings)]
    rules = [{"id": f"CVE-2026-{number:04d}",
              "properties": {"security-severity": f"{(number % 100) / 10:.1f}"}}
             for number in range(500)]
    return json.dumps({"version": "2.1.0", "runs": [
        {"tool": {"driver": {"name": "bench-scanner", "rules": rules}}, "results": results}]})


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def bench_import(findings: int) -> tuple[float, float, float, float]:
    """(import, re-import, json.loads, bare executemany) seconds for one round."""
    text = sarif_text(findings)
    with tempfile.TemporaryDirectory(prefix="bench-continuity-") as name:
        directory = Path(name)
        engine = make_engine(f"sqlite:///{directory / 'ops.sqlite3'}")
        upgrade(engine)
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            responders.put_person(session, PersonIn(handle="owner", display_name="Owner",
                                                    contacts=[ContactMethodIn(
                                                        kind="email", address="o@example.com")]),
                                  actor="bench", clock=responders.SystemClock())
        settings = ContinuitySettings()

        def import_once() -> None:
            scan = parse_sarif(text, "bench.sarif")
            with session_scope(factory) as session:
                service.import_scan(session, scan, owner="owner", actor="bench",
                                    now=utc_now(), settings=settings)

        first = timed(import_once)
        again = timed(import_once)
        engine.dispose()
        loads = timed(lambda: json.loads(text))
        bare = sqlite3.connect(directory / "bare.sqlite3")
        bare.execute("CREATE TABLE f (key TEXT UNIQUE, scanner TEXT, identifier TEXT, "
                     "severity TEXT, title TEXT, location TEXT, due TEXT)")
        rows = [(f"k{index}", "s", "CVE", "medium", "t", "l", "2027-01-01")
                for index in range(findings)]

        def insert() -> None:
            with bare:
                bare.executemany("INSERT INTO f VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

        plain = timed(insert)
        bare.close()
    return first, again, loads, plain


def bench_check(records: int) -> tuple[float, float]:
    """(bcp check, read + json.loads of every record) seconds for one round."""
    with tempfile.TemporaryDirectory(prefix="bench-continuity-") as name:
        directory = Path(name)
        drills = directory / "drills"
        start = datetime.now(UTC) - timedelta(days=records // 10 + 1)
        for index in range(records):
            finished = start + timedelta(hours=index)
            result = DrillResult(
                SCENARIOS[index % len(SCENARIOS)], index,
                Measurements(recovery_time_s=10.0, ledger_invariant_ok=True),
                [Check("ledger", True, "holds", "holds")], started_at=finished,
                finished_at=finished)
            write_files(result, Targets(), Bilingual("訓練", "Drill"), drills / f"run-{index}")
        engine = make_engine(f"sqlite:///{directory / 'ops.sqlite3'}")
        upgrade(engine)
        factory = make_session_factory(engine)
        settings = ContinuitySettings(drill_report_dirs=(drills,),
                                      report_dir=directory / "report")

        def check() -> None:
            with session_scope(factory) as session:
                flows.check_plan(session, settings, utc_now())

        took = timed(check)
        engine.dispose()
        floor = timed(lambda: [json.loads(path.read_text(encoding="utf-8"))
                               for path in drills.rglob("drill-*.json")])
    return took, floor


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--findings", type=int, default=20_000)
    parser.add_argument("--records", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    imports = [bench_import(args.findings) for _ in range(args.rounds)]
    checks = [bench_check(args.records) for _ in range(args.rounds)]
    first, again, loads, bare = (list(column) for column in zip(*imports, strict=True))
    check, floor = (list(column) for column in zip(*checks, strict=True))
    base = [load + insert for load, insert in zip(loads, bare, strict=True)]
    print(f"| figure ({args.rounds} rounds, median (range)) | ours | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| import {args.findings:,} SARIF findings | {summary(first)} | json.loads + bare "
          f"executemany {summary(base)} | "
          f"{statistics.median(first) / statistics.median(base):.1f}x |")
    print(f"| import them again (all seen again) | {summary(again)} | same | "
          f"{statistics.median(again) / statistics.median(base):.1f}x |")
    print(f"| bcp check, {args.records:,} drill records, report written | {summary(check)} | "
          f"read + json.loads of the records {summary(floor)} | "
          f"{statistics.median(check) / statistics.median(floor):.1f}x |")


if __name__ == "__main__":
    main()
