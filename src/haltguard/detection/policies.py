"""The policy engine: rules turn signals into decisions, with hysteresis and cool-downs.

Pure: no clock, no I/O. Time arrives as each signal's ``ts_ns`` and as :meth:`tick`, so the
same signals always give the same decisions. One rule and one set of its ``group_by`` label
values is an *episode*; an episode fires once, stays firing while its condition keeps
holding (or flaps), and resolves only after its clear condition has held ``clear_after_s``.
A new firing within ``cooldown_s`` of the resolution is the same episode coming back: it
keeps the episode's key (so it joins the same incident) and does not page again.

The rules themselves (:class:`Rule`, :class:`RuleSet`) are built and checked by
:mod:`haltguard.detection.rulesfile`; this module trusts them.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from fnmatch import fnmatchcase

from haltguard.common.units import NS_PER_S
from haltguard.detection.decisions import (
    ActionKind,
    Decision,
    DecisionKind,
    PlannedAction,
)
from haltguard.detection.signals import Signal
from haltguard.incidents.rules import Category, Severity

_CATEGORIES = frozenset(category.value for category in Category)
_SEVERITIES = frozenset(severity.value for severity in Severity)
EPISODES_MAX = 100_000  # live episodes kept; the oldest resolved ones go first
HITS_PER_EPISODE_MAX = 10_000  # timestamps kept for a count/within condition

OPERATORS: dict[str, Callable[[Decimal, Decimal], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Condition:
    """``value <op> threshold``, compared as Decimals so ``500`` and ``500.0`` agree."""

    op: str
    threshold: Decimal

    def holds(self, value: Decimal) -> bool:
        return OPERATORS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.op} {self.threshold}"


@dataclass(frozen=True)
class ActionTemplate:
    """An action with its target still a template over the signal's labels."""

    kind: ActionKind
    target_template: str
    params: Mapping[str, str]

    def render(self, labels: Mapping[str, str]) -> PlannedAction:
        return PlannedAction(self.kind, render(self.target_template, labels), dict(self.params))


@dataclass(frozen=True)
class Rule:
    """One checked rule. ``line`` is where it starts in its file, for messages."""

    id: str
    signal: str
    match: Mapping[str, str]
    when: Condition
    classification: Category
    severity: Severity
    actions: tuple[ActionTemplate, ...]
    title: str
    description: str = ""
    group_by: tuple[str, ...] = ()
    for_s: int = 0
    count: int = 1
    within_s: int = 0
    clear_when: Condition | None = None
    clear_after_s: int = 60
    cooldown_s: int = 300
    dry_run: bool = False
    line: int = field(default=0, compare=False)  # moving a rule in its file changes nothing
    classification_label: str = ""  # take the classification from this label instead
    severity_label: str = ""  # take the severity from this label instead

    def matches(self, labels: Mapping[str, str]) -> bool:
        """The signal carries every label of ``match``, and valid values for the labels
        the classification or severity come from."""
        for name, pattern in self.match.items():
            value = labels.get(name)
            if value is None or not fnmatchcase(value, pattern):
                return False
        if self.classification_label and labels.get(self.classification_label) not in (
            _CATEGORIES
        ):
            return False
        return not self.severity_label or labels.get(self.severity_label) in _SEVERITIES

    def classify(self, labels: Mapping[str, str]) -> tuple[Category, Severity]:
        classification = (Category(labels[self.classification_label])
                          if self.classification_label else self.classification)
        severity = (Severity(labels[self.severity_label]) if self.severity_label
                    else self.severity)
        return classification, severity

    def clears(self, signal: Signal) -> bool:
        """The signal says the condition is over (for hysteresis, not merely "not firing")."""
        if signal.resolved:
            return True
        if self.clear_when is not None:
            return self.clear_when.holds(signal.value)
        return not self.when.holds(signal.value)

    def condition_text(self) -> str:
        text = str(self.when)
        if self.count > 1 or self.within_s:
            text += f", {self.count} time(s) within {self.within_s} s"
        if self.for_s:
            text += f", for {self.for_s} s"
        return text


