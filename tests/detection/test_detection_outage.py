"""The operations database goes away: detection still brakes the venue at once, and every
record it accepted meanwhile is written, in order, once the database is back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from detection_support import protected_venue, signal
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from haltguard.incidents.models import TimelineKind
from haltguard.security import audit
from haltguard.venue.types import MarketState
from haltguard.venue.workload import WORKLOAD_MARKET

RULES = """
    version: 1
    rules:
      - id: crash-halt
        signal: market.price_move_bps
        when: ">= 1000"
        clear_when: "< 300"
        clear_after_s: 30
        classification: market_volatility
        severity: SEV2
        title: "{market} moved {value} bps"
        actions:
          - open_or_update_incident
          - halt_market: {market: "{market}"}
"""
MOVE = "market.price_move_bps"


@contextmanager
def database_down(engine: Engine) -> Iterator[None]:
    """Every new connection to ``engine`` fails as an unreachable server's would."""
    error_type = engine.dialect.loaded_dbapi.OperationalError

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise error_type("connection refused: the database server is down (test)")

    event.listen(engine, "do_connect", refuse)
    engine.dispose()  # pooled connections go too, so every checkout reconnects
    try:
        yield
    finally:
        event.remove(engine, "do_connect", refuse)


def test_detection_halts_during_a_database_outage_and_records_everything_after_it(
    tmp_path: Path, engine: Engine, session_factory: sessionmaker[Session],
) -> None:
    protected = protected_venue(tmp_path, session_factory, RULES, in_process=True)
    records = protected.executor.records
    try:
        with database_down(engine):
            protected.detection.submit(signal(MOVE, 1500, 0, market=WORKLOAD_MARKET))
            assert protected.detection.flush(30)
            assert protected.market_state() is MarketState.HALTED  # the brake did not wait
            protected.detection.submit(signal(MOVE, 100, 10, market=WORKLOAD_MARKET))
            protected.detection.tick(45 * 10**9)  # clear for 30 s: the rule resolves
            assert protected.detection.flush(30)
            assert records.pending == 2 and records.dropped == 0
            assert not records.wait_empty(0.3)  # still down: still waiting

        assert records.wait_empty(30)
        assert records.failed == 0
        [incident] = protected.incidents()
        kinds = [entry.kind for entry in protected.timeline(incident.id)]
        assert TimelineKind.DETECTION in kinds and TimelineKind.MARKET_ACTION in kinds
        assert [(d.rule_id, d.kind) for d in protected.decisions()] == [
            ("crash-halt", "fired"), ("crash-halt", "resolved")]
        [halt] = protected.audit("detection.halt_market")
        assert halt.details["observed"] == "1500"
        with session_factory() as session:
            assert audit.verify(session).ok
    finally:
        protected.detection.stop()
        protected.runtime.stop()


def test_a_write_that_fails_for_another_reason_is_not_retried_forever(
    tmp_path: Path, session_factory: sessionmaker[Session],
) -> None:
    protected = protected_venue(tmp_path, session_factory, RULES, in_process=True)
    records = protected.executor.records
    try:
        def broken(_session: Session) -> None:
            raise ValueError("a bug in a record")

        records.write("a broken record", broken)
        assert records.failed == 1 and records.pending == 0
    finally:
        protected.detection.stop()
        protected.runtime.stop()
