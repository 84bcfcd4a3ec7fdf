"""Alert intake: alerts from other monitors become signals.

Two doors (routes in ``intake_views.py``):

* Prometheus Alertmanager's webhook, payload version ``4`` exactly as Alertmanager sends it
  (``receiver``, ``status``, ``alerts[]`` with ``status``, ``labels``, ``annotations``,
  ``startsAt``, ``endsAt``, ``generatorURL``, ``fingerprint``; ``groupLabels``,
  ``commonLabels``, ``commonAnnotations``, ``externalURL``, ``groupKey``,
  ``truncatedAlerts``). Each alert of a group becomes one ``alertmanager.firing`` signal
  (``resolved=True`` for a resolved alert).
* A generic JSON webhook for everything else (``webhook.firing``), documented on
  :class:`GenericWebhook`.

Alertmanager re-sends a group's alerts on every change of the group and every
``repeat_interval``; an alert is identified by its fingerprint and its ``startsAt``, and a
repeat of one already seen in the same state (or a stale "firing" of an episode already
resolved) is counted and dropped, so policies see each firing and each resolution once.

Labels map to the incident taxonomy by a YAML mapping (:func:`load_mapping`): the first
rule whose matchers fit sets ``category`` and ``severity``; ``components`` and ``markets``
come from the rule or from the alert's own labels. The mapped values are written into the
signal's labels (``category``, ``severity``, ``component``/``components``,
``market``/``markets``) next to the alert's own labels.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from haltguard.detection.monitors import (
    ConfigError,
    LinedDict,
    at_line,
    check_keys,
    list_at,
    load_yaml,
    mapping_at,
    text_at,
)
from haltguard.detection.signals import Signal
from haltguard.incidents.rules import Category, Severity
from haltguard.web.bounds import Count

ALERTMANAGER_SIGNAL = "alertmanager.firing"
WEBHOOK_SIGNAL = "webhook.firing"
ALERTS_PER_PAYLOAD_MAX = 1_000
LABELS_PER_ALERT_MAX = 64
LABEL_TEXT_MAX = 1_024
DETAIL_TEXT_MAX = 2_000
ALERTS_TRACKED_MAX = 10_000
MAPPING_RULES_MAX = 500

TOKENS_ENV = "HALTGUARD_INTAKE_TOKENS"
MAPPING_ENV = "HALTGUARD_INTAKE_MAPPING"
INTAKE_TOKEN_LENGTH_MIN = 16

WIRE_TEXT_MAX = 16_384  # a label or annotation value taken in; kept cut to the two above

_LabelMap = dict[Annotated[str, Field(max_length=LABEL_TEXT_MAX)],
                 Annotated[str, Field(max_length=WIRE_TEXT_MAX)]]


# --- payloads ------------------------------------------------------------------------


class _Wire(BaseModel):
    """Alertmanager may add fields in later versions; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class AlertmanagerAlert(_Wire):
    status: Literal["firing", "resolved"]
    labels: _LabelMap = Field(max_length=LABELS_PER_ALERT_MAX)
    annotations: _LabelMap = Field(default_factory=dict, max_length=LABELS_PER_ALERT_MAX)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL", max_length=LABEL_TEXT_MAX * 4)
    fingerprint: str = Field(default="", max_length=128,
                             description="Sent by Alertmanager 0.19+; computed if absent.")


class AlertmanagerPayload(_Wire):
    """One notification of Alertmanager's ``webhook_config``."""

    version: Literal["4"] = Field(description='The payload format; Alertmanager sends "4".')
    group_key: str = Field(alias="groupKey", max_length=LABEL_TEXT_MAX * 4)
    truncated_alerts: Count = Field(default=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=LABEL_TEXT_MAX)
    group_labels: _LabelMap = Field(default_factory=dict, alias="groupLabels",
                                    max_length=LABELS_PER_ALERT_MAX)
    common_labels: _LabelMap = Field(default_factory=dict, alias="commonLabels",
                                     max_length=LABELS_PER_ALERT_MAX)
    common_annotations: _LabelMap = Field(default_factory=dict, alias="commonAnnotations",
                                          max_length=LABELS_PER_ALERT_MAX)
    external_url: str = Field(default="", alias="externalURL", max_length=LABEL_TEXT_MAX * 4)
    alerts: list[AlertmanagerAlert] = Field(max_length=ALERTS_PER_PAYLOAD_MAX)


