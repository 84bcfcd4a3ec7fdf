"""The policy engine: one decision per episode, hysteresis, cool-downs, windows, dry-run."""

from __future__ import annotations

from decimal import Decimal

from detection_support import rules, signal

from haltguard.detection.decisions import ActionKind, DecisionKind
from haltguard.detection.policies import PolicyEngine

CRASH = """
    version: 1
    rules:
      - id: crash
        signal: market.price_move_bps
        when: ">= 500"
        clear_when: "< 300"
        clear_after_s: 60
        cooldown_s: 600
        classification: market_volatility
        severity: SEV2
        title: "{market} moved {value} bps"
        actions:
          - open_or_update_incident
          - page
          - halt_market
"""
MOVE = "market.price_move_bps"


def test_rule_fires_once_while_its_condition_keeps_holding() -> None:
    engine = PolicyEngine(rules(CRASH))
    fired = [engine.evaluate(signal(MOVE, value, t, market="BTC-JPY"))
             for t, value in enumerate([100, 550, 700, 900, 650])]
    decisions = [d for batch in fired for d in batch]
    assert [d.kind for d in decisions] == [DecisionKind.FIRED]
    decision = decisions[0]
    assert decision.observed == "550"
    assert decision.condition == ">= 500"
    assert decision.title == "BTC-JPY moved 550 bps"
    assert [(a.kind, a.target) for a in decision.actions] == [
        (ActionKind.OPEN_OR_UPDATE_INCIDENT, ""), (ActionKind.PAGE, ""),
        (ActionKind.HALT_MARKET, "BTC-JPY")]
    assert engine.counters["crash"].suppressed == 3


def test_flapping_signal_makes_one_decision() -> None:
    engine = PolicyEngine(rules(CRASH))
    decisions = []
    for step in range(200):  # above and below the thresholds every 5 s for 1000 s
        value = 800 if step % 2 == 0 else 100
        decisions += engine.evaluate(signal(MOVE, value, step * 5, market="BTC-JPY"))
    assert [d.kind for d in decisions] == [DecisionKind.FIRED]


def test_episode_resolves_only_after_clear_condition_held_clear_after_s() -> None:
    engine = PolicyEngine(rules(CRASH))
    engine.evaluate(signal(MOVE, 800, 0, market="BTC-JPY"))
    assert engine.evaluate(signal(MOVE, 100, 10, market="BTC-JPY")) == []
    assert engine.tick(69 * 10**9) == []
    resolved = engine.tick(70 * 10**9)
    assert [d.kind for d in resolved] == [DecisionKind.RESOLVED]
    assert resolved[0].actions == []
    assert engine.firing() == []


def test_value_between_fire_and_clear_thresholds_keeps_the_episode_firing() -> None:
    engine = PolicyEngine(rules(CRASH))
    engine.evaluate(signal(MOVE, 800, 0, market="BTC-JPY"))
    engine.evaluate(signal(MOVE, 400, 1, market="BTC-JPY"))  # below 500, not below 300
    assert engine.tick(1000 * 10**9) == []
    assert engine.firing() == [("crash", "crash|market=BTC-JPY")]


def test_firing_again_within_cooldown_keeps_the_episode_key_and_does_not_page() -> None:
    engine = PolicyEngine(rules(CRASH))
    first = engine.evaluate(signal(MOVE, 800, 0, market="BTC-JPY"))[0]
    engine.evaluate(signal(MOVE, 100, 1, market="BTC-JPY"))
    engine.tick(61 * 10**9)
    again = engine.evaluate(signal(MOVE, 900, 100, market="BTC-JPY"))[0]
    assert again.key == first.key
    assert ActionKind.PAGE not in [a.kind for a in again.actions]
    assert ActionKind.HALT_MARKET in [a.kind for a in again.actions]
    engine.evaluate(signal(MOVE, 100, 101, market="BTC-JPY"))
    engine.tick(161 * 10**9)  # resolved at 161 s; cool-down runs to 761 s
    late = engine.evaluate(signal(MOVE, 900, 800, market="BTC-JPY"))[0]
    assert ActionKind.PAGE in [a.kind for a in late.actions]


def test_for_s_fires_only_once_the_condition_held_that_long() -> None:
    engine = PolicyEngine(rules("""
        version: 1
        rules:
          - id: wide
            signal: market.spread_bps
            when: "> 500"
            for_s: 10
            classification: market_volatility
            severity: SEV3
            group_by: [market]
            actions: [open_or_update_incident]
    """))
    assert engine.evaluate(signal("market.spread_bps", 900, 0, market="X-Y")) == []
    assert engine.evaluate(signal("market.spread_bps", 50, 5, market="X-Y")) == []
    assert engine.evaluate(signal("market.spread_bps", 900, 6, market="X-Y")) == []
    assert engine.tick(15 * 10**9) == []
    fired = engine.tick(16 * 10**9)
    assert [d.rule_id for d in fired] == ["wide"]