@dataclass(frozen=True)
class DetectorSettings:
    """The market detectors' windows and sampling, set in the rules file's ``detectors``."""

    price_window_s: int = 60
    trade_rate_window_s: int = 10
    trade_rate_baseline_s: int = 300
    trade_rate_min_trades: int = 50
    book_sample_ms: int = 250
    book_depth_bps: int = 100


@dataclass(frozen=True)
class RuleSet:
    """A whole, checked rules file. ``version`` is a digest of its text."""

    rules: tuple[Rule, ...]
    version: str
    source: str = ""
    dry_run: bool = False
    detectors: DetectorSettings = field(default_factory=DetectorSettings)

    def rule(self, rule_id: str) -> Rule | None:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None


EMPTY_RULESET = RuleSet(rules=(), version="empty", source="(no rules loaded)")


def render(template: str, labels: Mapping[str, str]) -> str:
    """Replace each ``{name}`` with the label's value. Templates were checked at load, so
    every name is a plain label name the rule's ``group_by`` guarantees is present."""
    if "{" not in template:
        return template
    out = template
    for name, value in labels.items():
        out = out.replace("{" + name + "}", value)
    return out


class _Phase(Enum):
    IDLE = "idle"  # not firing (may be counting hits or waiting for ``for_s``)
    FIRING = "firing"
    COOLDOWN = "cooldown"  # resolved, a new firing soon after is the same episode


class _Episode:
    __slots__ = ("clear_since_ns", "cooldown_until_ns", "hits", "key", "labels", "last_signal",
                 "pending_since_ns", "phase", "rule")

    def __init__(self, rule: Rule, key: str, labels: dict[str, str]) -> None:
        self.rule = rule
        self.key = key
        self.labels = labels
        self.phase = _Phase.IDLE
        self.pending_since_ns = -1
        self.clear_since_ns = -1
        self.cooldown_until_ns = -1
        self.hits: deque[int] = deque(maxlen=HITS_PER_EPISODE_MAX)
        self.last_signal: Signal | None = None


@dataclass
class RuleCounters:
    fired: int = 0
    resolved: int = 0
    suppressed: int = 0  # condition held again while already firing: no new decision


