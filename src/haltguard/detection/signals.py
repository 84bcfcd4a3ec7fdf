"""A signal: one observation a rule can act on. Monitors, detectors and alert intake all emit
signals; the policy engine (``policies.py``) is the only thing that turns them into actions.

Values are integers or Decimal strings, never floats, so the thresholds and observed values a
rule writes into the incident timeline read exactly as they were compared.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec


class Signal(msgspec.Struct, frozen=True):
    """``name`` is what was observed (e.g. ``market.price_move_bps``, ``health.failed``,
    ``security.failed_logins``, ``alertmanager.firing``); ``labels`` say where (market, asset,
    component, account, source address, alertname ...); ``value`` is the measurement;
    ``details`` carries what a person needs to understand it (window, samples, thresholds).
    ``resolved`` marks the end of a condition (an Alertmanager "resolved", a monitor healthy
    again) so rules can close what they opened.
    """

    source: str
    name: str
    value: Decimal
    ts_ns: int
    labels: dict[str, str] = {}
    details: dict[str, str] = {}
    resolved: bool = False
