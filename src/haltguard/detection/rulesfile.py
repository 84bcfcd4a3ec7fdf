"""The rules file: its schema (the one source of truth for the loader and the reference in
``docs/rules-reference.md``) and a loader that keeps line numbers.

A rules file is refused as a whole: every problem is collected with its file and line, and
nothing of the file comes into force unless all of it is good. Rules may only make things
safer: an action that would resume trading, unfreeze withdrawals or unblock a client is
refused at load, because that is always a person's decision.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

from haltguard.detection.decisions import CLIENT_ACTIONS, ActionKind
from haltguard.detection.market import SIGNAL_DOCS
from haltguard.detection.policies import (
    OPERATORS,
    ActionTemplate,
    Condition,
    DetectorSettings,
    Rule,
    RuleSet,
    template_names,
)
from haltguard.incidents.rules import Category, Severity

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.example.yaml")
"""The rules shipped with haltguard, used when no rules file is configured."""
RULES_FILE_BYTES_MAX = 1 << 20
RULES_MAX = 1_000
ACTIONS_PER_RULE_MAX = 16
SECONDS_MAX = 7 * 24 * 3600
AUCTION_S_MAX = 3_600
LIMIT_PER_S_MAX = 1_000_000
FORMAT_VERSION = 1

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SIGNAL = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CONDITION = re.compile(r"^\s*(>=|<=|==|>|<)\s*([-+]?[0-9]+(\.[0-9]+)?)\s*$")
_WHOLE = re.compile(r"^[-+]?[0-9][0-9_]*$")
_TITLE_FIELDS = ("rule_id", "signal", "value")


# --- the schema -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """One key of the file: its name, what it holds, whether it is required, its default
    (as written in the file) and what it means."""

    name: str
    kind: str
    required: bool
    default: str
    doc: str


@dataclass(frozen=True)
class ActionSpec:
    kind: ActionKind
    doc: str
    target: str  # the parameter naming what the action works on; "" for none
    target_default: str  # its template when the rule does not give it; "" when required
    params: tuple[FieldSpec, ...]


TOP_FIELDS = (
    FieldSpec("version", "whole number", True, "",
              f"The format version; must be {FORMAT_VERSION}."),
    FieldSpec("dry_run", "boolean", False, "false",
              "Dry-run for every rule: decisions are recorded, nothing is done."),
    FieldSpec("detectors", "mapping", False, "(defaults below)",
              "Windows and sampling of the market detectors (see Detectors)."),
    FieldSpec("rules", "list of rules", True, "", "The rules, each a mapping (see Rules)."),
)

DETECTOR_FIELDS = (
    FieldSpec("price_window_s", "seconds", False, "60",
              "`market.price_move_bps` measures the move within this many seconds."),
    FieldSpec("trade_rate_window_s", "seconds", False, "10",
              "`market.trade_rate_ratio` compares trades in this window..."),
    FieldSpec("trade_rate_baseline_s", "seconds", False, "300",
              "...with the average rate over this longer window."),
    FieldSpec("trade_rate_min_trades", "whole number", False, "50",
              "Fewer trades than this in the window never count as a burst (chance, not "
              "a spike)."),
    FieldSpec("book_sample_ms", "milliseconds", False, "250",
              "How often (venue time) spread and depth are sampled."),
    FieldSpec("book_depth_bps", "basis points", False, "100",
              "`market.depth_lots` counts lots within this distance of the mid."),
)

RULE_FIELDS = (
    FieldSpec("id", "identifier", True, "",
              "Unique; lower-case letters, digits, `-` and `_`. Appears in every explanation."),
    FieldSpec("description", "text", False, "\"\"", "What the rule is for, for people."),
    FieldSpec("signal", "signal name", True, "",
              "The signal the rule watches, e.g. `market.price_move_bps`."),
    FieldSpec("match", "mapping of label to pattern", False, "{}",
              "Labels the signal must carry; a pattern may use `*` and `?`."),
    FieldSpec("when", "condition", True, "",
              "`OP NUMBER` with OP one of `>`, `>=`, `<`, `<=`, `==` and an integer or "
              "decimal number, e.g. `>= 500`."),
    FieldSpec("for_s", "seconds", False, "0",
              "The condition must hold this long before the rule fires."),
    FieldSpec("count", "whole number", False, "1",
              "Fire when the condition was seen this many times within `within_s`."),
    FieldSpec("within_s", "seconds", False, "0",
              "The window for `count` (needed when `count` is above 1). A counted rule "
              "clears once fewer than `count` hits remain in the window."),
    FieldSpec("clear_when", "condition", False, "(not `when`)",
              "Hysteresis: the episode clears only when this holds, e.g. fire at `> 500`, "
              "clear at `< 300`. Must not overlap `when`."),
    FieldSpec("clear_after_s", "seconds", False, "60",
              "The clear condition must hold this long (or the signal be resolved) before "
              "the episode resolves."),
    FieldSpec("cooldown_s", "seconds", False, "300",
              "A new firing within this long after resolving is the same episode: it joins "
              "the same incident and does not page again."),
    FieldSpec("group_by", "list of label names", False, "(labels the templates use)",
              "One episode per distinct value of these labels; a signal without them does "
              "not match. Must include every label the action and title templates use."),
    FieldSpec("classification", "category", True, "",
              "The cause, from the manual's chapter 1: " + ", ".join(f"`{c}`" for c in Category)
              + ". Or `\"{label}\"` to take it from a label of the signal (the alert intake's "
              "`category`); a signal whose label is not a category does not match."),
    FieldSpec("severity", "severity", True, "", "One of " + ", ".join(f"`{s}`" for s in Severity)
              + ", or `\"{label}\"` to take it from a label (the alert intake's `severity`)."),
    FieldSpec("title", "template", False, "\"{rule_id}: {signal} = {value}\"",
              "The incident title; `{label}`, `{rule_id}`, `{signal}`, `{value}` are filled in."),
    FieldSpec("dry_run", "boolean", False, "false",
              "This rule only records what it would have done."),
    FieldSpec("actions", "list of actions", True, "",
              "What to do when the rule fires, in order (see Actions). Each is a name, or a "
              "name with a mapping of parameters."),
)

_MARKET = FieldSpec("market", "template", False, "\"{market}\"", "The market, from the labels.")
ACTION_SPECS: dict[ActionKind, ActionSpec] = {
    ActionKind.OPEN_OR_UPDATE_INCIDENT: ActionSpec(
        ActionKind.OPEN_OR_UPDATE_INCIDENT,
        "Open an incident with the rule's classification, severity and title, or add to the "
        "open incident of the same episode. The timeline gets the rule, values and labels.",
        "", "", ()),
    ActionKind.PAGE: ActionSpec(
        ActionKind.PAGE, "Page the on-call about the incident (not again within the "
        "cool-down).", "", "", ()),
    ActionKind.HALT_MARKET: ActionSpec(
        ActionKind.HALT_MARKET, "Halt the market: no new orders.", "market", "{market}",
        (_MARKET, FieldSpec("cancels_allowed", "boolean", False, "true",
                            "Owners may still cancel resting orders."))),
    ActionKind.PAUSE_MARKET: ActionSpec(
        ActionKind.PAUSE_MARKET, "Move an open market to an auction of `auction_s` seconds "
        "(orders collect, nothing matches, then one uncross). Never applied to a market "
        "that is already more restricted.", "market", "{market}",
        (_MARKET, FieldSpec("auction_s", "seconds", True, "",
                            f"The auction's length, 1..{AUCTION_S_MAX}."))),
    ActionKind.CANCEL_ONLY: ActionSpec(
        ActionKind.CANCEL_ONLY, "Put the market in cancel-only.", "market", "{market}",
        (_MARKET,)),
    ActionKind.FREEZE_WITHDRAWALS: ActionSpec(
        ActionKind.FREEZE_WITHDRAWALS, "Freeze withdrawals of the asset.", "asset", "{asset}",
        (FieldSpec("asset", "template", False, "\"{asset}\"", "The asset, from the labels."),)),
    ActionKind.FREEZE_ACCOUNT_WITHDRAWALS: ActionSpec(
        ActionKind.FREEZE_ACCOUNT_WITHDRAWALS, "Freeze every withdrawal of one customer "
        "account, whatever the asset, where the evidence is about that account (its keys' "
        "signatures failing, impossible travel); the other accounts keep withdrawing.",
        "account", "{account}",
        (FieldSpec("account", "template", False, "\"{account}\"",
                   "The account number, from the labels."),)),
    ActionKind.RATE_LIMIT_CLIENT: ActionSpec(
        ActionKind.RATE_LIMIT_CLIENT, "Ask the gateway to limit the client's request rate "
        "for a while (enforced by the load/security layer).", "client", "",
        (FieldSpec("client", "template", True, "",
                   "Who: e.g. `\"{api_key}\"`, `\"{account}\"` or `\"{source}\"`."),
         FieldSpec("limit_per_s", "whole number", True, "",
                   f"Requests per second allowed, 1..{LIMIT_PER_S_MAX}."),
         FieldSpec("duration_s", "seconds", True, "", "How long the limit lasts."))),
    ActionKind.BLOCK_CLIENT: ActionSpec(
        ActionKind.BLOCK_CLIENT, "Ask the gateway to block the client for a while (enforced "
        "by the load/security layer).", "client", "",
        (FieldSpec("client", "template", True, "", "Who, as for `rate_limit_client`."),
         FieldSpec("duration_s", "seconds", True, "", "How long the block lasts."))),
    ActionKind.BLOCK_LOGIN: ActionSpec(
        ActionKind.BLOCK_LOGIN, "Block a source address from the operators' login route "
        "(`/api/auth/login`) for a while, and nothing else: customers behind the same "
        "address keep trading. An operator who logged in from that address before still "
        "gets in with the right password and code. Listed and lifted early with "
        "`haltguard operator login-blocks`.", "client", "",
        (FieldSpec("client", "template", True, "",
                   "The address: `\"{client}\"` of the login detector's signals "
                   "(`address:<ip>`), or `\"{source_address}\"`."),
         FieldSpec("duration_s", "seconds", True, "", "How long the block lasts."))),
}

LOOSENING_ACTIONS: dict[str, str] = {
    "resume_market": "resuming trading",
    "resume": "resuming trading",
    "reopen_market": "resuming trading",
    "open_market": "resuming trading",
    "set_market_state": "possibly reopening a market",
    "start_resume_plan": "resuming trading",
    "release_kill_switch": "releasing the kill switch",
    "unfreeze_withdrawals": "unfreezing withdrawals",
    "unfreeze": "unfreezing withdrawals",
    "unblock_client": "unblocking a client",
    "lift_rate_limit": "lifting a rate limit",
    "resolve_incident": "resolving an incident",
    "close_incident": "closing an incident",
}
"""Names a rules author might reach for that would loosen protection, and what they do."""


# --- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleProblem:
    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


class RulesError(ValueError):
    """The rules file was refused as a whole; ``problems`` says where and why."""

    def __init__(self, source: str, problems: list[RuleProblem]) -> None:
        self.source = source
        self.problems = problems
        count = len(problems)
        super().__init__(
            f"{source} was refused ({count} problem{'s' if count != 1 else ''}); the rules "
            "in force are unchanged. Fix these and load it again:\n"
            + "\n".join(f"  {problem}" for problem in problems)
        )


# --- loading ----------------------------------------------------------------------------------


def load_rules_file(path: Path | str) -> RuleSet:
    """Read and check ``path``; raise :class:`RulesError` unless all of it is good."""
    return load_rules_text(read_rules_file(path), str(path))


def read_rules_file(path: Path | str) -> str:
    """The text of ``path``, or :class:`RulesError` saying why it cannot be read."""
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > RULES_FILE_BYTES_MAX:
            raise RulesError(source, [RuleProblem(
                source, 0, f"the file is {size} bytes; a rules file has at most "
                f"{RULES_FILE_BYTES_MAX} bytes")])
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(source, [RuleProblem(
            source, 0, f"cannot read it: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise RulesError(source, [RuleProblem(source, 0, f"not UTF-8 text: {exc.reason}")]) \
            from None


def load_rules_text(text: str, source: str = "<rules>") -> RuleSet:
    """Check ``text`` (the content of ``source``) and build its :class:`RuleSet`."""
    if len(text.encode("utf-8")) > RULES_FILE_BYTES_MAX:
        raise RulesError(source, [RuleProblem(
            source, 0, f"a rules file has at most {RULES_FILE_BYTES_MAX} bytes")])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise RulesError(source, [RuleProblem(
            source, line, f"not valid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise RulesError(source, [RuleProblem(source, 0, f"not valid YAML: {exc}")]) from None
    checker = _Checker(source)
    ruleset = checker.ruleset(root, text)
    if checker.problems:
        raise RulesError(source, checker.problems)
    assert ruleset is not None
    return ruleset


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Checker:
    """Walks the composed YAML, collecting every problem with its line."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[RuleProblem] = []

    def problem(self, node: yaml.Node | int, message: str) -> None:
        line = node if isinstance(node, int) else _line(node)
        self.problems.append(RuleProblem(self.source, line, message))

    # -- shapes ----------------------------------------------------------------------------

    def mapping(
        self, node: yaml.Node, where: str, fields: tuple[FieldSpec, ...]
    ) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{where} must be a mapping of keys to values")
            return None
        known = {spec.name for spec in fields}
        items: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.problem(key_node, f"{where}: keys must be plain names")
                continue
            if key in items:
                self.problem(key_node, f"{where}: '{key}' is given twice")
                continue
            if key not in known:
                self.problem(key_node, f"{where}: unknown key '{key}'; the keys are: "
                             + ", ".join(spec.name for spec in fields))
                continue
            items[key] = value_node
        for spec in fields:
            if spec.required and spec.name not in items:
                self.problem(node, f"{where}: '{spec.name}' is required ({spec.doc})")
        return items

    def text(self, node: yaml.Node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.problem(node, f"{what} must be a single value")
            return None
        return str(node.value)

    def whole(self, node: yaml.Node, what: str, low: int, high: int) -> int | None:
        raw = self.text(node, what)
        if raw is None:
            return None
        if node.tag != "tag:yaml.org,2002:int" or not _WHOLE.match(raw):
            self.problem(node, f"{what} must be a whole number, not '{raw}'")
            return None
        value = int(raw.replace("_", ""))
        if not low <= value <= high:
            self.problem(node, f"{what} must be between {low} and {high}, not {value}")
            return None
        return value

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        raw = self.text(node, what)
        if raw is None:
            return None
        if node.tag != "tag:yaml.org,2002:bool":
            self.problem(node, f"{what} must be true or false, not '{raw}'")
            return None
        return raw.lower() in {"true", "yes", "on", "y"}

    def condition(self, node: yaml.Node, what: str) -> Condition | None:
        raw = self.text(node, what)
        if raw is None:
            return None
        found = _CONDITION.match(raw)
        if found is None:
            self.problem(node, f"{what} must be 'OP NUMBER' with OP one of "
                         f"{', '.join(OPERATORS)}, e.g. '>= 500'; got '{raw}'")
            return None
        try:
            return Condition(found.group(1), Decimal(found.group(2)))
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            self.problem(node, f"{what}: '{found.group(2)}' is not a number")
            return None

    def template(self, node: yaml.Node, what: str, allowed_extra: tuple[str, ...] = ()) -> (
        str | None
    ):
        raw = self.text(node, what)
        if raw is None:
            return None
        if raw.count("{") != raw.count("}"):
            self.problem(node, f"{what}: unbalanced braces in '{raw}'")
            return None
        for name in template_names(raw):
            if not _LABEL.match(name) and name not in allowed_extra:
                self.problem(node, f"{what}: '{{{name}}}' is not a label name; write "
                             "'{market}', '{asset}' and the like")
                return None
        return raw

    # -- the file --------------------------------------------------------------------------

    def ruleset(self, root: yaml.Node | None, text: str) -> RuleSet | None:
        if root is None:
            self.problem(1, f"the file is empty; it needs 'version: {FORMAT_VERSION}' and "
                         "'rules:'")
            return None
        top = self.mapping(root, "the rules file", TOP_FIELDS)
        if top is None:
            return None
        if "version" in top:
            version = self.whole(top["version"], "version", 0, 1_000_000)
            if version is not None and version != FORMAT_VERSION:
                self.problem(top["version"], f"version {version} is not known; this haltguard "
                             f"reads version {FORMAT_VERSION}")
        dry_run = False
        if "dry_run" in top:
            dry_run = bool(self.boolean(top["dry_run"], "dry_run"))
        detectors = DetectorSettings()
        if "detectors" in top:
            detectors = self.detectors(top["detectors"]) or detectors
        rules: list[Rule] = []
        if "rules" in top:
            rules = self.rules(top["rules"])
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        return RuleSet(rules=tuple(rules), version=digest, source=self.source, dry_run=dry_run,
                       detectors=detectors)

    def detectors(self, node: yaml.Node) -> DetectorSettings | None:
        items = self.mapping(node, "detectors", DETECTOR_FIELDS)
        if items is None:
            return None
        values: dict[str, int] = {}
        for name, value_node in items.items():
            high = {"book_sample_ms": 3_600_000, "book_depth_bps": 10_000,
                    "trade_rate_min_trades": 1_000_000}.get(name, SECONDS_MAX)
            value = self.whole(value_node, f"detectors.{name}", 1, high)
            if value is not None:
                values[name] = value
        settings = DetectorSettings(**values)
        if settings.trade_rate_baseline_s <= settings.trade_rate_window_s:
            self.problem(node, "detectors.trade_rate_baseline_s must be longer than "
                         "trade_rate_window_s")
        return settings

    def rules(self, node: yaml.Node) -> list[Rule]:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, "rules must be a list of rules (each item starting with '- id:')")
            return []
        if len(node.value) > RULES_MAX:
            self.problem(node, f"{len(node.value)} rules; a file holds at most {RULES_MAX}")
            return []
        rules: list[Rule] = []
        first_line: dict[str, int] = {}
        for item in node.value:
            rule = self.rule(item)
            if rule is None:
                continue
            if rule.id in first_line:
                self.problem(item, f"rule id '{rule.id}' is used twice (first at line "
                             f"{first_line[rule.id]}); ids must be unique")
                continue
            first_line[rule.id] = rule.line
            rules.append(rule)
        return rules

    def rule(self, node: yaml.Node) -> Rule | None:
        before = len(self.problems)
        items = self.mapping(node, "a rule", RULE_FIELDS)
        if items is None:
            return None
        rule_id = self.text(items["id"], "id") if "id" in items else None
        if rule_id is not None and not _ID.match(rule_id):
            self.problem(items["id"], f"rule id '{rule_id}' must be 1..64 lower-case letters, "
                         "digits, '-' or '_'")
            rule_id = None
        where = f"rule '{rule_id}'" if rule_id else "a rule"
        signal = self.text(items["signal"], f"{where}: signal") if "signal" in items else None
        if signal is not None and not _SIGNAL.match(signal):
            self.problem(items["signal"], f"{where}: signal '{signal}' must be a dotted "
                         "lower-case name such as 'market.price_move_bps'")
        when = self.condition(items["when"], f"{where}: when") if "when" in items else None
        clear_when = None
        if "clear_when" in items:
            clear_when = self.condition(items["clear_when"], f"{where}: clear_when")
            if when is not None and clear_when is not None and _overlap(when, clear_when):
                self.problem(items["clear_when"], f"{where}: clear_when '{clear_when}' overlaps "
                             f"when '{when}': a value could both fire and clear the rule")
        ints: dict[str, int] = {}
        for name in ("for_s", "within_s", "clear_after_s", "cooldown_s"):
            if name in items:
                value = self.whole(items[name], f"{where}: {name}", 0, SECONDS_MAX)
                if value is not None:
                    ints[name] = value
        if "count" in items:
            value = self.whole(items["count"], f"{where}: count", 1, 10_000)
            if value is not None:
                ints["count"] = value
        if ints.get("count", 1) > 1 and not ints.get("within_s"):
            self.problem(items.get("count", node), f"{where}: count above 1 needs within_s, "
                         "the window the hits are counted in")
        classification = self.choice(items, "classification", Category, where)
        severity = self.choice(items, "severity", Severity, where)
        match = self.match(items["match"], where) if "match" in items else {}
        actions = self.actions(items["actions"], where) if "actions" in items else []
        kinds = {action.kind for action in actions}
        explained = kinds - CLIENT_ACTIONS - {ActionKind.OPEN_OR_UPDATE_INCIDENT}
        if explained and ActionKind.OPEN_OR_UPDATE_INCIDENT not in kinds:
            self.problem(items["actions"], f"{where}: "
                         + ", ".join(sorted(kind.value for kind in explained))
                         + " needs open_or_update_incident in the same rule, so the incident "
                         "timeline explains what was done and why")
        templates = [action.target_template for action in actions]
        group_by = self.group_by(items, templates, where)
        title = "{rule_id}: {signal} = {value}"
        if "title" in items:
            title = self.template(items["title"], f"{where}: title", _TITLE_FIELDS) or title
        for name in template_names(title):
            if name not in _TITLE_FIELDS and name not in group_by:
                self.problem(items["title"], f"{where}: title uses '{{{name}}}', which "
                             "group_by does not list")
        dry_run = bool(self.boolean(items["dry_run"], f"{where}: dry_run")) \
            if "dry_run" in items else False
        description = ""
        if "description" in items:
            description = self.text(items["description"], f"{where}: description") or ""
        if len(self.problems) > before:
            return None
        assert rule_id and signal and when and classification and severity
        classification_label = classification.strip("{}") if "{" in classification else ""
        severity_label = severity.strip("{}") if "{" in severity else ""
        return Rule(
            id=rule_id, signal=signal, match=match, when=when,
            classification=(Category.SOFTWARE_BUG if classification_label
                            else Category(classification)),
            severity=Severity.SEV3 if severity_label else Severity(severity),
            classification_label=classification_label, severity_label=severity_label,
            actions=tuple(actions), title=title, description=description,
            group_by=tuple(group_by), clear_when=clear_when, dry_run=dry_run,
            line=_line(node), **ints,
        )

    def choice(
        self, items: dict[str, yaml.Node], name: str, kind: type[Category] | type[Severity],
        where: str,
    ) -> str | None:
        """The value, or ``{label}`` when it comes from the signal's label."""
        if name not in items:
            return None
        raw = self.text(items[name], f"{where}: {name}")
        if raw is None:
            return None
        names = template_names(raw)
        if names and raw == "{" + names[0] + "}":
            if not _LABEL.match(names[0]):
                self.problem(items[name], f"{where}: {name} '{raw}' is not a label name")
                return None
            return raw
        allowed = [member.value for member in kind]
        if raw not in allowed:
            self.problem(items[name], f"{where}: {name} '{raw}' is not one of "
                         + ", ".join(allowed))
            return None
        return raw

    def match(self, node: yaml.Node, where: str) -> dict[str, str]:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{where}: match must be a mapping of label to pattern")
            return {}
        found: dict[str, str] = {}
        for key_node, value_node in node.value:
            label = self.text(key_node, f"{where}: a match label")
            pattern = self.text(value_node, f"{where}: match.{label}")
            if label is None or pattern is None:
                continue
            if not _LABEL.match(label):
                self.problem(key_node, f"{where}: '{label}' is not a label name")
            elif label in found:
                self.problem(key_node, f"{where}: match.{label} is given twice")
            else:
                found[label] = pattern
        return found

    def group_by(self, items: dict[str, yaml.Node], templates: list[str], where: str) -> (
        list[str]
    ):
        used: list[str] = []
        for template in templates:
            for name in template_names(template):
                if name not in used:
                    used.append(name)
        if "group_by" not in items:
            return used
        node = items["group_by"]
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, f"{where}: group_by must be a list of label names")
            return used
        names: list[str] = []
        for item in node.value:
            given = self.text(item, f"{where}: group_by item")
            if given is None:
                continue
            if not _LABEL.match(given):
                self.problem(item, f"{where}: group_by '{given}' is not a label name")
            elif given not in names:
                names.append(given)
        for name in used:
            if name not in names:
                self.problem(node, f"{where}: an action uses '{{{name}}}', so group_by must "
                             f"list '{name}' (one episode per {name})")
        return names

    def actions(self, node: yaml.Node, where: str) -> list[ActionTemplate]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.problem(node, f"{where}: actions must be a non-empty list, e.g. "
                         "'- open_or_update_incident'")
            return []
        if len(node.value) > ACTIONS_PER_RULE_MAX:
            self.problem(node, f"{where}: at most {ACTIONS_PER_RULE_MAX} actions per rule")
            return []
        actions: list[ActionTemplate] = []
        for item in node.value:
            action = self.action(item, where)
            if action is not None:
                actions.append(action)
        return actions

    def action(self, node: yaml.Node, where: str) -> ActionTemplate | None:
        params_node: yaml.Node | None = None
        if isinstance(node, yaml.ScalarNode):
            name = str(node.value)
        elif isinstance(node, yaml.MappingNode) and len(node.value) == 1:
            key_node, params_node = node.value[0]
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
        else:
            self.problem(node, f"{where}: an action is a name, or a name with a mapping of "
                         "parameters (e.g. 'halt_market: {market: \"{market}\"}')")
            return None
        if name in LOOSENING_ACTIONS:
            self.problem(node, f"{where}: action '{name}' would loosen protection "
                         f"({LOOSENING_ACTIONS[name]}); automatic actions may only make things "
                         "safer. Resuming trading, unfreezing withdrawals and unblocking "
                         "clients are always a person's decision")
            return None
        try:
            kind = ActionKind(name)
        except ValueError:
            self.problem(node, f"{where}: unknown action '{name}'; the actions are: "
                         + ", ".join(kind.value for kind in ActionKind))
            return None
        spec = ACTION_SPECS[kind]
        given: dict[str, yaml.Node] = {}
        if params_node is not None and not (
            isinstance(params_node, yaml.ScalarNode) and params_node.value in ("", "~", "null")
        ):
            given = self.mapping(params_node, f"{where}: {name}", spec.params) or {}
        elif any(param.required for param in spec.params):
            required = ", ".join(param.name for param in spec.params if param.required)
            self.problem(node, f"{where}: {name} needs {required}")
            return None
        params: dict[str, str] = {}
        target = spec.target_default
        for param in spec.params:
            if param.name not in given:
                continue
            value_node = given[param.name]
            label = f"{where}: {name}.{param.name}"
            value: str | None
            if param.kind == "template":
                value = self.template(value_node, label)
            elif param.kind == "boolean":
                flag = self.boolean(value_node, label)
                value = None if flag is None else str(flag).lower()
            else:
                high = AUCTION_S_MAX if param.name == "auction_s" else (
                    LIMIT_PER_S_MAX if param.name == "limit_per_s" else SECONDS_MAX)
                number = self.whole(value_node, label, 1, high)
                value = None if number is None else str(number)
            if value is None:
                continue
            if param.name == spec.target:
                target = value
            else:
                params[param.name] = value
        return ActionTemplate(kind, target, params)