class GenericAlert(_Wire):
    status: Literal["firing", "resolved"] = "firing"
    name: str = Field(min_length=1, max_length=256, description="What is wrong, e.g. DiskFull.")
    id: str = Field(default="", max_length=128,
                    description="A stable id of this alert; computed from name and labels if "
                                "absent. Repeats of the same id and status are dropped.")
    labels: _LabelMap = Field(default_factory=dict, max_length=LABELS_PER_ALERT_MAX)
    annotations: _LabelMap = Field(default_factory=dict, max_length=LABELS_PER_ALERT_MAX)
    value: str = Field(default="1", max_length=64, pattern=r"^[-+]?[0-9]+(\.[0-9]+)?$",
                       description="The measurement as a decimal string, e.g. '93.5'.")
    started_at: str = Field(default="", max_length=64,
                            description="When it began (any text the sender keeps stable).")


class GenericWebhook(_Wire):
    """The generic webhook: ``{"source": "uptime-kuma", "alerts": [{"name": "DiskFull",
    "status": "firing", "labels": {"component": "database"}, "value": "93.5"}]}``.

    ``labels`` map to category, severity, components and markets by the same mapping as
    Alertmanager's; ``name`` is matched as the label ``alertname``.
    """

    source: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    alerts: list[GenericAlert] = Field(min_length=1, max_length=ALERTS_PER_PAYLOAD_MAX)


# --- the label mapping ---------------------------------------------------------------


@dataclass(frozen=True)
class MappingRule:
    line: int
    match: tuple[tuple[str, str], ...] = ()
    match_re: tuple[tuple[str, re.Pattern[str]], ...] = ()
    category: Category | None = None
    severity: Severity | None = None
    components: tuple[str, ...] = ()
    markets: tuple[str, ...] = ()

    def fits(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(name) == value for name, value in self.match) and all(
            pattern.fullmatch(labels.get(name, "")) is not None for name, pattern in self.match_re
        )


