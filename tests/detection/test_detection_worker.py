"""The detection worker performs protective decisions before the others queued ahead of them:
a halt must not wait behind a burst of incident openings (30 new markets with empty books
each open one at once, about 20 ms apiece on the operations database)."""

from __future__ import annotations

import threading

from detection_support import rules, signal

from haltguard.detection.decisions import Decision
from haltguard.detection.service import DetectionService
from haltguard.detection.signals import Signal

RULES = """
version: 1
rules:
  - id: spread-wide
    signal: market.spread_bps
    when: ">= 1000"
    classification: market_volatility
    severity: SEV3
    group_by: [market]
    actions: [open_or_update_incident]
  - id: crash-halt
    signal: market.price_move_bps
    when: ">= 1000"
    classification: market_volatility
    severity: SEV2
    group_by: [market]
    actions:
      - open_or_update_incident
      - halt_market: {market: "{market}"}
"""


class HeldExecutor:
    """Records the order decisions are performed in; the first one waits for ``release``."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.order: list[str] = []

    def prepare(self, decision: Decision) -> None:
        return None

    def execute(self, decision: Decision, client_outcomes: object) -> None:
        self.started.set()
        self.release.wait(10)
        self.order.append(f"{decision.rule_id}:{decision.key.split('=')[-1]}")


def _submit(service: DetectionService, fired: Signal) -> None:
    assert service.submit(fired, inline=False)


def test_a_halt_goes_ahead_of_incident_openings_queued_before_it() -> None:
    executor = HeldExecutor()
    service = DetectionService(rules=rules(RULES), executor=executor).start(tick_interval_s=0)
    try:
        _submit(service, signal("market.spread_bps", 5000, 1.0, market="M00-JPY"))
        assert executor.started.wait(5)  # the worker holds the first one
        for n in range(1, 6):
            _submit(service, signal("market.spread_bps", 5000, 1.0, market=f"M{n:02d}-JPY"))
        _submit(service, signal("market.price_move_bps", 1500, 1.1, market="C09-JPY"))
        _submit(service, signal("market.spread_bps", 5000, 1.2, market="M06-JPY"))
        executor.release.set()
        assert service.flush(10)
    finally:
        service.stop()

    assert executor.order[0] == "spread-wide:M00-JPY"  # already running when the halt came
    assert executor.order[1] == "crash-halt:C09-JPY"
    assert executor.order[2:] == [f"spread-wide:M{n:02d}-JPY" for n in range(1, 7)]
