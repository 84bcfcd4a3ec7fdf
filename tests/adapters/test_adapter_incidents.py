"""What the adapter reports becomes an incident by the shipped rules: an engine it cannot
reach and a brake the engine does not show are never silent."""

from __future__ import annotations

from haltguard.adapters.control import AdapterReport
from haltguard.app.venue_adapter import adapter_signal
from haltguard.detection.policies import PolicyEngine
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, load_rules_file


def _decisions(report: AdapterReport) -> list[tuple[str, str, str]]:
    engine = PolicyEngine(load_rules_file(DEFAULT_RULES_PATH))
    return [(d.rule_id, d.severity.value, d.title)
            for d in engine.evaluate(adapter_signal(report))]


def test_an_unreachable_engine_opens_a_sev1_incident() -> None:
    [(rule, severity, title)] = _decisions(
        AdapterReport("unreachable", "set_market_state", "", "connect refused"))
    assert (rule, severity) == ("venue-adapter-unreachable", "SEV1")
    assert "cannot reach the matching engine" in title


def test_an_unconfirmed_brake_opens_an_incident_naming_the_market() -> None:
    [(rule, severity, title)] = _decisions(
        AdapterReport("brake_unconfirmed", "set_market_state", "BTC-JPY", "not shown"))
    assert (rule, severity) == ("venue-brake-unconfirmed", "SEV1")
    assert title.startswith("A brake on BTC-JPY is not confirmed")


def test_a_confirmed_brake_is_a_resolved_signal_not_a_new_incident() -> None:
    signal = adapter_signal(AdapterReport("brake_confirmed", "set_market_state", "BTC-JPY", ""))
    assert signal.resolved and signal.name == "venue.brake_unconfirmed"
    assert _decisions(AdapterReport("brake_confirmed", "set_market_state", "BTC-JPY", "")) == []