@dataclass(frozen=True)
class AlertMapping:
    """How alert labels become the incident taxonomy; see :data:`DEFAULT_MAPPING_YAML`."""

    default_category: Category
    default_severity: Severity
    severity_label: str
    severities: tuple[tuple[str, Severity], ...]
    component_labels: tuple[str, ...]
    market_labels: tuple[str, ...]
    rules: tuple[MappingRule, ...]
    source: str = ""

    def classify(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The mapped labels: category, severity, component(s), market(s)."""
        rule = next((r for r in self.rules if r.fits(labels)), None)
        severity = dict(self.severities).get(labels.get(self.severity_label, "").lower())
        mapped = {
            "category": str((rule and rule.category) or self.default_category),
            "severity": str((rule and rule.severity) or severity or self.default_severity),
        }
        components = list(rule.components) if rule and rule.components else _values_of(
            labels, self.component_labels
        )
        markets = list(rule.markets) if rule and rule.markets else _values_of(
            labels, self.market_labels
        )
        for singular, values in (("component", components), ("market", markets)):
            if values:
                mapped[singular + "s"] = ",".join(values)
                if len(values) == 1:
                    mapped[singular] = values[0]
        if rule is not None:
            mapped["mapping_rule_line"] = str(rule.line)
        return mapped


def _values_of(labels: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    values: list[str] = []
    for name in names:
        for value in labels.get(name, "").split(","):
            if value.strip() and value.strip() not in values:
                values.append(value.strip())
    return values


DEFAULT_MAPPING_YAML = """\
# How alert labels map to the incident taxonomy (chapter 1) and severities.
defaults:
  category: software_bug
  severity: SEV3
severity_label: severity          # the alert label read for severity ...
severities:                       # ... and how its values translate
  critical: SEV2
  page: SEV2
  error: SEV3
  warning: SEV3
  info: SEV4
component_labels: [component, service, job]   # where components are read from
market_labels: [market, symbol]               # where markets are read from
rules:                            # the first rule that fits sets what it names
  - match_re: {alertname: "(?i).*(postgres|database|db).*"}
    category: database
  - match_re: {alertname: "(?i).*(down|unreachable|instance).*"}
    category: server_down
  - match_re: {alertname: "(?i).*(network|packet|latency|dns).*"}
    category: network
  - match_re: {alertname: "(?i).*(ddos|flood|traffic).*"}
    category: ddos
  - match: {component: database}
    category: database
  - match: {component: network}
    category: network
"""

_TOP_KEYS = {"defaults", "severity_label", "severities", "component_labels", "market_labels",
             "rules"}
_RULE_KEYS = {"match", "match_re", "category", "severity", "components", "markets"}


def load_mapping(text: str, source: str = "alert mapping") -> AlertMapping:
    """Check a mapping file whole; the first problem refuses it, naming line and reason."""
    document = mapping_at(load_yaml(text, source), source, "the file")
    check_keys(document, _TOP_KEYS, source)
    defaults = mapping_at(document.get("defaults", LinedDict()), source, "'defaults'")
    check_keys(defaults, {"category", "severity"}, source)
    severities_map = mapping_at(document.get("severities", LinedDict()), source, "'severities'")
    severities = tuple(
        (str(name).lower(), _severity(value, severities_map, source))
        for name, value in severities_map.items()
    )
    rule_items = list_at(document, "rules", source)
    if len(rule_items) > MAPPING_RULES_MAX:
        raise ConfigError(f"{source}: {len(rule_items)} rules, at most {MAPPING_RULES_MAX}")
    return AlertMapping(
        default_category=_category(defaults.get("category", "software_bug"), defaults, source),
        default_severity=_severity(defaults.get("severity", "SEV3"), defaults, source),
        severity_label=text_at(document, "severity_label", source, default="severity"),
        severities=severities,
        component_labels=_names(document, "component_labels", source, ("component",)),
        market_labels=_names(document, "market_labels", source, ("market",)),
        rules=tuple(_mapping_rule(item, source) for item in rule_items),
        source=source,
    )


def _category(value: object, where: object, source: str) -> Category:
    try:
        return Category(str(value))
    except ValueError:
        raise ConfigError(
            f"{at_line(where, source)}: category {value!r} is not one of "
            f"{', '.join(c.value for c in Category)}"
        ) from None


def _severity(value: object, where: object, source: str) -> Severity:
    try:
        return Severity(str(value).upper())
    except ValueError:
        raise ConfigError(
            f"{at_line(where, source)}: severity {value!r} is not one of "
            f"{', '.join(s.value for s in Severity)}"
        ) from None


def _names(mapping: LinedDict, key: str, source: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if key not in mapping:
        return default
    values = list_at(mapping, key, source)
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{at_line(mapping, source)}: {key!r} must list label names")
    return tuple(str(v) for v in values)


def _mapping_rule(item: object, source: str) -> MappingRule:
    rule = mapping_at(item, source, "each rule")
    check_keys(rule, _RULE_KEYS, source)
    where = at_line(rule, source)
    match = mapping_at(rule.get("match", LinedDict()), where, "'match'")
    match_re = mapping_at(rule.get("match_re", LinedDict()), where, "'match_re'")
    if not match and not match_re:
        raise ConfigError(f"{where}: a rule needs 'match' or 'match_re' (label: value)")
    patterns = []
    for name, pattern in match_re.items():
        try:
            patterns.append((name, re.compile(str(pattern))))
        except re.error as exc:
            raise ConfigError(
                f"{where}: match_re {name}: {pattern!r} is not a regex: {exc}"
            ) from None
    if "category" not in rule and "severity" not in rule and not (
        rule.get("components") or rule.get("markets")
    ):
        raise ConfigError(f"{where}: the rule sets nothing; give category, severity, "
                          "components or markets")
    return MappingRule(
        line=rule.line,
        match=tuple((str(k), str(v)) for k, v in match.items()),
        match_re=tuple(patterns),
        category=_category(rule["category"], rule, source) if "category" in rule else None,
        severity=_severity(rule["severity"], rule, source) if "severity" in rule else None,
        components=_names(rule, "components", source, ()),
        markets=_names(rule, "markets", source, ()),
    )


DEFAULT_MAPPING = load_mapping(DEFAULT_MAPPING_YAML, "the built-in alert mapping")


# --- intake --------------------------------------------------------------------------


@dataclass(frozen=True)
class IntakeSettings:
    """Bearer tokens monitors present (several, so each monitor has its own and tokens can
    be rotated) and the label mapping. No token: the intake refuses everything."""

    tokens: tuple[str, ...] = ()
    mapping: AlertMapping = DEFAULT_MAPPING

    def __post_init__(self) -> None:
        short = [token for token in self.tokens if len(token) < INTAKE_TOKEN_LENGTH_MIN]
        if short:
            raise ValueError(f"{TOKENS_ENV}: every token needs at least "
                             f"{INTAKE_TOKEN_LENGTH_MIN} characters; generate one with "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")

    @classmethod
    def parse(cls, tokens: tuple[str, ...], mapping_file: Path | None = None) -> IntakeSettings:
        """The settings for ``tokens`` (blank ones dropped) and the label mapping in
        ``mapping_file`` (a YAML file; the built-in mapping if ``None``)."""
        kept = tuple(token.strip() for token in tokens if token.strip())
        if mapping_file is None:
            return cls(tokens=kept)
        try:
            text = mapping_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{MAPPING_ENV}: cannot read {mapping_file}: {exc.strerror}"
                             ) from None
        return cls(tokens=kept, mapping=load_mapping(text, str(mapping_file)))


@dataclass
class _Seen:
    status: str
    started: str


@dataclass
class IntakeOutcome:
    """What one payload did: the signals it produced and how many alerts were repeats."""

    received: int = 0
    duplicates: int = 0
    signals: list[Signal] = field(default_factory=list)


class AlertIntake:
    """Turns payloads into signals, dropping repeats. Thread-safe; bounded memory."""

    def __init__(self, mapping: AlertMapping = DEFAULT_MAPPING, *,
                 clock: Callable[[], int] = time.time_ns,
                 alerts_tracked_max: int = ALERTS_TRACKED_MAX) -> None:
        self.mapping = mapping
        self.clock = clock
        self.alerts_tracked_max = alerts_tracked_max
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def alertmanager(self, payload: AlertmanagerPayload) -> IntakeOutcome:
        outcome = IntakeOutcome(received=len(payload.alerts))
        now = self.clock()
        common = {
            "receiver": payload.receiver,
            "group_key": payload.group_key,
            "external_url": payload.external_url,
            "truncated_alerts": str(payload.truncated_alerts),
        }
        for alert in payload.alerts:
            labels = {**payload.common_labels, **alert.labels}
            fingerprint = alert.fingerprint or _fingerprint("alertmanager", labels)
            started = alert.starts_at.isoformat()
            if not self._first_time("am:" + fingerprint, alert.status, started):
                outcome.duplicates += 1
                continue
            annotations = {**payload.common_annotations, **alert.annotations}
            details = {
                **common,
                "starts_at": started,
                "ends_at": alert.ends_at.isoformat() if alert.ends_at else "",
                "generator_url": alert.generator_url,
                "summary": annotations.get("summary", ""),
                "description": annotations.get("description", ""),
                "runbook_url": annotations.get("runbook_url", ""),
                "alert_labels": json.dumps(labels, sort_keys=True),
            }
            outcome.signals.append(self._signal(
                "alertmanager", ALERTMANAGER_SIGNAL, labels, fingerprint=fingerprint,
                value=Decimal(1), details=details, resolved=alert.status == "resolved", now=now,
            ))
        return outcome

    def webhook(self, payload: GenericWebhook) -> IntakeOutcome:
        outcome = IntakeOutcome(received=len(payload.alerts))
        now = self.clock()
        for alert in payload.alerts:
            labels = {**alert.labels, "alertname": alert.name}
            fingerprint = alert.id or _fingerprint(payload.source, labels)
            if not self._first_time(f"wh:{payload.source}:{fingerprint}", alert.status,
                                    alert.started_at):
                outcome.duplicates += 1
                continue
            value = Decimal(alert.value)  # the pattern admits plain decimals only
            details = {
                "summary": alert.annotations.get("summary", ""),
                "description": alert.annotations.get("description", ""),
                "started_at": alert.started_at,
                "sender": payload.source,
                "value_text": alert.value,
                "alert_labels": json.dumps(labels, sort_keys=True),
            }
            outcome.signals.append(self._signal(
                f"webhook:{payload.source}", WEBHOOK_SIGNAL, labels, fingerprint=fingerprint,
                value=value, details=details, resolved=alert.status == "resolved", now=now,
            ))
        return outcome

    def _signal(self, source: str, name: str, labels: dict[str, str], *, fingerprint: str,
                value: Decimal, details: dict[str, str], resolved: bool, now: int) -> Signal:
        merged = {key: text[:LABEL_TEXT_MAX] for key, text in labels.items()}
        merged.update(self.mapping.classify(labels))
        merged["fingerprint"] = fingerprint
        trimmed = {key: text[:DETAIL_TEXT_MAX] for key, text in details.items() if text}
        return Signal(source=source, name=name, value=value, ts_ns=now, labels=merged,
                      details=trimmed, resolved=resolved)

    def forget(self, signal: Signal) -> None:
        """Undo the record of an alert whose signal could not be delivered, so the sender's
        retry is not taken for a repeat."""
        fingerprint = signal.labels.get("fingerprint", "")
        if signal.source == "alertmanager":
            key = "am:" + fingerprint
        else:
            key = f"wh:{signal.source.removeprefix('webhook:')}:{fingerprint}"
        with self._lock:
            self._seen.pop(key, None)

    def _first_time(self, key: str, status: str, started: str) -> bool:
        """Record the alert's state; False if it says nothing new: the same state again, or
        "firing" for an episode (same start) already resolved, which is a stale copy (from a
        second Alertmanager of a cluster, or a retry overtaken by the resolution)."""
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and seen.started == started and (
                seen.status in (status, "resolved")
            ):
                self._seen.move_to_end(key)
                return False
            self._seen[key] = _Seen(status, started)
            self._seen.move_to_end(key)
            while len(self._seen) > self.alerts_tracked_max:
                self._forget_one()
            return True

    def _forget_one(self) -> None:
        """Forget the oldest resolved alert, else the oldest of all."""
        for key, seen in self._seen.items():
            if seen.status == "resolved":
                del self._seen[key]
                return
        self._seen.popitem(last=False)


def _fingerprint(source: str, labels: Mapping[str, str]) -> str:
    """A stable id from the sorted labels (not Alertmanager's own hash; used only when the
    sender gives none)."""
    canonical = json.dumps([source, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