class PolicyEngine:
    """Evaluates signals against a :class:`RuleSet`. Not thread-safe: the detection service
    serialises calls."""

    def __init__(self, ruleset: RuleSet = EMPTY_RULESET, *, dry_run: bool = False) -> None:
        self._ruleset = ruleset
        self._by_signal: dict[str, tuple[Rule, ...]] = {}
        self._episodes: dict[str, _Episode] = {}
        self._timed: set[str] = set()  # episodes waiting on ``for_s`` or ``clear_after_s``
        self.dry_run = dry_run
        self.counters: dict[str, RuleCounters] = {}
        self.load(ruleset)

    @property
    def ruleset(self) -> RuleSet:
        return self._ruleset

    def load(self, ruleset: RuleSet) -> None:
        """Switch to ``ruleset`` at once. Episodes of rules that still exist with the same
        definition carry over (a reload does not re-fire what is already firing)."""
        by_signal: dict[str, list[Rule]] = {}
        for rule in ruleset.rules:
            by_signal.setdefault(rule.signal, []).append(rule)
        kept = {rule.id: rule for rule in ruleset.rules}
        self._episodes = {
            key: episode for key, episode in self._episodes.items()
            if kept.get(episode.rule.id) == episode.rule
        }
        self._timed &= set(self._episodes)
        self._by_signal = {name: tuple(rules) for name, rules in by_signal.items()}
        self.counters = {rule.id: self.counters.get(rule.id, RuleCounters())
                         for rule in ruleset.rules}
        self._ruleset = ruleset

    def levels(self, signal_name: str) -> list[Decimal]:
        """Every threshold a rule compares ``signal_name`` against, sorted. Detectors emit a
        signal when their measurement crosses one of these, and need not emit otherwise."""
        found: set[Decimal] = set()
        for rule in self._by_signal.get(signal_name, ()):
            found.add(rule.when.threshold)
            if rule.clear_when is not None:
                found.add(rule.clear_when.threshold)
        return sorted(found)

    def watches(self, signal_name: str) -> bool:
        return signal_name in self._by_signal

    def firing(self) -> list[tuple[str, str]]:
        """``(rule id, episode key)`` of every firing episode."""
        return sorted((ep.rule.id, ep.key) for ep in self._episodes.values()
                      if ep.phase is _Phase.FIRING)

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, signal: Signal) -> list[Decision]:
        """The decisions ``signal`` causes (usually none)."""
        rules = self._by_signal.get(signal.name)
        if not rules:
            return []
        decisions: list[Decision] = []
        for rule in rules:
            if not rule.matches(signal.labels):
                continue
            episode = self._episode(rule, signal.labels)
            if episode is None:
                continue
            episode.last_signal = signal
            decision = self._step(episode, signal)
            if decision is not None:
                decisions.append(decision)
        if decisions or self._timed:
            decisions.extend(self.tick(signal.ts_ns))
        return decisions

    def tick(self, ts_ns: int) -> list[Decision]:
        """Let time pass to ``ts_ns``: fire what has held ``for_s``, resolve what has stayed
        clear ``clear_after_s``, and clear counted episodes whose hits left the window."""
        decisions: list[Decision] = []
        for key in sorted(self._timed):
            episode = self._episodes.get(key)
            if episode is None:
                self._timed.discard(key)
                continue
            decision = self._advance(episode, ts_ns)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _episode(self, rule: Rule, labels: Mapping[str, str]) -> _Episode | None:
        values = []
        for name in rule.group_by:
            value = labels.get(name)
            if value is None:
                return None  # the rule needs this label to know what to act on
            values.append(f"{name}={value}")
        key = rule.id + ("|" + ",".join(values) if values else "")
        episode = self._episodes.get(key)
        if episode is None:
            if len(self._episodes) >= EPISODES_MAX:
                self._forget_one()
            episode = _Episode(rule, key, {name: labels[name] for name in rule.group_by})
            self._episodes[key] = episode
        return episode

    def _forget_one(self) -> None:
        for key, episode in self._episodes.items():
            if episode.phase is not _Phase.FIRING:
                del self._episodes[key]
                self._timed.discard(key)
                return
        raise RuntimeError(f"{EPISODES_MAX} episodes are firing at once; the rules group by "
                           "too many label values (e.g. an address per episode)")

    def _step(self, episode: _Episode, signal: Signal) -> Decision | None:
        rule, ts = episode.rule, signal.ts_ns
        active = not signal.resolved and rule.when.holds(signal.value)
        if episode.phase is _Phase.FIRING:
            if active:
                episode.clear_since_ns = -1
                if rule.within_s:  # counted: each hit keeps the episode firing longer
                    episode.hits.append(ts)
                    self._drop_old_hits(episode, ts)
                else:
                    self._timed.discard(episode.key)
                self.counters[rule.id].suppressed += 1
                return None
            if rule.clears(signal):
                if episode.clear_since_ns < 0:
                    episode.clear_since_ns = ts
                    self._timed.add(episode.key)
                return self._advance(episode, ts)
            episode.clear_since_ns = -1  # between the fire and clear thresholds: still firing
            self._timed.discard(episode.key)
            return None
        if not active:
            episode.pending_since_ns = -1
            if not rule.within_s:
                self._timed.discard(episode.key)
            return None
        if rule.within_s:
            episode.hits.append(ts)
            self._drop_old_hits(episode, ts)
            if len(episode.hits) < rule.count:
                return None
        if rule.for_s:
            if episode.pending_since_ns < 0:
                episode.pending_since_ns = ts
                self._timed.add(episode.key)
            return self._advance(episode, ts)
        return self._fire(episode, signal, ts)

    def _drop_old_hits(self, episode: _Episode, ts: int) -> int:
        """Forget hits that left the window; returns the newest one forgotten (-1: none)."""
        oldest_ns = ts - episode.rule.within_s * NS_PER_S
        hits = episode.hits
        dropped = -1
        while hits and hits[0] <= oldest_ns:
            dropped = hits.popleft()
        return dropped

    def _advance(self, episode: _Episode, ts: int) -> Decision | None:
        rule = episode.rule
        if episode.phase is _Phase.FIRING:
            if rule.within_s and episode.clear_since_ns < 0:
                dropped = self._drop_old_hits(episode, ts)
                if len(episode.hits) < rule.count:  # counted events stopped coming
                    left_ns = dropped + rule.within_s * NS_PER_S if dropped >= 0 else ts
                    episode.clear_since_ns = min(ts, left_ns)
            if (episode.clear_since_ns >= 0
                    and ts - episode.clear_since_ns >= rule.clear_after_s * NS_PER_S):
                return self._resolve(episode, ts)
            return None
        if episode.pending_since_ns >= 0 and episode.last_signal is not None:
            if ts - episode.pending_since_ns >= rule.for_s * NS_PER_S:
                return self._fire(episode, episode.last_signal, ts)
            return None
        if episode.phase is _Phase.COOLDOWN and ts >= episode.cooldown_until_ns:
            episode.phase = _Phase.IDLE
        if episode.phase is _Phase.IDLE and not episode.hits:
            self._timed.discard(episode.key)
        return None

    def _fire(self, episode: _Episode, signal: Signal, ts: int) -> Decision:
        rule = episode.rule
        returning = episode.phase is _Phase.COOLDOWN and ts < episode.cooldown_until_ns
        episode.phase = _Phase.FIRING
        episode.pending_since_ns = -1
        episode.clear_since_ns = -1
        self._timed.discard(episode.key)
        if rule.within_s:
            self._timed.add(episode.key)  # counted: clears when the events stop
        self.counters[rule.id].fired += 1
        actions = [action.render(episode.labels) for action in rule.actions]
        if returning:  # the same trouble back within the cool-down: people are already on it
            actions = [action for action in actions if action.kind is not ActionKind.PAGE]
        return self._decision(episode, signal, DecisionKind.FIRED, actions, ts)

    def _resolve(self, episode: _Episode, ts: int) -> Decision:
        rule = episode.rule
        episode.phase = _Phase.COOLDOWN
        episode.cooldown_until_ns = ts + rule.cooldown_s * NS_PER_S
        episode.clear_since_ns = -1
        episode.hits.clear()
        self._timed.add(episode.key)
        self.counters[rule.id].resolved += 1
        signal = episode.last_signal
        assert signal is not None, "an episode resolves only after a signal"
        return self._decision(episode, signal, DecisionKind.RESOLVED, [], ts)

    def _decision(
        self, episode: _Episode, signal: Signal, kind: DecisionKind,
        actions: list[PlannedAction], ts: int,
    ) -> Decision:
        rule = episode.rule
        observed = str(signal.value)
        if rule.within_s and kind is DecisionKind.FIRED:
            observed += f" ({len(episode.hits)} time(s) in {rule.within_s} s)"
        fields = {**signal.labels, "rule_id": rule.id, "signal": signal.name,
                  "value": str(signal.value)}
        classification, severity = rule.classify(signal.labels)
        return Decision(
            key=episode.key,
            kind=kind,
            rule_id=rule.id,
            ruleset_version=self._ruleset.version,
            classification=classification,
            severity=severity,
            title=render(rule.title, fields),
            signal=signal,
            observed=observed,
            condition=rule.condition_text(),
            actions=actions,
            dry_run=self.dry_run or self._ruleset.dry_run or rule.dry_run,
            ts_ns=ts,
        )


def template_names(template: str) -> list[str]:
    """The ``{name}`` placeholders of ``template``, in order (for load-time checks)."""
    names: list[str] = []
    rest = template
    while "{" in rest:
        start = rest.index("{")
        end = rest.find("}", start)
        if end < 0:
            break
        names.append(rest[start + 1:end])
        rest = rest[end + 1:]
    return names
