"""Runbooks: the manual's chapter 2 as versioned YAML files, checked strictly when loaded.

Each category has a file in ``runbooks/`` that extends ``general.yaml`` with the steps its
cause needs; opening an incident turns the merged runbook into tasks. A malformed file is
refused with every problem found, each with its file and line, so a typo never reaches an
incident in progress.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from haltguard.incidents.rules import Category
from haltguard.security.permissions import Role

SCHEMA_VERSION = 1
GENERAL = "general"
DUE_MINUTES_MAX = 30 * 24 * 60
STEPS_MAX = 100
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Step:
    key: str
    owner_role: Role
    due_minutes: int
    ja: str
    en: str


@dataclass(frozen=True)
class Phase:
    key: str
    title_ja: str
    title_en: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Runbook:
    name: str
    version: int
    title_ja: str
    title_en: str
    phases: tuple[Phase, ...]
    digest: str  # sha256 of the files it was built from, so an incident names exactly what it ran

    def steps(self) -> list[tuple[Phase, Step]]:
        return [(phase, step) for phase in self.phases for step in phase.steps]


class RunbookError(ValueError):
    """A runbook file is malformed. ``problems`` lists each as ``file:line: what is wrong``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid runbook:\n" + "\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class _Source:
    name: str
    text: str


class _Checker:
    """Walks YAML nodes (which keep line numbers) and collects every problem it meets."""

    def __init__(self, source_name: str) -> None:
        self.source_name = source_name
        self.problems: list[str] = []

    def fail(self, node: Node | None, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(f"{self.source_name}:{line}: {message}")

    def mapping(
        self, node: Node, where: str, required: set[str], optional: frozenset[str] = frozenset()
    ) -> dict[str, Node] | None:
        if not isinstance(node, MappingNode):
            self.fail(node, f"{where} must be a mapping of keys to values")
            return None
        fields: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.fail(key_node, f"{where} has a key that is not text")
            elif key in fields:
                self.fail(key_node, f"{where} repeats the key '{key}'")
            elif key not in required | optional:
                allowed = ", ".join(sorted(required | optional))
                self.fail(key_node, f"{where} has an unknown key '{key}'; allowed: {allowed}")
            else:
                fields[key] = value_node
        for key in sorted(required - fields.keys()):
            self.fail(node, f"{where} is missing the required key '{key}'")
        return fields

    def text(self, node: Node | None, where: str) -> str:
        if node is None:
            return ""
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.fail(node, f"{where} must be text")
            return ""
        value = str(node.value).strip()
        if not value:
            self.fail(node, f"{where} must not be empty")
        return value

    def key(self, node: Node | None, where: str) -> str:
        value = self.text(node, where)
        if value and not _KEY.match(value):
            self.fail(node, f"{where} '{value}' must be lower_snake_case (a-z, 0-9, _)")
        return value

    def integer(self, node: Node | None, where: str, low: int, high: int) -> int:
        if node is None:
            return low
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:int":
            self.fail(node, f"{where} must be a whole number")
            return low
        value = int(node.value)
        if not low <= value <= high:
            self.fail(node, f"{where} is {value}; it must be between {low} and {high}")
        return value

    def sequence(self, node: Node | None, where: str) -> list[Node]:
        if node is None:
            return []
        if not isinstance(node, SequenceNode):
            self.fail(node, f"{where} must be a list")
            return []
        return list(node.value)

    def bilingual(self, node: Node | None, where: str) -> tuple[str, str]:
        if node is None:
            return "", ""
        fields = self.mapping(node, where, {"ja", "en"})
        if fields is None:
            return "", ""
        ja = self.text(fields.get("ja"), f"{where}.ja")
        return ja, self.text(fields.get("en"), f"{where}.en")

    def step(self, node: Node, where: str) -> tuple[Step, str | None] | None:
        fields = self.mapping(
            node, where, {"key", "owner", "due_minutes", "ja", "en"}, frozenset({"after"})
        )
        if fields is None:
            return None
        key = self.key(fields.get("key"), f"{where}.key")
        owner_text = self.text(fields.get("owner"), f"{where}.owner")
        roles = [role.value for role in Role]
        if owner_text and owner_text not in roles:
            self.fail(fields.get("owner"), f"{where}.owner '{owner_text}' is not a role; "
                      f"use one of {', '.join(roles)}")
            owner_text = Role.RESPONDER.value
        due = self.integer(fields.get("due_minutes"), f"{where}.due_minutes", 1, DUE_MINUTES_MAX)
        after = self.key(fields["after"], f"{where}.after") if "after" in fields else None
        step = Step(
            key=key,
            owner_role=Role(owner_text or Role.RESPONDER.value),
            due_minutes=due,
            ja=self.text(fields.get("ja"), f"{where}.ja"),
            en=self.text(fields.get("en"), f"{where}.en"),
        )
        return step, after


@dataclass(frozen=True)
class _Parsed:
    name: str
    version: int
    title_ja: str
    title_en: str
    extends: str | None
    phases: list[tuple[str, str, str, list[tuple[Step, str | None]], Node]]


def _parse(source: _Source) -> _Parsed:
    check = _Checker(source.name)
    try:
        root = yaml.compose(source.text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RunbookError([f"{source.name}:{line}: not valid YAML: {exc}"]) from None
    if root is None:
        raise RunbookError([f"{source.name}:1: the file is empty"])
    fields = check.mapping(
        root, "the runbook", {"schema", "name", "version", "title", "phases"},
        frozenset({"extends"}),
    )
    if fields is None:
        raise RunbookError(check.problems)
    schema = check.integer(fields.get("schema"), "schema", SCHEMA_VERSION, SCHEMA_VERSION)
    assert schema == SCHEMA_VERSION or check.problems
    name = check.key(fields.get("name"), "name")
    expected_name = Path(source.name).stem
    if name and name != expected_name:
        check.fail(fields.get("name"), f"name '{name}' must match the file name '{expected_name}'")
    version = check.integer(fields.get("version"), "version", 1, 1_000_000)
    title_ja, title_en = check.bilingual(fields.get("title"), "title")
    extends = check.key(fields["extends"], "extends") if "extends" in fields else None
    phases = []
    for phase_index, phase_node in enumerate(check.sequence(fields.get("phases"), "phases")):
        where = f"phases[{phase_index}]"
        phase_fields = check.mapping(phase_node, where, {"key", "steps"}, frozenset({"title"}))
        if phase_fields is None:
            continue
        phase_key = check.key(phase_fields.get("key"), f"{where}.key")
        phase_ja, phase_en = check.bilingual(phase_fields.get("title"), f"{where}.title")
        if extends is None and "title" not in phase_fields:
            check.fail(phase_node, f"{where} needs a title (ja and en)")
        steps = []
        for step_index, step_node in enumerate(
            check.sequence(phase_fields.get("steps"), f"{where}.steps")
        ):
            parsed = check.step(step_node, f"{where}.steps[{step_index}]")
            if parsed is not None:
                if extends is None and parsed[1] is not None:
                    check.fail(step_node, f"{where}.steps[{step_index}].after is only for "
                               "runbooks that extend another")
                steps.append(parsed)
        phases.append((phase_key, phase_ja, phase_en, steps, phase_node))
    if check.problems:
        raise RunbookError(check.problems)
    return _Parsed(name, version, title_ja, title_en, extends, phases)


def _merge(base: Runbook, extension: _Parsed, source: _Source) -> tuple[Phase, ...]:
    """The base runbook's phases with the extension's steps added to the phases they name."""
    check = _Checker(source.name)
    phases = {phase.key: list(phase.steps) for phase in base.phases}
    added: set[str] = set()
    for phase_key, _ja, _en, steps, node in extension.phases:
        if phase_key not in phases:
            check.fail(node, f"phase '{phase_key}' is not in '{base.name}'; use one of "
                       f"{', '.join(phases)}")
            continue
        target = phases[phase_key]
        for step, after in steps:
            position = len(target)
            if after is not None:
                keys = [existing.key for existing in target]
                if after not in keys:
                    check.fail(node, f"step '{step.key}' comes after '{after}', which is not a "
                               f"step of phase '{phase_key}'")
                    continue
                position = keys.index(after) + 1
                # Several additions after one step keep the order the file gives them.
                while position < len(target) and target[position].key in added:
                    position += 1
            target.insert(position, step)
            added.add(step.key)
    if check.problems:
        raise RunbookError(check.problems)
    return tuple(
        Phase(phase.key, phase.title_ja, phase.title_en, tuple(phases[phase.key]))
        for phase in base.phases
    )


def _check_unique_steps(runbook: Runbook, source_name: str) -> None:
    seen: set[str] = set()
    problems = []
    for _phase, step in runbook.steps():
        if step.key in seen:
            problems.append(f"{source_name}:1: step key '{step.key}' is used twice")
        seen.add(step.key)
    if len(seen) > STEPS_MAX:
        problems.append(f"{source_name}:1: {len(seen)} steps; at most {STEPS_MAX} are allowed")
    if problems:
        raise RunbookError(problems)


def build_runbook(source: _Source, base: Runbook | None) -> Runbook:
    """Check one file and, if it extends ``base``, merge the two."""
    parsed = _parse(source)
    if parsed.extends is not None:
        if base is None or base.name != parsed.extends:
            raise RunbookError([f"{source.name}:1: extends '{parsed.extends}', which is not the "
                                f"general runbook '{GENERAL}'"])
        phases = _merge(base, parsed, source)
        digest_input = base.digest + source.text
    else:
        phases = tuple(
            Phase(key, ja, en, tuple(step for step, _after in steps))
            for key, ja, en, steps, _node in parsed.phases
        )
        digest_input = source.text
    runbook = Runbook(
        name=parsed.name,
        version=parsed.version,
        title_ja=parsed.title_ja,
        title_en=parsed.title_en,
        phases=phases,
        digest=hashlib.sha256(digest_input.encode()).hexdigest(),
    )
    _check_unique_steps(runbook, source.name)
    return runbook


def parse_runbook_text(name: str, text: str, base: Runbook | None = None) -> Runbook:
    """Build a runbook from text (``name`` is the file name used in error messages)."""
    return build_runbook(_Source(name, text), base)


def _read(name: str) -> _Source:
    file_name = f"{name}.yaml"
    folder = resources.files("haltguard.incidents").joinpath("runbooks")
    text = folder.joinpath(file_name).read_text(encoding="utf-8")
    return _Source(file_name, text)


@cache
def general_runbook() -> Runbook:
    return build_runbook(_read(GENERAL), None)


@cache
def runbook_for(category: Category) -> Runbook:
    """The merged runbook an incident of ``category`` follows."""
    return build_runbook(_read(category.value), general_runbook())


def all_runbooks() -> list[Runbook]:
    """Every runbook, loaded and checked: a broken file fails here, not mid-incident."""
    return [general_runbook(), *(runbook_for(category) for category in Category)]