def test_count_within_fires_on_the_nth_hit_inside_the_window_and_clears_when_they_stop() -> None:
    engine = PolicyEngine(rules("""
        version: 1
        rules:
          - id: trips
            signal: venue.circuit_breaker_tripped
            when: ">= 1"
            count: 3
            within_s: 600
            clear_after_s: 0
            classification: market_volatility
            severity: SEV2
            group_by: [market]
            actions: [open_or_update_incident]
    """))
    name = "venue.circuit_breaker_tripped"
    assert engine.evaluate(signal(name, 1, 0, market="A-B")) == []
    assert engine.evaluate(signal(name, 2, 700, market="A-B")) == []  # the first has left
    assert engine.evaluate(signal(name, 3, 800, market="A-B")) == []
    fired = engine.evaluate(signal(name, 4, 900, market="A-B"))
    assert fired[0].observed == "4 (3 time(s) in 600 s)"
    assert engine.tick(1299 * 10**9) == []  # hits at 700, 800, 900 still in the window
    resolved = engine.tick(1300 * 10**9)  # the hit at 700 leaves: fewer than 3 remain
    assert [d.kind for d in resolved] == [DecisionKind.RESOLVED]


def test_label_match_and_group_by_decide_which_signals_a_rule_sees() -> None:
    engine = PolicyEngine(rules("""
        version: 1
        rules:
          - id: jpy-markets
            signal: market.price_move_bps
            match: {market: "*-JPY", direction: down}
            when: ">= 500"
            classification: market_volatility
            severity: SEV2
            actions: [open_or_update_incident, halt_market]
    """))
    assert engine.evaluate(signal(MOVE, 900, 0, market="BTC-USD", direction="down")) == []
    assert engine.evaluate(signal(MOVE, 900, 0, market="BTC-JPY", direction="up")) == []
    assert engine.evaluate(signal(MOVE, 900, 0, direction="down")) == []
    both = (engine.evaluate(signal(MOVE, 900, 1, market="BTC-JPY", direction="down"))
            + engine.evaluate(signal(MOVE, 900, 1, market="ETH-JPY", direction="down")))
    assert sorted(d.actions[1].target for d in both) == ["BTC-JPY", "ETH-JPY"]


def test_dry_run_is_marked_per_rule_and_globally() -> None:
    text = CRASH.replace("        title:", "        dry_run: true\n        title:")
    assert PolicyEngine(rules(text)).evaluate(signal(MOVE, 900, 0, market="A-B"))[0].dry_run
    engine = PolicyEngine(rules(CRASH))
    assert not engine.evaluate(signal(MOVE, 900, 0, market="A-B"))[0].dry_run
    engine.dry_run = True
    assert engine.evaluate(signal(MOVE, 900, 0, market="C-D"))[0].dry_run


def test_levels_are_every_threshold_the_rules_compare_a_signal_against() -> None:
    engine = PolicyEngine(rules(CRASH))
    assert engine.levels(MOVE) == [Decimal(300), Decimal(500)]
    assert engine.levels("nothing.watches_this") == []


def test_reloading_the_same_rule_keeps_its_firing_episode_quiet() -> None:
    engine = PolicyEngine(rules(CRASH))
    engine.evaluate(signal(MOVE, 800, 0, market="BTC-JPY"))
    engine.load(rules(CRASH + "      - id: other\n        signal: x.y\n        when: '> 1'\n"
                      "        classification: network\n        severity: SEV4\n"
                      "        actions: [open_or_update_incident]\n"))
    assert engine.evaluate(signal(MOVE, 900, 5, market="BTC-JPY")) == []
    changed = CRASH.replace('">= 500"', '">= 600"')
    engine.load(rules(changed))
    assert [d.rule_id for d in engine.evaluate(signal(MOVE, 900, 6, market="BTC-JPY"))] == [
        "crash"]


def test_classification_and_severity_can_come_from_the_signals_labels() -> None:
    engine = PolicyEngine(rules("""
        version: 1
        rules:
          - id: alerts
            signal: alertmanager.firing
            when: ">= 1"
            classification: "{category}"
            severity: "{severity}"
            group_by: [alertname]
            actions: [open_or_update_incident]
    """))
    name = "alertmanager.firing"
    [decision] = engine.evaluate(signal(name, 1, 0, alertname="DbDown", category="database",
                                        severity="SEV1"))
    assert (decision.classification, decision.severity) == ("database", "SEV1")
    assert engine.evaluate(signal(name, 1, 0, alertname="Odd", category="weather",
                                  severity="SEV1")) == []
    assert engine.evaluate(signal(name, 1, 0, alertname="NoSeverity", category="network")) == []


def test_counted_events_that_keep_coming_keep_the_episode_firing() -> None:
    engine = PolicyEngine(rules("""
        version: 1
        rules:
          - id: trips
            signal: venue.circuit_breaker_tripped
            when: ">= 1"
            count: 2
            within_s: 100
            clear_after_s: 0
            classification: market_volatility
            severity: SEV2
            group_by: [market]
            actions: [open_or_update_incident]
    """))
    name = "venue.circuit_breaker_tripped"
    fired = [d for t in range(0, 1000, 50) for d in engine.evaluate(signal(name, 1, t, market="M"))]
    assert [d.kind for d in fired] == [DecisionKind.FIRED]  # a trip every 50 s for 1000 s
    assert engine.tick(999 * 10**9) == []  # trips at 900 and 950 are still in the window
    assert [d.kind for d in engine.tick(1000 * 10**9)] == [DecisionKind.RESOLVED]
