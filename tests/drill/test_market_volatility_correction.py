"""The market-volatility drill with its correction step, at a reduced scale on a demo system
of its own: while the market is halted the crash's absurd trades are found, busted by two
operators (the drill playing both), the report lists them, and the ledger still holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haltguard.corrections.models import CorrectionRequest
from haltguard.drill.play import DRILL_SECOND_ACTOR
from haltguard.drill.runner import run_scenario
from haltguard.drill.scenario import DRILL_ACTOR, Scale
from haltguard.drill.scenarios import SCENARIOS
from haltguard.drill.surface import database

REDUCED = Scale(orders=40, burst=20, timeout_s=15.0)


def test_the_crash_trades_are_busted_by_two_operators_and_reported(
    tmp_path: Path, make_drill_system: Any,
) -> None:
    lines: list[str] = []
    with make_drill_system(tmp_path / "data", lines, venue_process=False) as system:
        result = run_scenario(system, SCENARIOS["market-volatility-correction"], scale=REDUCED,
                              progress=lines.append, report_dir=tmp_path / "reports")
        with database(system) as session:
            request = session.query(CorrectionRequest).one()
            proposer, trades = request.proposed_by, request.plan["trades"]

    checks = {check.name: check for check in result.checks}
    busted = checks["absurd trades busted by two operators"]
    assert busted.passed, busted.seen
    assert trades and all(t["deviation_bps"] >= 500 for t in trades)
    assert proposer == DRILL_ACTOR
    assert any(f"approved by {DRILL_SECOND_ACTOR}" in note for note in result.notes)
    listed = result.measurements.extra["trades_busted"]
    assert listed == ", ".join(str(t["trade_id"]) for t in trades)
    assert result.measurements.ledger_invariant_ok