def _overlap(when: Condition, clear: Condition) -> bool:
    """True if some value satisfies both conditions (checked at the edges and just beyond)."""
    tiny = Decimal("0.000001")
    points = {when.threshold, clear.threshold}
    points |= {p + tiny for p in list(points)} | {p - tiny for p in list(points)}
    points |= {(when.threshold + clear.threshold) / 2}
    lowest, highest = min(points) - 1, max(points) + 1
    points |= {lowest, highest}
    return any(when.holds(point) and clear.holds(point) for point in points)


# --- the reference ----------------------------------------------------------------------------


def _field_table(fields: tuple[FieldSpec, ...]) -> list[str]:
    lines = ["| key | holds | required | default | meaning |", "|---|---|---|---|---|"]
    for spec in fields:
        default = "" if spec.required else f"`{spec.default}`" if spec.default else ""
        lines.append(f"| `{spec.name}` | {spec.kind} | {'yes' if spec.required else 'no'} | "
                     f"{default} | {spec.doc} |")
    return lines


def reference_markdown() -> str:
    """``docs/rules-reference.md``, generated from the schema above (one source of truth):
    ``haltguard detect rules reference > docs/rules-reference.md``."""
    out = [
        "# Detection rules reference",
        "",
        "<!-- Generated by `haltguard detect rules reference` from "
        "src/haltguard/detection/rulesfile.py; do not edit by hand. -->",
        "",
        "A rules file is YAML. It is checked as a whole when loaded (`haltguard detect rules "
        "check FILE`, `haltguard detect rules reload FILE`, `POST /api/detection/rules/"
        "reload`): any problem refuses the whole file, each problem is reported with its "
        "line, and the rules already running stay in force. The shipped defaults are "
        "`src/haltguard/detection/rules.example.yaml`.",
        "",
        "A rule watches one signal. When its condition holds, the rule *fires* once for its "
        "episode (one per value of its `group_by` labels) and plans its actions; while the "
        "episode keeps firing, or flaps, nothing new happens. The episode *resolves* after "
        "its clear condition has held `clear_after_s`; resolving undoes nothing. A firing "
        "within `cooldown_s` of resolving joins the same incident and does not page again.",
        "",
        "Numbers are integers or decimals, compared exactly (never as floating point).",
        "",
        "## Top level",
        "",
        *_field_table(TOP_FIELDS),
        "",
        "## Detectors",
        "",
        *_field_table(DETECTOR_FIELDS),
        "",
        "## Rules",
        "",
        *_field_table(RULE_FIELDS),
        "",
        "## Actions",
        "",
        "Written as a name (`- page`) or a name with parameters "
        "(`- halt_market: {market: \"{market}\"}`). Templates take `{label}` from the "
        "signal's labels. Any action but the client ones needs `open_or_update_incident` in "
        "the same rule, so the incident timeline and the audit chain say what was done and "
        "why: the rule, the observed value, the condition and the labels.",
        "",
        "A decision whose actions protect (a venue brake: `halt_market`, `pause_market`, "
        "`cancel_only`, `freeze_withdrawals`; or a client action: `rate_limit_client`, "
        "`block_client`, `block_login`) is performed before decisions made earlier that do "
        "not, so a halt never waits behind a burst of incident openings; within each group, "
        "decisions are performed in the order they were made, and within a decision the "
        "brakes go first.",
        "",
    ]
    for spec in ACTION_SPECS.values():
        out += [f"### `{spec.kind.value}`", "", spec.doc, ""]
        if spec.params:
            out += [*_field_table(spec.params), ""]
    out += [
        "## Signals from the venue",
        "",
        "Emitted by the market detectors when the measurement crosses a threshold some rule "
        "compares it against. Other signals come from the health monitors, the alert intake "
        "and the load and security detectors; see their documentation for names and labels.",
        "",
        "| signal | meaning |",
        "|---|---|",
        *[f"| `{name}` | {doc} |" for name, doc in SIGNAL_DOCS.items()],
        "",
        "## Refused actions",
        "",
        "Automatic actions only make things safer. These names are refused at load, with "
        "the reason, because they would loosen protection; a person does them (e.g. "
        "`haltguard incident resume`).",
        "",
        "| name | would mean |",
        "|---|---|",
        *[f"| `{name}` | {what} |" for name, what in LOOSENING_ACTIONS.items()],
        "",
    ]
    return "\n".join(out)
